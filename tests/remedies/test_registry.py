"""The remedy registry: one catalog, one way to apply each remedy, and the docs' table of it."""

import ast
import os
import re
from pathlib import Path

import pytest
import torch

import gradwatch._remedy_catalog as catalog
import gradwatch.remedies as remedies
from gradwatch.errors import ConfigError
from gradwatch.remedies import clipping, flossing, registry, spike
from gradwatch.remedies.init import INITS
from gradwatch.remedies.regularizer import pascanu_penalty

ROOT = Path(__file__).resolve().parents[2]
MONITOR = ROOT / "src" / "gradwatch" / "monitor"
NAMES = {r.name for r in remedies.available()}


def test_registry_contract():
    entries = remedies.available()
    assert [e.name for e in entries] == sorted(e.name for e in entries)
    assert all(e.kind in remedies.KINDS and e.source and e.why and e.api for e in entries)
    assert {"clipping", "regularizer", "init", "architecture", "optimizer"} <= {e.kind for e in entries}
    assert remedies.get("autoclip").kind == "clipping"
    assert [e.name for e in remedies.available("init")][:3] == ["init:forget_bias", "init:glorot", "init:he"]
    with pytest.raises(ConfigError, match=r"'name' parameter of remedies.get must be one of .*'autoclip'"):
        remedies.get("dropout")
    with pytest.raises(ConfigError, match=r"'kind'"):
        remedies.available("magic")


def test_the_registry_is_the_catalog_plus_how_to_apply_it():
    assert set(catalog.names()) == NAMES
    for r in remedies.available():
        info = catalog.info(r.name)
        assert (r.kind, r.source, r.why, r.api, r.advice) == (info.kind, info.source, info.why, info.api, info.advice)
        # exactly one way: per step, through spec fields, or not by the runner (with the reason)
        ways = [r.make is not None, bool(r.knobs), bool(r.not_in_runner)]
        assert sum(ways) == 1, r.name
        assert r.applies_in_runner == (not r.not_in_runner)
        assert bool(r.params) == (r.make is not None), r.name  # only per-step remedies take parameters
        assert bool(r.models) == bool(r.needs), r.name
    assert registry.STEP_REMEDIES[-2:] == ("pascanu_regularizer", "flossing")  # the regularizers last
    assert registry.STEP_REMEDIES[:4] == ("clip_grad_norm", "clip_grad_value", "agc", "autoclip")


def _advised_names() -> set[str]:
    """Every remedy name the monitor's rules may advise: the strings of the lists they build advice from.

    A rule module names remedies in list literals (``fixes = ["clip_grad_norm", ...]``) or
    inserts them (``names.insert(0, "data:check")``); every such string in a monitor module
    that reads the catalog is collected here.
    """
    found: set[str] = set()
    for path in MONITOR.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if "_remedy_catalog" not in ast.unparse(tree):
            continue
        exports = {
            id(n.value)
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)
        }
        for node in ast.walk(tree):
            values: list[ast.expr] = []
            if isinstance(node, ast.List) and id(node) not in exports:
                values = node.elts
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "insert":
                values = node.args[1:]
            found |= {v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)}
    return found


def test_every_name_the_verdict_can_advise_is_in_the_registry_and_has_a_sentence():
    advised = _advised_names()
    assert {"clip_grad_norm", "lr:lower", "data:check", "amp:grad_scaler", "spectral_radius<1", "lstm"} <= advised
    assert advised <= NAMES
    with_sentence = {r.name for r in remedies.available() if r.advice}
    assert advised == with_sentence  # and no advice sentence is left that no rule can give
    assert (
        catalog.advice("lr:lower")
        == "a smaller learning rate keeps updates from overshooting where the gradient is steep"
    )
    with pytest.raises(KeyError, match="no advice sentence"):
        catalog.advice("autoclip")


