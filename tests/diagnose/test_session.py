"""The session finds models and steps in scripts written the way people write them, and stops them."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from gradwatch.diagnose import Session, run_script
from gradwatch.diagnose.tweaks import LearningRate, RegistryClip, SignSteps

HEADER = """
import json, sys
import torch
from torch import nn
torch.manual_seed(0)
X = torch.randn(64, 8)
Y = torch.randn(64, 1)
model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
log = []
"""


def _script(tmp_path: Path, body: str, name: str = "train.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(HEADER) + textwrap.dedent(body))
    return path


def test_manual_loop_without_optimizer_is_stepped_per_backward_and_norms_match(tmp_path: Path) -> None:
    # a loop with no optimizer object: every backward is a step; the monitor's global norm is the script's own
    script = _script(
        tmp_path,
        """
        for i in range(100):
            loss = ((model(X) - Y) ** 2).mean()
            model.zero_grad()
            loss.backward()
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
            log.append([loss.item(), norm.item()])
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-0.1)
            json.dump(log, open(sys.argv[1], "w"))
        """,
    )
    out = tmp_path / "log.json"
    session = Session(max_steps=7)
    run = run_script(script, [str(out)], session)
    assert run.ended == "limit" and session.steps == 7
    (w,) = session.watched
    assert w.optimizer is None and w.name == "Sequential"
    truth = np.array(json.loads(out.read_text()))
    assert truth.shape == (7, 2)  # the 7th update ran, the 8th backward stopped the script
    np.testing.assert_allclose(w.loss_curve(), truth[:, 0], rtol=1e-6)
    assert w.history is not None
    np.testing.assert_allclose(w.history.global_grad_norm, truth[:, 1], rtol=1e-5)


def test_optimizer_loop_records_the_norm_before_the_script_clips(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for i in range(50):
            opt.zero_grad()
            loss = ((model(X) * 10 - Y) ** 2).mean()
            loss.backward()
            log.append(torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1).item())
            opt.step()
        json.dump(log, open(sys.argv[1], "w"))
        """,
    )
    out = tmp_path / "log.json"
    session = Session(max_steps=50)
    run = run_script(script, [str(out)], session)
    assert run.ended == "limit"  # stopped right after the 50th step, before the script's dump
    assert not out.exists()
    (w,) = session.watched
    assert isinstance(w.optimizer, torch.optim.SGD) and w.steps == 50
    assert w.history is not None and w.history.n_steps == 50
    assert (w.history.global_grad_norm > 0.1).all()  # pre-clip norms, not the clipped 0.1


def test_script_that_ends_by_itself_and_lbfgs_closures(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=1)
        def closure():
            opt.zero_grad()
            loss = ((model(X) - Y) ** 2).mean()
            loss.backward()
            return loss
        for i in range(5):
            opt.step(closure)
        """,
    )
    session = Session(max_steps=100)
    run = run_script(script, [], session)
    assert run.ended == "finished" and session.steps == 5
    (w,) = session.watched
    assert w.history is not None and w.history.n_steps == 5  # recorded inside the closure
    assert all(math.isfinite(x) for x in w.loss_curve())


def test_seconds_limit_stops_an_endless_loop(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        opt = torch.optim.Adam(model.parameters())
        while True:
            opt.zero_grad()
            ((model(X) - Y) ** 2).mean().backward()
            opt.step()
        """,
    )
    session = Session(max_seconds=0.5)
    run = run_script(script, [], session)
    assert run.ended == "limit" and session.steps > 0
    assert "0.5 s" in (session.stop_reason or "")


def test_script_errors_are_results_with_the_scripts_own_traceback(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for i in range(10):
            opt.zero_grad()
            ((model(X) - Y) ** 2).mean().backward()
            opt.step()
            if i == 3:
                raise ValueError("bad batch 3")
        """,
    )
    session = Session(max_steps=100)
    run = run_script(script, [], session)
    assert run.ended == "raised" and run.error == "ValueError: bad batch 3"
    assert session.steps == 4
    assert run.traceback is not None
    lines = run.traceback.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert str(script) in lines[1] and "runpy" not in run.traceback and "gradwatch" not in run.traceback
    assert lines[-1] == "ValueError: bad batch 3"


def test_global_state_is_restored_after_a_run(tmp_path: Path) -> None:
    import sys

    (tmp_path / "helper.py").write_text("COUNT = []\n")
    script = _script(
        tmp_path,
        """
        import helper
        helper.COUNT.append(1)
        assert len(helper.COUNT) == 1, "the script's own module was not imported afresh"
        torch.set_default_dtype(torch.float64)
        torch.set_grad_enabled(False)
        sys.argv.append("junk")
        """,
    )
    argv, dtype = sys.argv[:], torch.get_default_dtype()
    for _ in range(2):
        run = run_script(script, [], Session())
        assert run.ended == "finished", run.error
    assert sys.argv == argv and torch.get_default_dtype() == dtype and torch.is_grad_enabled()
    assert "helper" not in sys.modules
    assert torch.nn.Module.__call__.__name__ == "_wrapped_call_impl"  # the patches are gone
    assert torch.Tensor.backward.__qualname__ == "Tensor.backward"


def test_models_not_trained_and_frozen_modules_are_not_watched(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        teacher = nn.Linear(8, 1).requires_grad_(False)
        loss_fn = nn.MSELoss()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with torch.no_grad():
            model(X)  # an evaluation first
        for i in range(3):
            opt.zero_grad()
            loss_fn(model(X), teacher(X)).backward()
            opt.step()
        """,
    )
    session = Session(max_steps=10)
    run_script(script, [], session)
    assert [w.name for w in session.watched] == ["Sequential"]


