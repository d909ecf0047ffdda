"""Claims about optimizers, clipping, precision and hardware: Rprop's invariance, clipping rules
against exploding gradients, fp16 loss scaling, the GPU speed-up.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from gradwatch import models
from gradwatch.experiments import Spec, run
from gradwatch.monitor import Monitor
from gradwatch.remedies.optim import SignSGD
from gradwatch.reproduce.core import (
    Claim,
    Context,
    Criterion,
    Outcome,
    bar_figure,
    error_bar_figure,
    format_threshold,
    train,
)
from gradwatch.tasks import digits_split

__all__ = ["CLAIMS"]


# --------------------------------------------------------------------------- 21. faster hardware
def _gpu(ctx: Context) -> Outcome:
    if not torch.cuda.is_available():
        return Outcome(measured="no CUDA device on this machine", passed=False, skipped=True)
    base: dict[str, Any] = {
        "task": "temporal_order",
        "length": 50,
        "model": "lstm",
        "hidden": 128,
        "batch_size": 128,
        "steps": 100 if ctx.tier == "quick" else 500,
        "eval_every": 1000,
        "optimizer": "adam",
        "lr": 1e-3,
    }
    run(Spec(**{**base, "steps": 5, "device": "cuda"}))  # warm-up: CUDA context, kernels
    times = {d: run(Spec(**base, device=d)).wall_time for d in ("cpu", "cuda")}
    speedup = times["cpu"] / times["cuda"]
    return Outcome(
        measured=f"the same LSTM training run: CPU {times['cpu']:.1f} s, GPU {times['cuda']:.1f} s ({speedup:.1f}× faster)",
        passed=speedup > ctx.criterion["min_speedup"],
        values={"times": times, "speedup": speedup},
        figure=bar_figure(times, "seconds for the same run", f"GPU speed-up {speedup:.1f}×"),
        note="A speed-up shows that hardware makes plain backpropagation cheaper; as the article notes, it does not "
        "change how gradients vanish.",
    )


# --------------------------------------------------------------------------- 17. Rprop
def _rprop(ctx: Context) -> Outcome:
    eye = torch.eye(10, dtype=torch.float64)
    max_epochs = 300 if ctx.tier == "quick" else 1000

    c = ctx.criterion

    # Not through the runner: full-batch epochs on the 10 encoder patterns, with the loss scaled
    # before backward (the invariance under test), which a runner step has no place for.
    def fit(opt_name: str, scale: float, epochs: int, seed: int) -> tuple[list[float], nn.Module]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = nn.Sequential(nn.Linear(10, 5), nn.Sigmoid(), nn.Linear(5, 10)).double()
        opt: torch.optim.Optimizer
        if opt_name == "rprop":
            opt = torch.optim.Rprop(net.parameters())
        elif opt_name == "sign_sgd":
            opt = SignSGD(net.parameters(), lr=0.01, momentum=0.9)
        else:
            opt = torch.optim.SGD(net.parameters(), lr=0.5)
        losses = []
        for _ in range(epochs):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(eye), torch.arange(10))
            (loss * scale).backward()
            opt.step()
            losses.append(float(loss.detach()))
        return losses, net

    def epochs_to(losses: list[float], level: float = c["target_loss"]) -> float:
        return next((i + 1 for i, v in enumerate(losses) if v < level), math.inf)

    _, net_a = fit("rprop", 1.0, 50, 0)
    _, net_b = fit("rprop", c["loss_scale"], 50, 0)
    invariant = all(torch.equal(p, q) for p, q in zip(net_a.parameters(), net_b.parameters(), strict=True))
    # sign-SGD uses only the sign of its momentum buffer; a power-of-two scale keeps that buffer exact
    _, net_c = fit("sign_sgd", 1.0, 50, 0)
    _, net_d = fit("sign_sgd", 2.0**-20, 50, 0)
    sign_invariant = all(torch.equal(p, q) for p, q in zip(net_c.parameters(), net_d.parameters(), strict=True))
    seeds = range(5 if ctx.tier == "quick" else 20)
    e_rprop, e_sgd = [], []
    curves: tuple[list[float], list[float]] | None = None
    for s in seeds:
        lr_, _ = fit("rprop", 1.0, max_epochs, s)
        ls_, _ = fit("sgd", 1.0, max_epochs, s)
        e_rprop.append(epochs_to(lr_))
        e_sgd.append(epochs_to(ls_))
        curves = curves or (lr_, ls_)
    med_r, med_s = float(np.median(e_rprop)), float(np.median(e_sgd))
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    assert curves is not None  # at least one seed ran
    ax.semilogy(curves[0], label="Rprop")
    ax.semilogy(curves[1], label="SGD, lr 0.5")
    ax.axhline(c["target_loss"], color="grey", ls=":")
    ax.set_xlabel("epoch (full batch)")
    ax.set_ylabel("cross-entropy, 10-5-10 encoder")
    ax.legend(fontsize=8)
    return Outcome(
        measured=f"loss × {format_threshold(c['loss_scale'])} gives bitwise the same weights after 50 epochs (float64): {invariant} (sign-SGD, loss "
        f"× 2^-20: {sign_invariant}); epochs to reach "
        f"cross-entropy {c['target_loss']:g} (median over {len(seeds)} seeds, max {max_epochs}): Rprop {med_r:g}, SGD {med_s:g}",
        passed=invariant and sign_invariant and med_r < med_s,
        values={
            "invariant": invariant,
            "sign_sgd_invariant": sign_invariant,
            "epochs_rprop": e_rprop,
            "epochs_sgd": e_sgd,
        },
        figure=fig,
        note="Encoder with a softmax/cross-entropy readout (the paper used sigmoid outputs and squared error); "
        "float64, because in float32 the products of consecutive tiny scaled gradients can underflow to 0 and "
        "change Rprop's sign test.",
    )


# --------------------------------------------------------------------------- extra: clipping rules
def _clipping_rules(ctx: Context) -> Outcome:
    steps = 300 if ctx.tier == "quick" else 1500
    base: dict[str, Any] = {
        "task": "digits_heldout",
        "length": 1,
        "model": "mlp",
        "hidden": 64,
        "layers": 8,
        "activation": "relu",
        "init": "he",
        "optimizer": "sgd",
        "lr": 1.0,
        "momentum": 0.9,
        "steps": steps,
        "batch_size": 64,
        "eval_every": 50,
    }
    variants = {
        "no clipping": {},
        "clip norm 1": {"clip_grad_norm": {"max_norm": 1.0}},
        "clip value 0.1": {"clip_grad_value": {"clip_value": 0.1}},
        "AGC 0.01": {"agc": {"clipping": 0.01}},
        "AutoClip p10": {"autoclip": {"percentile": 10.0}},
    }
    results = {
        n: train(ctx, "clipping-rules", Spec(**base, remedies=r), (0,), batched=False)[0] for n, r in variants.items()
    }
    lower = train(ctx, "clipping-rules", Spec(**{**base, "lr": 0.01}), (0,), batched=False)[0]
    results["no clipping, lr 0.01"] = lower
    # data:check — the inputs are finite, so a NaN can only come from the training dynamics
    data_finite = all(bool(torch.isfinite(t).all()) for t in digits_split()[::2])
    diverged = {n: r.diverged for n, r in results.items()}
    status = {n: r.verdict.get("status") for n, r in results.items()}
    errs = {n: r.final_error for n, r in results.items()}
    clipped = [n for n in variants if n != "no clipping"]
    passed = (
        data_finite
        and diverged["no clipping"]
        and status["no clipping"] in ("exploding", "nonfinite")
        and not any(diverged[n] for n in clipped)
        and not diverged["no clipping, lr 0.01"]
    )
    fig = error_bar_figure(errs, diverged, f"held-out error after {steps} steps (× = diverged)")
    return Outcome(
        measured="8-layer ReLU MLP, SGD lr 1.0 + momentum 0.9: "
        + "; ".join(f"{n}: {'diverged' if diverged[n] else f'{errs[n]:.1%}'} ({status[n]})" for n in results)
        + f"; data finite: {data_finite}",
        passed=passed,
        values={"errors": errs, "diverged": diverged, "verdicts": status},
        figure=fig,
        note="Every rule keeps the run finite where the unclipped one overflows, which is what clipping promises "
        "(Pascanu et al. 2013, §3.2; Brock et al. 2021's AGC; Seetharaman et al. 2020's AutoClip); it does not make "
        "a too-large learning rate good: at lr 1.0 the clipped runs stay finite but end far from trained (their "
        "errors above), while the plain remedy, a 100× lower learning rate, trains. Digits (held out: the last 397 "
        "images), one seed.",
    )


# --------------------------------------------------------------------------- extra: AMP loss scaling
def _amp_loss_scaling(ctx: Context) -> Outcome:
    """fp16 gradients of a deep sigmoid net underflow to zero; loss scaling (GradScaler) keeps them."""
    X, y, _, _ = digits_split(n_train=1797)
    depth = 6

    # Not through the runner: one batch, no training — the gradient of a single backward pass is the measurement.
    def net() -> Any:
        return models.mlp(in_dim=64, out_dim=10, hidden=64, layers=depth - 1, activation="sigmoid", seed=0)

    xb, yb = X[:256], y[:256]

    def first_layer_grad(mode: str) -> tuple[torch.Tensor, float]:
        model = net()
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16) if mode == "fp16 + GradScaler" else None
        with Monitor(model, opt, scaler=scaler) as mon:
            with torch.autocast("cpu", dtype=torch.float16, enabled=mode != "fp32"):
                loss = nn.functional.cross_entropy(model(xb), yb)
            (scaler.scale(loss) if scaler is not None else loss).backward()
            mon.step(loss)
            g = model.input.weight.grad.clone() / (scaler.get_scale() if scaler is not None else 1.0)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            recorded = float(mon.history.layers["input"].grad_norm[0])
        return g, recorded

    grads = {m: first_layer_grad(m) for m in ("fp32", "fp16", "fp16 + GradScaler")}
    ref = grads["fp32"][0]
    always_zero = (X == 0).all(dim=0)  # digits' border pixels: their weights' gradients are exactly 0 anyway
    live = ~always_zero
    zero_frac = {m: float((g[:, live] == 0).float().mean()) for m, (g, _) in grads.items()}
    rel_err = {m: float((g - ref).norm() / ref.norm()) for m, (g, _) in grads.items()}
    monitor_norm, monitor_fp32 = grads["fp16 + GradScaler"][1], grads["fp32"][1]
    c = ctx.criterion
    passed = (
        zero_frac["fp16"] > c["fp16_min_zeros"]
        and zero_frac["fp16 + GradScaler"] <= zero_frac["fp32"] + c["scaled_zeros_slack"]
        and rel_err["fp16 + GradScaler"] < c["max_relative_error"]
        and abs(monitor_norm / monitor_fp32 - 1) < c["monitor_tolerance"]
    )
    fig = Figure(figsize=(6, 3.4))
    ax = fig.subplots()
    ax.bar(range(3), [zero_frac[m] for m in grads], color=["C0", "C3", "C2"])
    ax.set_xticks(range(3), list(grads))
    ax.set_ylabel("first-layer gradient entries that are 0")
    ax.set_title(f"{depth}-layer sigmoid MLP, one batch of digits", fontsize=9)
    return Outcome(
        measured=f"{depth}-layer sigmoid MLP: first-layer gradient entries that are exactly 0 (live pixels only): "
        + ", ".join(f"{m} {zero_frac[m]:.1%}" for m in grads)
        + "; relative error vs fp32: "
        + ", ".join(f"{m} {rel_err[m]:.2g}" for m in grads)
        + f"; the monitor (scaler=) records the first layer's unscaled norm {monitor_norm:.3g} (fp32 run: "
        f"{monitor_fp32:.3g})",
        passed=passed,
        values={"zero_fraction": zero_frac, "relative_error": rel_err, "monitor_norm": [monitor_norm, monitor_fp32]},
        figure=fig,
        note="CPU autocast to float16 with torch.amp.GradScaler('cpu') at scale 2^16, one batch, instead of the "
        "paper's networks on GPUs. The vanishing gradient of a deep sigmoid net (≈ 1e-6 at the first layer) lies "
        "below fp16's smallest subnormal (≈ 6e-8) once spread over the activations, so without scaling it is lost "
        "entirely.",
    )


CLAIMS = (
    Claim(
        "faster-hardware",
        "The article, 'Faster hardware' (Schmidhuber 2015)",
        "GPUs make standard backpropagation much faster, though they do not fix the vanishing gradient.",
        "about a million-fold more compute from 1991 to 2015, much of it from GPUs",
        Criterion(
            "the same training run is more than {min_speedup}× as fast on the GPU as on the CPU (skipped when no GPU "
            "is present)",
            {"min_speedup": 1},
        ),
        _gpu,
        remedies=("gpu",),
    ),
    Claim(
        "rprop",
        "Riedmiller & Braun 1993; Behnke 2003",
        "Rprop's update depends only on the sign of the gradient, so scaling the loss changes nothing, and it trains "
        "the 10-5-10 encoder faster than plain gradient descent.",
        "invariance by construction; Rprop learns the encoder in far fewer epochs than back-propagation",
        Criterion(
            "bitwise-equal weights with the loss × {loss_scale}; Rprop's median number of epochs to reach "
            "cross-entropy {target_loss} below SGD's",
            {"loss_scale": 1e-6, "target_loss": 0.1},
        ),
        _rprop,
        remedies=("rprop", "sign_sgd"),
    ),
    Claim(
        "clipping-rules",
        "Pascanu, Mikolov & Bengio 2013, §3.2; Brock et al. 2021 (AGC); Seetharaman et al. 2020 (AutoClip)",
        "Rescaling a too-large gradient keeps SGD from blowing up: every clipping rule keeps a run finite where the "
        "unclipped run overflows, which the monitor diagnoses as exploding.",
        "clipping 'deals with' exploding gradients: no divergence",
        Criterion(
            "the unclipped run diverges with an exploding/nonfinite verdict (on finite data); no clipped run and not "
            "the lower-learning-rate run diverge"
        ),
        _clipping_rules,
        remedies=("clip_grad_norm", "clip_grad_value", "agc", "autoclip", "lr:lower", "data:check"),
    ),
    Claim(
        "amp-loss-scaling",
        "Micikevicius et al. 2018, 'Mixed precision training', §3.2 (loss scaling)",
        "Small gradients underflow to zero in fp16; scaling the loss before backward keeps them, and the monitor "
        "reports the unscaled values.",
        "gradient values below 2^-24 become zero in fp16; loss scaling shifts them into range",
        Criterion(
            "without scaling > {fp16_min_zeros:.0%} of a deep sigmoid net's first-layer gradient entries are 0; with "
            "a GradScaler no more than in fp32 (+{scaled_zeros_slack:.0%}), within {max_relative_error:.0%} of the "
            "fp32 gradient, and the monitor's norm within {monitor_tolerance:.0%} of the fp32 run's",
            {"fp16_min_zeros": 0.9, "scaled_zeros_slack": 0.01, "max_relative_error": 0.01, "monitor_tolerance": 0.05},
        ),
        _amp_loss_scaling,
        remedies=("amp:grad_scaler",),
    ),
)
