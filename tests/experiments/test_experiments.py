"""Specs, the runner, the run store, sweeps (kill -9 and resume); the report's tests are in tests/report/."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gradwatch.errors import ConfigError, OutputError
from gradwatch.experiments import RunStore, Spec, load_sweep, run, sweep

FAST = {"task": "adding", "length": 10, "hidden": 8, "steps": 20, "eval_every": 10, "eval_batch": 64, "batch_size": 16}


def test_spec_validation_names_the_problem():
    with pytest.raises(ConfigError, match=r"'task' parameter of Spec must be one of .*'adding'.*Got 'copy'"):
        Spec(task="copy")
    with pytest.raises(ConfigError, match=r"Unknown key\(s\) \['lenght'\] in spec"):
        Spec.from_json({"lenght": 10})
    with pytest.raises(ConfigError, match=r"Remedy 'clip_grad_norm' takes \['max_norm'\]"):
        Spec(remedies={"clip_grad_norm": {"threshold": 1.0}})
    with pytest.raises(ConfigError, match=r"'remedies' .* one of 'agc', 'autoclip'"):
        Spec(remedies={"dropout": {}})
    with pytest.raises(ConfigError, match="'pascanu_regularizer' works with model='rnn' only: it reads the hidden"):
        Spec(model="lstm", remedies={"pascanu_regularizer": {}})
    with pytest.raises(ConfigError, match=r"The 'max_norm' parameter of remedy 'clip_grad_norm' must be > 0\. Got -1"):
        Spec(remedies={"clip_grad_norm": {"max_norm": -1}})
    with pytest.raises(
        ConfigError, match="'init:kumar' is not a per-step remedy: it is applied by setting init='kumar'"
    ):
        Spec(remedies={"init:kumar": {}})
    with pytest.raises(ConfigError, match="model='mlp' goes with task='digits_mlp'"):
        Spec(model="mlp")
    with pytest.raises(ConfigError, match="needs an output at every step"):
        Spec(task="memorization")


def test_run_is_deterministic_and_round_trips_through_json():
    spec = Spec(**FAST, remedies={"clip_grad_norm": {"max_norm": 0.5}})
    a, b = run(spec), run(spec)
    assert a.steps == [10, 20] and a.error == b.error and a.loss == b.loss
    assert a.verdict["status"] in ("healthy", "vanishing", "exploding", "nonfinite")
    assert a.time_profile is not None and len(a.time_profile) >= 10
    back = type(a).from_json(json.loads(json.dumps(a.to_json())))
    assert back.error == a.error and back.spec == a.spec
    assert a.model is None and "model" not in a.to_json()
    kept = run(spec, keep_model=True)
    assert kept.error == a.error
    # the kept model is the trained one: it scores the held-out error the run reported
    from gradwatch.experiments.runner import EVAL_SEED_OFFSET
    from gradwatch.tasks import get_task

    task = get_task(spec.task)
    x, y = task.generate(spec.length, spec.eval_batch, seed=spec.seed + EVAL_SEED_OFFSET, jitter=spec.jitter)
    with torch.no_grad():
        out = kept.model(x)
    assert task.error(out.squeeze(-1) if out.shape[-1] == 1 else out, y) == kept.final_error


def test_runner_clips_the_update(tmp_path):
    lr, max_norm = 0.1, 1e-3
    spec = Spec(
        **{**FAST, "steps": 1, "eval_every": 1},
        optimizer="sgd",
        momentum=0.0,
        lr=lr,
        remedies={"clip_grad_norm": {"max_norm": max_norm}},
    )
    run(spec, tmp_path)
    rec = json.loads((tmp_path / "monitor.jsonl").read_text().splitlines()[0])
    assert rec["global_grad_norm"] > max_norm  # recorded before clipping
    step_sq = sum((s["update_ratio"] * s["param_norm"]) ** 2 for s in rec["layers"].values())
    assert math.sqrt(step_sq) == pytest.approx(lr * max_norm, rel=1e-3)  # the optimizer saw the clipped gradient


@pytest.mark.parametrize(
    "remedies",
    [
        {"pascanu_regularizer": {"alpha": 1.0}},
        {"agc": {}},
        {"autoclip": {"percentile": 50}},
        {"clip_grad_value": {"clip_value": 0.1}},
    ],
)
def test_every_runner_remedy_runs(remedies):
    result = run(Spec(**FAST, remedies=remedies))
    assert len(result.error) == 2 and not result.diverged


def test_runner_clips_with_the_norm_the_monitor_measured(monkeypatch):
    """Clipping in run() scales by the monitor's reading: torch never measures the total norm again."""
    calls = []
    real = torch.nn.utils.get_total_norm

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "get_total_norm", counting)
    result = run(Spec(**FAST, remedies={"clip_grad_norm": {"max_norm": 0.05}}))
    assert len(result.error) == 2 and calls == []


