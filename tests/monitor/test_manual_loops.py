"""Manual loops (no optimizer object), clipping that was never measured, and logs that survive a crash.

The word-level language model below is written the way the popular example repositories
write it: embedding → ``nn.RNN(tanh)`` → decoder, ``clip_grad_norm_(..., 0.25)`` and the
update ``p.data.add_(p.grad, alpha=-lr)``. Every number is checked against the loop's own
values (what ``clip_grad_norm_`` returned, parameters copied before and after the update).
"""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
import textwrap
import warnings
import weakref

import numpy as np
import pytest
import torch
from torch import nn

import gradwatch as gw


class WordLM(nn.Module):
    def __init__(self, vocab: int = 50, emb: int = 8, hidden: int = 16) -> None:
        super().__init__()
        self.encoder = nn.Embedding(vocab, emb)
        self.rnn = nn.RNN(emb, hidden, batch_first=True)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.encoder(ids))
        return self.decoder(out)


def _text(i: int, vocab: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(i)
    ids = torch.randint(0, vocab, (4, 13), generator=g)
    return ids[:, :-1], ids[:, 1:]


def _manual_lm_loop(
    steps: int, max_norm: float | None, report: str, lr: float = 5.0, **kwargs: object
) -> tuple[gw.Monitor, list[float], list[float], list[dict[str, float]]]:
    """Train; return the monitor, clip_grad_norm_'s totals, post-clip norms and true update ratios."""
    torch.manual_seed(0)
    model = WordLM()
    totals, posts, ratios = [], [], []
    mon = gw.Monitor(model, **kwargs)  # type: ignore[arg-type]
    for i in range(steps):
        x, y = _text(i)
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(x).reshape(-1, 50), y.reshape(-1))
        loss.backward()
        if report == "mon_clip":
            mon.step(loss)
            totals.append(float(mon.clip_grad_norm_(max_norm)))  # type: ignore[arg-type]
        elif max_norm is not None:
            total = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            totals.append(float(total))
            mon.step(loss, clip=total) if report == "step" else mon.step(loss)
        else:
            mon.step(loss)
        posts.append(math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters())))
        before = {n: p.detach().double().clone() for n, p in model.named_parameters()}
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        ratios.append(
            {
                layer: math.sqrt(sum(float((before[n] - p.detach().double()).pow(2).sum()) for n, p in ps))
                / math.sqrt(sum(float(before[n].pow(2).sum()) for n, _ in ps))
                for layer, ps in _by_layer(model).items()
            }
        )
    return mon, totals, posts, ratios


