"""Hugging Face models (random weights from small configs, nothing downloaded) and the Trainer callback."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

import gradwatch as gw  # noqa: E402

VOCAB = 64


def _gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=2)
    return transformers.GPT2LMHeadModel(cfg)


def _bert() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=3,
    )
    return transformers.BertForSequenceClassification(cfg)


def _manual_layers(model: torch.nn.Module) -> dict[str, float]:
    """Per-module gradient norms by a plain loop over named_parameters() (tied weights once)."""
    per: dict[str, float] = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            layer = name.rsplit(".", 1)[0]
            per[layer] = per.get(layer, 0.0) + float(p.grad.double().pow(2).sum())
    return {k: math.sqrt(v) for k, v in per.items()}


@pytest.mark.parametrize("which", ["gpt2", "bert"])
def test_transformer_per_layer_norms_equal_a_manual_loop(which: str) -> None:
    model = _gpt2() if which == "gpt2" else _bert()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    with gw.Monitor(model, opt) as mon:
        for _ in range(2):
            ids = torch.randint(0, VOCAB, (4, 16), generator=g)
            if which == "gpt2":
                loss = model(input_ids=ids, labels=ids).loss
            else:
                loss = model(input_ids=ids, labels=torch.randint(0, 3, (4,), generator=g)).loss
            loss.backward()
            expected = _manual_layers(model)
            mon.step(loss)
            opt.step()
            opt.zero_grad()
        rec = mon.records()[-1]
    assert set(rec["layers"]) == set(expected)
    for layer, v in expected.items():
        assert rec["layers"][layer]["grad_norm"] == pytest.approx(v, rel=1e-5), layer
    assert rec["global_grad_norm"] == pytest.approx(math.sqrt(sum(v * v for v in expected.values())), rel=1e-5)
    if which == "gpt2":  # lm_head.weight is wte.weight: one layer, counted once
        assert "lm_head" not in rec["layers"] and "transformer.wte" in rec["layers"]


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(1)
        self.ids = torch.randint(0, VOCAB, (n, 16), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def test_hf_trainer_callback(tmp_path, capsys) -> None:
    pytest.importorskip("accelerate")
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gradwatch.integrations.hf import GradwatchCallback

    max_norm, steps = 0.5, 4
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=steps,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        max_grad_norm=max_norm,
        learning_rate=1e-3,
        logging_steps=1,
        report_to=["tensorboard"],
        save_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(model=_gpt2(), args=args, train_dataset=_Tokens(32))
    cb = GradwatchCallback(weights_every=1).attach(trainer)
    trainer.train()

    h = cb.history
    assert h.n_steps == steps  # one record per optimizer step (2 micro-batches each)
    # the Trainer's own pre-clip norm (accelerate's clip_grad_norm_) is the independent check
    hf_norms = [e["grad_norm"] for e in trainer.state.log_history if "grad_norm" in e]
    np.testing.assert_allclose(h.global_grad_norm, hf_norms, rtol=1e-4)
    clipped = h.clip_pre > max_norm
    assert clipped.any()
    np.testing.assert_allclose(h.clip_post[clipped], max_norm, rtol=1e-4)
    assert np.isfinite(h.layers["transformer.h.0.attn.c_attn"].update_ratio).all()
    # the numbers reached the Trainer's logs, its log history and its TensorBoard logger
    logged = [e["gradwatch/global_grad_norm"] for e in trainer.state.log_history if "gradwatch/global_grad_norm" in e]
    np.testing.assert_allclose(logged, h.global_grad_norm, rtol=1e-6)
    acc = EventAccumulator(str(next(p for p in (tmp_path / "out").rglob("events.out.tfevents.*")).parent))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert any("gradwatch/global_grad_norm" in t for t in tags), tags
    assert cb.verdict is not None
    assert "gradwatch verdict" in capsys.readouterr().out


def test_attach_hands_the_accelerators_grad_scaler_to_the_monitor(tmp_path) -> None:
    """fp16 needs CUDA in the Trainer; the wiring is checked with a scaler set on the accelerator."""
    pytest.importorskip("accelerate")
    from gradwatch.integrations.hf import GradwatchCallback

    args = transformers.TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], max_steps=1)
    model = _gpt2()
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Tokens(4))
    scaler = torch.amp.GradScaler("cpu")
    trainer.accelerator.scaler = scaler
    cb = GradwatchCallback().attach(trainer)
    assert trainer.callback_handler.callbacks[0] is cb
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cb.on_train_begin(args, trainer.state, trainer.control, model=model, optimizer=opt)
    assert cb.monitor.scaler is scaler
    cb.on_train_end(args, trainer.state, trainer.control)
    assert "update" not in scaler.__dict__  # the monitor let go of the scaler


def test_attached_callback_reads_only_the_last_micro_batch_of_each_step(tmp_path, monkeypatch) -> None:
    """Each reading is a full pass over the gradients: the partial ones of accumulation are skipped."""
    pytest.importorskip("accelerate")
    from gradwatch.integrations.hf import GradwatchCallback

    readings = []
    original = gw.Monitor.read_grads
    monkeypatch.setattr(gw.Monitor, "read_grads", lambda self: (readings.append(1), original(self))[1])
    steps, accumulation = 3, 4
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=steps,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=accumulation,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(model=_gpt2(), args=args, train_dataset=_Tokens(64))
    cb = GradwatchCallback().attach(trainer)
    trainer.train()
    assert cb.history.n_steps == steps
    assert len(readings) == steps  # not steps × accumulation