def test_tweaks_act_between_the_reading_and_the_update(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        for i in range(4):
            opt.zero_grad()
            ((model(X) * 5 - Y) ** 2).mean().backward()
            opt.step()
            sched.step()
            log.append(opt.param_groups[0]["lr"])
        json.dump(log, open(sys.argv[1], "w"))
        """,
    )
    out = tmp_path / "lr.json"
    lr = LearningRate("lr×0.1", "lr:lower", 0.1)
    clip = RegistryClip("clip", "clip_grad_norm", {"max_norm": 0.05})
    session = Session(tweaks=[clip, lr])
    assert run_script(script, [str(out)], session).ended == "finished"
    assert json.loads(out.read_text()) == [0.05, 0.025, 0.0125, 0.00625]  # the schedule is untouched
    # the update is lr × 0.1 × the clipped gradient: its size is known exactly
    (w,) = session.watched
    assert w.history is not None and (w.history.global_grad_norm > 0.05).all()


def test_sign_steps_give_every_entry_the_global_rms() -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    q = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, -4.0, 0.5])
    q.grad = torch.tensor([-1e-6, 2.0])
    rms = math.sqrt((9 + 16 + 0.25 + 1e-12 + 4) / 5)
    SignSteps("sign", "sign_sgd").before_update([p, q], None)
    torch.testing.assert_close(p.grad, torch.tensor([rms, -rms, rms]))
    torch.testing.assert_close(q.grad, torch.tensor([-rms, rms]))


@pytest.mark.parametrize("factor", [0.3, 0.1])
def test_learning_rate_without_optimizer_scales_the_gradient(factor: float) -> None:
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([1.0, -2.0])
    LearningRate("lr", "lr:lower", factor).before_update([p], None)
    torch.testing.assert_close(p.grad, torch.tensor([factor, -2 * factor]))


def test_mixed_precision_loss_and_norms_are_unscaled(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        for i in range(6):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.float16):
                loss = nn.functional.mse_loss(model(X).float(), Y)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
            log.append([loss.item(), norm.item()])
            scaler.step(opt)
            scaler.update()
        json.dump(log, open(sys.argv[1], "w"))
        """,
    )
    out = tmp_path / "log.json"
    session = Session()
    assert run_script(script, [str(out)], session).ended == "finished"
    truth = np.array(json.loads(out.read_text()))
    (w,) = session.watched
    np.testing.assert_allclose(w.loss_curve(), truth[:, 0], rtol=1e-5)
    assert w.history is not None
    np.testing.assert_allclose(w.history.global_grad_norm, truth[:, 1], rtol=1e-4)


def test_tweaks_act_once_per_step_when_one_optimizer_trains_two_parts(tmp_path: Path) -> None:
    # encoder and decoder are called separately (two watched models) but share one optimizer:
    # lr×0.1 must scale the update once, not once per part
    script = _script(
        tmp_path,
        """
        enc, dec = nn.Linear(8, 4), nn.Linear(4, 1)
        opt = torch.optim.SGD([*enc.parameters(), *dec.parameters()], lr=0.5)
        for i in range(3):
            opt.zero_grad()
            ((dec(enc(X)) - Y) ** 2).mean().backward()
            before = enc.weight.detach().clone()
            grad = enc.weight.grad.clone()
            opt.step()
            log.append([(before - enc.weight.detach()).sum().item(), (0.5 * grad).sum().item(), opt.param_groups[0]["lr"]])
        json.dump(log, open(sys.argv[1], "w"))
        """,
    )
    out = tmp_path / "log.json"
    session = Session(tweaks=[LearningRate("lr×0.1", "lr:lower", 0.1)])
    assert run_script(script, [str(out)], session).ended == "finished"
    assert [w.name for w in session.watched] == ["Linear", "Linear#2"]
    for step, full, lr in json.loads(out.read_text()):
        assert step == pytest.approx(0.1 * full, rel=1e-5) and lr == 0.5