def _by_layer(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    out: dict[str, list[tuple[str, nn.Parameter]]] = {}
    for n, p in model.named_parameters():
        out.setdefault(n.rsplit(".", 1)[0], []).append((n, p))
    return out


@pytest.mark.parametrize("report", ["step", "mon_clip"])
def test_a_manual_loop_reports_its_clip_and_its_update_ratios(report: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", gw.GradwatchWarning)  # a correct loop: no misuse lint
        mon, totals, posts, ratios = _manual_lm_loop(12, 0.25, report, weights_every=1, clip=True)
    h = mon.history
    np.testing.assert_allclose(h.clip_pre, totals, rtol=1e-5)
    np.testing.assert_allclose(h.clip_post, posts, rtol=1e-4)
    clipped = np.array(totals) > 0.25  # how torch decides: total_norm > max_norm
    assert clipped.sum() >= 6  # the reference run clips on most steps
    window = 4
    expected = [clipped[max(0, k + 1 - window) : k + 1].mean() for k in range(12)]
    np.testing.assert_allclose(h.clip_rate(window=window), expected)
    # update ratios from snapshots: exact for every step but the last, whose update comes after it
    for k in range(11):
        for layer, r in ratios[k].items():
            assert h.layers[layer].update_ratio[k] == pytest.approx(r, rel=1e-5), (k, layer)
    assert np.isnan(h.layers["rnn"].update_ratio[11])
    mon.close()
    assert np.isnan(mon.history.layers["rnn"].update_ratio[11])  # still unknown: no later step


def test_clipping_that_is_not_measured_reads_nan_not_zero() -> None:
    # Monitor(clip=True) without an optimizer, torch's clip_grad_norm_ not reported: unknown
    mon, totals, _, _ = _manual_lm_loop(6, 0.25, "none", clip=True)
    assert all(t > 0.25 for t in totals[:3])
    assert np.isnan(mon.history.clip_rate()).all()
    mon.close()


def test_clip_rate_is_the_same_from_the_log(tmp_path) -> None:
    path = tmp_path / "run.jsonl"
    mon, totals, _, _ = _manual_lm_loop(8, 0.5, "step", log=path, sync_every=3)
    live = mon.history.clip_rate(window=3)
    mon.close()
    assert np.nansum(live) > 0 and np.isfinite(live).all()
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["clipped"] for r in recs] == [t > 0.5 for t in totals]
    np.testing.assert_allclose(gw.read_jsonl(path).clip_rate(window=3), live)
    # a log written before "clipped" existed: "clip" only on the steps that were clipped, and
    # clipping measured on every step: its rate is read as it always was
    old = [{k: v for k, v in r.items() if k != "clipped"} for r in recs]
    for r in old:
        if r.get("clip") and not r["clip"]["post"] < r["clip"]["pre"]:
            del r["clip"]
    np.testing.assert_allclose(gw.History.from_records(old).clip_rate(window=3), live)
    no_clip = [{k: v for k, v in r.items() if k != "clip"} for r in old]
    assert np.isnan(gw.History.from_records(no_clip).clip_rate()).all()


def test_an_optimizer_loop_without_clipping_measures_a_zero_rate() -> None:
    torch.manual_seed(0)
    model = WordLM()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.Monitor(model, opt) as mon:
        for i in range(4):
            x, y = _text(i)
            nn.functional.cross_entropy(model(x).reshape(-1, 50), y.reshape(-1)).backward()
            mon.step()
            opt.step()
            opt.zero_grad()
    assert mon.history.clip_rate().tolist() == [0.0] * 4  # measured (monitor first): never clipped


# ---------------------------------------------------------------- crashes


_CRASHING = textwrap.dedent(
    """
    import math, sys
    import torch
    from torch import nn
    import gradwatch as gw

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    mon = gw.Monitor(model, log=sys.argv[1], sync_every=50)
    for batch in range(100):
        x = torch.randn(16, 4)
        loss = model(x).pow(2).mean()
        model.zero_grad()
        loss.backward()
        mon.step(loss)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-0.1)
        if batch == 24:
            print(math.exp(1000.0))  # the program's own OverflowError, below sync_every
    """
)


def test_a_program_that_raises_keeps_its_records(tmp_path) -> None:
    script, log = tmp_path / "train.py", tmp_path / "run.jsonl"
    script.write_text(_CRASHING)
    done = subprocess.run([sys.executable, str(script), str(log)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "OverflowError" in done.stderr
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == list(range(25))


def test_leaving_a_with_block_by_an_exception_flushes(tmp_path) -> None:
    path = tmp_path / "run.jsonl"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(OverflowError), gw.Monitor(model, log=path) as mon:
        for batch in range(10):
            model.zero_grad()
            model(torch.randn(3, 4)).sum().backward()
            mon.step()
            if batch == 6:
                math.exp(1000.0)
    assert len(path.read_text().splitlines()) == 7


def test_the_exit_hook_does_not_keep_the_model_alive(tmp_path) -> None:
    def train() -> weakref.ref[nn.Module]:
        model = nn.Sequential(nn.Linear(4, 2))
        mon = gw.Monitor(model, log=tmp_path / "run.jsonl")  # never closed
        model(torch.randn(3, 4)).sum().backward()
        mon.step()
        return weakref.ref(model)

    ref = train()
    gc.collect()
    assert ref() is None
