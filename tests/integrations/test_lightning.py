"""GradwatchCallback on a real Lightning Trainer (CPU, a few steps) vs the same training by hand."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch import nn

L = pytest.importorskip("lightning.pytorch")

from gradwatch.integrations.lightning import GradwatchCallback  # noqa: E402
from gradwatch.monitor import sinks  # noqa: E402

ACCUMULATE, CLIP, STEPS, BATCH = 2, 0.05, 4, 4


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n = ACCUMULATE * STEPS * BATCH
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


class _Module(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = _net()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _by_hand() -> list[tuple[float, float]]:
    """(pre-clip, post-clip) global norm per optimizer step, Lightning's recipe written out."""
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = _data()
    out = []
    for step in range(STEPS):
        for j in range(ACCUMULATE):
            i = (step * ACCUMULATE + j) * BATCH
            (nn.functional.cross_entropy(net(x[i : i + BATCH]), y[i : i + BATCH]) / ACCUMULATE).backward()
        pre = float(torch.nn.utils.clip_grad_norm_(net.parameters(), CLIP))
        post = float(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in net.parameters()])))
        out.append((pre, post))
        opt.step()
        opt.zero_grad()
    return out


def test_lightning_callback_records_each_optimizer_step_logs_and_gives_a_verdict(tmp_path, capsys) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH, shuffle=False)
    cb = GradwatchCallback(sinks=[sinks.TensorBoard(tmp_path / "tb")], weights_every=1)
    trainer = L.Trainer(
        max_steps=STEPS,
        accumulate_grad_batches=ACCUMULATE,
        gradient_clip_val=CLIP,
        callbacks=[cb],
        logger=L.loggers.CSVLogger(tmp_path, name="csv"),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(_Module(), loader)
    expected = _by_hand()

    h = cb.history
    assert h.n_steps == STEPS  # one record per optimizer step, not per micro-batch
    np.testing.assert_allclose(h.global_grad_norm, [e[0] for e in expected], rtol=1e-5)
    np.testing.assert_allclose(h.clip_pre, [e[0] for e in expected], rtol=1e-5)
    np.testing.assert_allclose(h.clip_post, [e[1] for e in expected], rtol=1e-5)
    assert np.isfinite(h.layers["net.0"].update_ratio).all()
    assert cb.verdict is not None and cb.verdict.status in ("healthy", "vanishing", "exploding")
    assert "gradwatch verdict" in capsys.readouterr().out

    # through the trainer's logger (CSV) ...
    with open(next((tmp_path / "csv").rglob("metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    logged = [float(r["gradwatch/global_grad_norm"]) for r in rows if r.get("gradwatch/global_grad_norm")]
    np.testing.assert_allclose(logged, h.global_grad_norm, rtol=1e-6)
    # ... and through a TensorBoard sink
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    np.testing.assert_allclose([e.value for e in acc.Scalars("gradwatch/clip/post")], h.clip_post, rtol=1e-6)


def test_trainer_loggers_get_the_steps_lightning_logs_sinks_get_every_record(tmp_path) -> None:
    """A logger call per record would cost about a training step each: loggers get Lightning's cadence."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps, every = 6, 3
    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)
    cb = GradwatchCallback(sinks=[sinks.TensorBoard(tmp_path / "tb")])
    trainer = L.Trainer(
        max_steps=steps,
        callbacks=[cb],
        logger=L.loggers.CSVLogger(tmp_path, name="csv"),
        log_every_n_steps=every,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(_Module(), loader)
    h = cb.history
    assert h.n_steps == steps
    with open(next((tmp_path / "csv").rglob("metrics.csv"))) as f:
        rows = [r for r in csv.DictReader(f) if r.get("gradwatch/global_grad_norm")]
    assert [int(r["step"]) for r in rows] == [every - 1, 2 * every - 1]
    np.testing.assert_allclose(
        [float(r["gradwatch/global_grad_norm"]) for r in rows], h.global_grad_norm[every - 1 :: every], rtol=1e-6
    )
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert len(acc.Scalars("gradwatch/global_grad_norm")) == steps  # the sink: every record


def test_log_every_n_steps_is_validated() -> None:
    from gradwatch.errors import ConfigError

    with pytest.raises(ConfigError, match="'log_every_n_steps' parameter of GradwatchCallback"):
        GradwatchCallback(log_every_n_steps=0)


def test_lightning_bf16_mixed_with_a_wandb_sink(tmp_path, wandb_run) -> None:
    run, logged = wandb_run
    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)
    cb = GradwatchCallback(sinks=[sinks.WandB(run)])
    trainer = L.Trainer(
        max_steps=3,
        precision="bf16-mixed",
        callbacks=[cb],
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    trainer.fit(_Module(), loader)
    run.finish()
    assert cb.history.n_steps == 3
    assert np.isfinite(cb.history.global_grad_norm).all()
    # the W&B sink got every record from the callback
    assert [s for s, _ in logged] == [0, 1, 2]
    np.testing.assert_allclose([d["gradwatch/global_grad_norm"] for _, d in logged], cb.history.global_grad_norm)