@pytest.mark.parametrize(
    "remedies",
    [
        {"pascanu_regularizer": {"alpha": 1.0}, "clip_grad_norm": {"max_norm": 0.05}},
        {"autoclip": {"percentile": 50}, "clip_grad_value": {"clip_value": 0.01}},
    ],
)
def test_runner_remedies_equal_a_manual_loop(remedies):
    """The registry's remedies in run() give bitwise the numbers of calling torch's functions by hand."""
    from gradwatch.experiments import build_model
    from gradwatch.remedies.clipping import AutoClip
    from gradwatch.remedies.regularizer import pascanu_penalty
    from gradwatch.tasks import get_task

    spec = Spec(**{**FAST, "steps": 6, "eval_every": 3}, lr=0.1, remedies=remedies)
    result = run(spec, keep_model=True)
    task, model = get_task(spec.task), build_model(spec)
    opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum)
    gen = torch.Generator().manual_seed(spec.seed)
    auto = AutoClip(percentile=50)
    losses = []
    for _ in range(spec.steps):
        x, y = task.generate(spec.length, spec.batch_size, gen, jitter=spec.jitter)
        loss = task.loss(model(x).squeeze(-1), y)
        total = loss + 1.0 * pascanu_penalty(loss, model.hidden_states) if "pascanu_regularizer" in remedies else loss
        total.backward()
        if "clip_grad_norm" in remedies:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05)
        if "clip_grad_value" in remedies:
            torch.nn.utils.clip_grad_value_(model.parameters(), 0.01)
        if "autoclip" in remedies:
            auto(model.parameters())
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    assert result.loss == [losses[2], losses[5]]
    for a, b in zip(result.model.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("model", "task", "optimizer"),
    [("lstm", "temporal_order", "rprop"), ("gru", "latching", "sign_sgd"), ("mlp", "digits_mlp", "adam")],
)
def test_models_tasks_and_optimizers(model, task, optimizer):
    spec = Spec(
        **{**FAST, "task": task, "length": 12},
        model=model,
        optimizer=optimizer,
        lr=0.01,
        activation="relu" if model == "mlp" else "tanh",
    )
    result = run(spec)
    assert 0.0 <= result.final_error <= 1.0


def test_digits_mlp_learns():
    spec = Spec(
        task="digits_mlp",
        length=1,
        model="mlp",
        activation="relu",
        hidden=64,
        layers=2,
        optimizer="adam",
        lr=0.01,
        steps=300,
        batch_size=64,
        eval_every=100,
        eval_batch=512,
    )
    assert run(spec).final_error < 0.1


def test_run_store_writes_atomically_and_clears_crashed_runs(tmp_path):
    store = RunStore(tmp_path / "store")
    spec = Spec(**FAST)
    d = store.start(spec)
    (d / "metrics.jsonl").write_text("partial\n")
    assert not store.is_done(spec)
    d = store.start(spec)  # a crashed attempt is cleared
    assert sorted(p.name for p in d.iterdir()) == ["spec.json"]
    store.finish(run(spec, d))
    assert store.is_done(spec) and not list(d.glob("*.tmp"))
    assert [r.spec for r in store.results()] == [spec]
    with pytest.raises(OutputError, match="Cannot create the run store"):
        RunStore(tmp_path / "missing" / "store")