def test_the_catalog_is_a_leaf():
    tree = ast.parse(Path(catalog.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "dataclasses"}


# ---- per-step remedies: each against a direct call of torch's / our function ------------------

REFERENCE = {  # name → (params, what the runner's loop did before the registry: the same calls)
    "clip_grad_norm": ({"max_norm": 0.3}, lambda ps, model, loss: torch.nn.utils.clip_grad_norm_(ps, 0.3)),
    "clip_grad_value": ({"clip_value": 0.01}, lambda ps, model, loss: torch.nn.utils.clip_grad_value_(ps, 0.01)),
    "agc": ({"clipping": 0.02}, lambda ps, model, loss: clipping.adaptive_clip_grad_(ps, clipping=0.02)),
    "autoclip": ({"percentile": 50.0}, lambda ps, model, loss: clipping.AutoClip(percentile=50.0)(ps)),
    "skip_step_on_spike": (
        {"z_thresh": 4.0, "warmup": 2.0, "loss": 1.0},
        lambda ps, model, loss: spike.SkipStepOnSpike(on="both", z_thresh=4.0, warmup=2).decide(ps, loss=loss),
    ),
    "zclip": ({"z_thresh": 2.0, "warmup": 2.0}, lambda ps, model, loss: spike.ZClip(z_thresh=2.0, warmup=2)(ps)),
    "pascanu_regularizer": ({"alpha": 0.5}, None),
    "flossing": ({"weight": 0.5, "k": 2.0, "every": 1.0}, None),
}

PENALTY_REFERENCE = {  # name → the penalty computed directly from the model
    "pascanu_regularizer": lambda model, loss: 0.5 * pascanu_penalty(loss, model.hidden_states),
    "flossing": lambda model, loss: (
        0.5
        * flossing.flossing_loss(
            [lambda u, h, c=c: c.act(c.w_in(u) + c.w_rec(h)) for c in model.cells],
            model.inputs,
            k=2,
            hidden_size=[c.hidden for c in model.cells],
        )
    ),
}


def _rnn_and_loss(seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor]:
    from gradwatch import models

    model = models.rnn(kind="rnn", in_dim=2, out_dim=1, hidden=8, layers=1, activation="tanh", seed=seed)
    x = torch.randn(4, 12, 2, generator=torch.Generator().manual_seed(seed)) * 3
    loss = model(x).pow(2).mean()
    return model, loss


def test_every_step_remedy_has_a_reference():
    assert set(REFERENCE) == set(registry.STEP_REMEDIES)


@pytest.mark.parametrize("name", registry.STEP_REMEDIES)
def test_step_remedy_equals_the_direct_call(name):
    params, reference = REFERENCE[name]
    step = registry.build({name: params})
    ours, ref = _rnn_and_loss(), _rnn_and_loss()
    (model_a, loss_a), (model_b, loss_b) = ours, ref
    if step.penalty is not None:
        (loss_a + step.penalty(loss_a, model_a)).backward()
        (loss_b + PENALTY_REFERENCE[name](model_b, loss_b)).backward()
    else:
        loss_a.backward()
        loss_b.backward()
        if step.observe is not None:
            step.observe(loss_a.detach())
        step.after_backward(list(model_a.parameters()), None)
        reference(list(model_b.parameters()), model_b, loss_b)
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)  # bitwise


def test_chain_orders_by_the_registry_and_acts_on_a_given_norm():
    model_a, loss_a = _rnn_and_loss()
    model_b, loss_b = _rnn_and_loss()
    loss_a.backward()
    loss_b.backward()
    pa, pb = list(model_a.parameters()), list(model_b.parameters())
    step = registry.build({"clip_grad_value": {"clip_value": 0.05}, "clip_grad_norm": {"max_norm": 0.3}})
    norm = torch.nn.utils.get_total_norm([p.grad for p in pa])  # measured once, e.g. by the monitor
    step.after_backward(pa, norm)
    torch.nn.utils.clip_grad_norm_(pb, 0.3)  # norm clipping first, whatever the mapping's order
    torch.nn.utils.clip_grad_value_(pb, 0.05)
    for a, b in zip(pa, pb, strict=True):
        assert torch.equal(a.grad, b.grad)
    assert registry.build({}) == registry.StepRemedy(None, None)


# ---- validation: one sentence, the project's format ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "param", "bad", "constraint"),
    [
        ("clip_grad_norm", "max_norm", 0.0, "> 0"),
        ("clip_grad_value", "clip_value", -1.0, "> 0"),
        ("agc", "clipping", float("nan"), "a finite real number"),
        ("autoclip", "percentile", 120, r"in \(0, 100\]"),
        ("pascanu_regularizer", "alpha", -0.1, ">= 0"),
    ],
)
def test_parameters_are_validated(name, param, bad, constraint):
    assert registry.with_defaults(name) == registry.get(name).defaults
    with pytest.raises(ConfigError, match=rf"The '{param}' parameter of remedy '{name}' must be {constraint}\. Got"):
        registry.build({name: {param: bad}})