def test_lbfgs_with_many_evaluations_per_step_keeps_its_learning_rate(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5)
        def closure():
            opt.zero_grad()
            loss = ((model(X) - Y) ** 2).mean()
            loss.backward()
            return loss
        for i in range(3):
            opt.step(closure)
            log.append(opt.param_groups[0]["lr"])
        json.dump(log, open(sys.argv[1], "w"))
        """,
    )
    out = tmp_path / "lr.json"
    session = Session(tweaks=[LearningRate("lr×0.1", "lr:lower", 0.1)])
    assert run_script(script, [str(out)], session).ended == "finished"
    assert json.loads(out.read_text()) == [0.5, 0.5, 0.5] and session.steps == 3


def test_gradient_checkpointing_does_not_make_new_models(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        from torch.utils.checkpoint import checkpoint
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(8, 8), nn.Tanh()) for _ in range(3)])
                self.head = nn.Linear(8, 1)
            def forward(self, x):
                for b in self.blocks:
                    x = checkpoint(b, x, use_reentrant=False)
                return self.head(x)
        net = Net()
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        for i in range(4):
            opt.zero_grad()
            ((net(X) - Y) ** 2).mean().backward()
            opt.step()
        """,
    )
    session = Session()
    assert run_script(script, [], session).ended == "finished"
    assert [w.name for w in session.watched] == ["Net"] and session.steps == 4


def test_a_backward_that_does_not_reach_a_model_leaves_its_record_alone(tmp_path: Path) -> None:
    # a GAN in DCGAN order: D's loss on a detached fake does not reach G; G's record is its own gradient
    script = _script(
        tmp_path,
        """
        G, D = nn.Linear(4, 8), nn.Linear(8, 1)
        optG, optD = torch.optim.SGD(G.parameters(), lr=0.01), torch.optim.SGD(D.parameters(), lr=0.01)
        z = torch.randn(16, 4)
        for i in range(3):
            fake = G(z)
            optD.zero_grad()
            (D(X).mean() - D(fake.detach()).mean()).backward()
            optD.step()
            optG.zero_grad()
            errG = -D(fake).mean()
            errG.backward()
            log.append([errG.item(), torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in G.parameters()])).item()])
            optG.step()
        json.dump(log, open(sys.argv[1], "w"))
        """,
    )
    out = tmp_path / "g.json"
    session = Session()
    assert run_script(script, [str(out)], session).ended == "finished"
    g = next(w for w in session.watched if w.optimizer is not None and w.name == "Linear")
    truth = np.array(json.loads(out.read_text()))
    assert g.history is not None
    np.testing.assert_allclose(g.history.global_grad_norm, truth[:, 1], rtol=1e-5)
    np.testing.assert_allclose(g.loss_curve(), truth[:, 0], rtol=1e-6)


def test_backward_on_a_non_scalar_is_an_unknown_loss_not_a_nan(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for i in range(5):
            opt.zero_grad()
            out = model(X) - Y
            out.backward(torch.ones_like(out) / out.numel())
            opt.step()
        """,
    )
    session = Session()
    assert run_script(script, [], session).ended == "finished"
    (w,) = session.watched
    assert w.loss_curve() == [None] * 5
    assert w.verdict is not None and w.verdict.status != "nonfinite"
    from gradwatch.diagnose import score

    final, _, _, diverged = score(w.loss_curve())
    assert math.isnan(final) and diverged is None


def test_lazy_modules_are_watched_once_they_have_weights(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        lazy = nn.Sequential(nn.LazyLinear(16), nn.ReLU(), nn.Linear(16, 1))
        lazy(X)  # materializes the weights (under autograd, as a first training forward would)
        opt = torch.optim.Adam(lazy.parameters())
        for i in range(3):
            opt.zero_grad()
            ((lazy(X) - Y) ** 2).mean().backward()
            opt.step()
        """,
    )
    session = Session()
    assert run_script(script, [], session).ended == "finished"
    assert session.problems == [] and session.steps == 3


def test_a_script_that_changes_folder_and_start_method_runs_again(tmp_path: Path) -> None:
    import multiprocessing
    import os

    script = _script(
        tmp_path,
        """
        import multiprocessing, os
        multiprocessing.set_start_method("spawn")
        os.chdir("/")
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        opt.zero_grad(); ((model(X) - Y) ** 2).mean().backward(); opt.step()
        """,
    )
    cwd, method = os.getcwd(), multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(None, force=True)  # as in a fresh `gradwatch diagnose` process
    try:
        for _ in range(2):
            run = run_script(script, [], Session())
            assert run.ended == "finished", run.error
            assert os.getcwd() == cwd and multiprocessing.get_start_method(allow_none=True) is None
    finally:
        multiprocessing.set_start_method(method, force=True)


def test_modules_of_a_virtualenv_inside_the_script_folder_are_kept() -> None:
    import types

    from gradwatch.diagnose.script import _own_module

    mine = types.SimpleNamespace(__file__="/proj/helper.py")
    venv = types.SimpleNamespace(__file__="/proj/.venv/lib/python3.11/site-packages/torchvision/__init__.py")
    sibling = types.SimpleNamespace(__file__="/projects/other.py")
    assert _own_module(mine, "/proj") and not _own_module(venv, "/proj") and not _own_module(sibling, "/proj")