def _write_sweep(path, lengths=(10, 12), seeds=(0, 1), steps=20):
    path.write_text(
        f"""
[base]
task = "adding"
hidden = 8
steps = {steps}
eval_every = 10
eval_batch = 64
batch_size = 16

[grid]
length = {list(lengths)}
seed = {list(seeds)}

[[variant]]
name = "sigmoid"
activation = "sigmoid"

[[variant]]
name = "tanh + clipping"
activation = "tanh"
remedies = {{ clip_grad_norm = {{ max_norm = 1.0 }} }}
"""
    )
    return path


def test_sweep_file_expands_the_grid_and_names_typos(tmp_path):
    specs = load_sweep(_write_sweep(tmp_path / "s.toml"))
    assert len(specs) == 2 * 2 * 2
    assert {s.activation for s in specs} == {"sigmoid", "tanh"}
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nlenght = [10]\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lenght'\] in \[grid\]"):
        load_sweep(bad)
    bad.write_text("[grids]\nlength = [10]\n")
    with pytest.raises(ConfigError, match=r"unknown table\(s\) \['grids'\]"):
        load_sweep(bad)
    bad.write_text("[grid]\nlength = 10\n")
    with pytest.raises(ConfigError, match=r"\[grid\] key 'length' must be a non-empty list"):
        load_sweep(bad)
    bad.write_text("[base\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_sweep(bad)


def test_sweep_runs_into_the_store_and_resume_skips_finished_runs(tmp_path):
    specs = load_sweep(_write_sweep(tmp_path / "s.toml", lengths=(10,), seeds=(0,)))
    seen = []
    results = sweep(specs, tmp_path / "out", workers=2, progress=False, on_result=seen.append)
    assert len(results) == len(seen) == 2
    again = []
    results2 = sweep(specs, tmp_path / "out", workers=2, progress=False, resume=True, on_result=again.append)
    assert again == [] and [r.error for r in results2] == [r.error for r in results]


def _run_files(root):
    """{run id: {file name: content}} of a run store; result.json without its wall time and checksum."""
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = {}
        for f in sorted(d.iterdir()):
            if f.name == "result.json":
                doc = json.loads(f.read_text())
                doc.pop("wall_time"), doc.pop("checksum")
                files[f.name] = doc
            else:
                files[f.name] = f.read_bytes()
        out[d.name] = files
    return out


def _group_alive(pgid):
    """Whether a live process (not a zombie waiting for init to reap it) is left in group ``pgid`` (Linux)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pgid and state != "Z":
            return True
    return False


@pytest.mark.slow
def test_kill_dash_9_of_the_main_process_then_resume_at_once(tmp_path):
    """kill -9 of the sweep's main PID only (the usual way): its workers die with it, a resume
    started at once finishes the sweep, and every file of every run equals an uninterrupted sweep's."""
    sweep_file = _write_sweep(tmp_path / "s.toml", lengths=(10, 12, 14), seeds=(0, 1), steps=150)
    specs = load_sweep(sweep_file)
    cmd = [sys.executable, "-m", "gradwatch", "sweep", str(sweep_file), "--workers", "2"]
    subprocess.run([*cmd, "--out", str(tmp_path / "ref")], capture_output=True, check=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [*cmd, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*/result.json"))) < 2:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # the main process only: its pool workers are not signalled
    proc.wait()
    finished_before = len(list(out.glob("*/result.json")))
    assert 2 <= finished_before < len(specs), "the kill must land in the middle of the sweep"
    r = subprocess.run([*cmd, "--out", str(out), "--resume", "--json"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["runs"] == len(specs)
    t0 = time.time()
    while _group_alive(proc.pid) and time.time() - t0 < 5:  # the orphans were SIGKILLed with their parent
        time.sleep(0.05)
    assert not _group_alive(proc.pid), "a worker of the killed sweep outlived it"
    assert sorted(p.name for p in out.iterdir()) == sorted(s.run_id for s in specs)  # no .partial-*, no .lock
    reference, resumed = _run_files(tmp_path / "ref"), _run_files(out)
    assert resumed.keys() == reference.keys()
    for run_id, files in reference.items():
        assert resumed[run_id].keys() == files.keys() == {"spec.json", "metrics.jsonl", "monitor.jsonl", "result.json"}
        for name, content in files.items():
            assert resumed[run_id][name] == content, f"{run_id}/{name} differs from the uninterrupted sweep"


def test_cli_run_json_and_bad_input(cli, tmp_path):
    r = cli(
        "run",
        "--task",
        "adding",
        "--length",
        "10",
        "--hidden",
        "8",
        "--steps",
        "10",
        "--eval-every",
        "5",
        "--remedy",
        "clip_grad_norm:max_norm=0.5",
        "--json",
    )
    assert r.code == 0, r.err
    d = r.json()
    assert d["spec"]["remedies"] == {"clip_grad_norm": {"max_norm": 0.5}} and d["steps"] == [5, 10]
    r = cli("run", "--task", "copying")
    assert r.code == 2 and "'adding'" in r.err and "Traceback" not in r.err
    r = cli("run", "--remedy", "clip_grad_norm:max_norm")
    assert r.code == 2 and "key=number" in r.err
    r = cli("run", "--remedy", "random_search")
    assert r.code == 2 and "cannot be applied by the runner" in r.err and "'clip_grad_norm'" in r.err
    r = cli("run", "--remedy", "batchnorm")
    assert r.code == 2 and "'batchnorm' works with model='mlp' only" in r.err
    r = cli("sweep", str(_write_sweep(tmp_path / "s.toml")), "--out", str(tmp_path / "no" / "such"))
    assert r.code == 2 and "Cannot create the run store" in r.err
    assert not (tmp_path / "no").exists()


def test_cli_remedies_set_spec_fields(cli):
    args = ["run", "--task", "adding", "--length", "10", "--hidden", "8", "--steps", "2", "--eval-every", "2"]
    r = cli(*args, "--remedy", "init:orthogonal", "--remedy", "rprop", "--remedy", "autoclip:percentile=20", "--json")
    assert r.code == 0, r.err
    spec = r.json()["spec"]
    assert (spec["init"], spec["optimizer"], spec["remedies"]) == (
        "orthogonal",
        "rprop",
        {"autoclip": {"percentile": 20}},
    )


def test_ray_executor_with_a_local_instance(tmp_path):
    pytest.importorskip("ray")
    specs = load_sweep(_write_sweep(tmp_path / "s.toml", lengths=(10,), seeds=(0, 1)))
    local = {r.spec.run_id: r for r in sweep(specs, tmp_path / "local", workers=2, progress=False)}
    results = sweep(specs, tmp_path / "ray", executor="ray", workers=2, progress=False)
    assert len(results) == len(specs)
    for r in results:
        assert r.error == local[r.spec.run_id].error  # same numbers as the local executor
        d = tmp_path / "ray" / r.spec.run_id
        assert (d / "metrics.jsonl").is_file() and (d / "monitor.jsonl").is_file() and (d / "spec.json").is_file()


def test_unreachable_ray_address_fails_in_seconds(tmp_path, cli):
    pytest.importorskip("ray")
    sweep_file = _write_sweep(tmp_path / "s.toml", lengths=(10,), seeds=(0,))
    t0 = time.time()
    r = cli("sweep", str(sweep_file), "--out", str(tmp_path / "o"), "--executor", "ray", "--ray-address", "127.0.0.1:1")
    assert r.code == 2 and "Cannot reach the Ray cluster at '127.0.0.1:1'" in r.err
    assert time.time() - t0 < 10
    r = cli("sweep", str(sweep_file), "--out", str(tmp_path / "o"), "--executor", "slurm")
    assert r.code == 2 and "'local', 'ray'" in r.err