def test_validation_lists_what_is_valid():
    with pytest.raises(ConfigError, match=r"Remedy 'clip_grad_norm' takes \['max_norm'\]; got unknown parameter"):
        registry.validate({"clip_grad_norm": {"threshold": 1.0}})
    with pytest.raises(
        ConfigError, match=r"'remedies' parameter of Spec must be one of 'agc', 'autoclip', .*'dropout'"
    ):
        registry.validate({"dropout": {}})
    with pytest.raises(
        ConfigError, match=r"'batchnorm' is not a per-step remedy: it is applied by setting norm='batch'"
    ):
        registry.validate({"batchnorm": {}})
    with pytest.raises(ConfigError, match=r"'random_search' is not a per-step remedy: the runner cannot apply it"):
        registry.validate({"random_search": {}})
    with pytest.raises(ConfigError, match=r"'pascanu_regularizer' works with model='rnn' only: .*Got model='lstm'"):
        registry.validate({"pascanu_regularizer": {}}, model="lstm")


def test_spec_fields_map_names_to_the_runner():
    fields = registry.spec_fields(
        {"init:kumar": {}, "relu": {}, "rprop": {}, "clip_grad_norm": {"max_norm": 0.5}}, model="rnn"
    )
    assert fields == {
        "init": "kumar",
        "activation": "relu",
        "optimizer": "rprop",
        "remedies": {"clip_grad_norm": {"max_norm": 0.5}},
    }
    assert registry.spec_fields({"lstm": {}}, model="rnn") == {"model": "lstm"}
    with pytest.raises(ConfigError, match=r"'gpu' cannot be applied by the runner: .*--device cuda.*applies 'agc'"):
        registry.spec_fields({"gpu": {}})
    with pytest.raises(ConfigError, match=r"Remedies set norm='batch' and norm='layer'; choose one"):
        registry.spec_fields({"batchnorm": {}, "layernorm": {}}, model="mlp")
    with pytest.raises(ConfigError, match=r"'batchnorm' works with model='mlp' only"):
        registry.spec_fields({"batchnorm": {}}, model="rnn")
    with pytest.raises(ConfigError, match=r"'pascanu_regularizer' works with model='rnn' only"):
        registry.spec_fields({"lstm": {}, "pascanu_regularizer": {}}, model="rnn")
    with pytest.raises(ConfigError, match=r"Remedy 'relu' takes no parameters; got unknown parameter\(s\) \['slope'\]"):
        registry.spec_fields({"relu": {"slope": 0.1}}, model="rnn")


@pytest.mark.parametrize("name", sorted(n for n in NAMES if registry.get(n).knobs))
def test_every_knob_is_a_valid_spec(name):
    from gradwatch.experiments import Spec

    r = registry.get(name)
    model = r.models[0] if r.models else "rnn"
    base = {"task": "digits_mlp", "model": "mlp"} if model == "mlp" else {"model": model}
    spec = Spec(**{**base, **registry.spec_fields({name: {}}, model=base["model"])})
    assert all(getattr(spec, k) == v for k, v in r.knobs.items())


def test_every_init_of_the_catalog_is_an_init_by_name():
    for r in remedies.available("init"):
        if r.knobs:
            assert r.name == f"init:{r.knobs['init']}" and r.knobs["init"] in INITS


# ---- the docs' table is generated from the registry ---------------------------------------------

DOC = ROOT / "docs" / "remedies.md"
BEGIN = "<!-- registry table: generated from gradwatch.remedies.registry by tests/remedies/test_registry.py -->"
END = "<!-- end of registry table -->"


def _how(r: registry.Remedy) -> str:
    only = f" (model={' or '.join(repr(m) for m in r.models)} only)" if r.models else ""
    if r.make is not None:
        return "per step: " + ", ".join(f"`{k}={p.default:g}`" for k, p in r.params.items()) + only
    if r.knobs:
        return "spec: " + ", ".join(f"`{k}={v!r}`" for k, v in r.knobs.items()) + only
    return "not by the runner: " + r.not_in_runner


def registry_table() -> str:
    rows = ["| name | kind | source | how the runner applies it |", "|---|---|---|---|"]
    for r in remedies.available():
        cells = [f"`{r.name}`", r.kind, r.source, _how(r)]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)


def test_the_docs_table_is_the_registry():
    text = DOC.read_text(encoding="utf-8")
    block = re.compile(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), re.S)
    expected = registry_table()
    if os.environ.get("GRADWATCH_UPDATE_DOCS"):
        DOC.write_text(block.sub(lambda _: f"{BEGIN}\n{expected}\n{END}", text), encoding="utf-8")
        text = DOC.read_text(encoding="utf-8")
    m = block.search(text)
    assert m is not None, f"{DOC.name} lacks the registry table markers"
    assert m.group(1) == expected, "docs/remedies.md's table is stale: rerun this test with GRADWATCH_UPDATE_DOCS=1"
