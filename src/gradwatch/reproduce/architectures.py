"""Claims about architectures against vanishing gradients: residual nets (He et al., Veit et al.),
batch normalization, rectified units.

Every model trains through the experiments runner on ``digits_heldout`` (the first 1,400
of scikit-learn's digits for training, the other 397 held out); what the papers measure
beyond the learning curve (training error, path magnitudes, the input percentiles of a
sigmoid) is measured on the trained model or by forward hooks.
"""

from __future__ import annotations

from math import comb
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from gradwatch.experiments import Spec, build_model
from gradwatch.reproduce.core import Claim, Context, Criterion, Outcome, train, train_module
from gradwatch.tasks import digits_split

__all__ = ["CLAIMS"]


def _digits_spec(**knobs: Any) -> Spec:
    base: dict[str, Any] = {"task": "digits_heldout", "length": 1, "model": "mlp", "batch_size": 64}
    return Spec(**{**base, **knobs})


def _median_grad_by_layer(layer_grad_norm: dict[str, float]) -> list[float]:
    """The monitor's median ‖g‖ per Linear layer, input → output (norm layers left out)."""
    return [v for k, v in layer_grad_norm.items() if k == "input" or k == "output" or k.endswith(".linear")]


# --------------------------------------------------------------------------- He et al. 2016: degradation
def _he_residual(ctx: Context) -> Outcome:
    c = ctx.criterion
    Xtr, ytr, _, _ = digits_split()
    shallow, deep, steps = (4, 48, 400) if ctx.tier == "quick" else (8, 96, 1500)

    def trained(depth: int, residual: bool) -> tuple[float, str, list[float]]:
        spec = _digits_spec(
            activation="relu",
            hidden=32,
            layers=depth,
            norm="batch",
            residual=residual,
            optimizer="sgd",
            lr=0.05,
            momentum=0.9,
            steps=steps,
            eval_every=steps,
        )
        r = train(ctx, "he-degradation", spec, (0,), batched=False, keep_model=True)[0]
        assert r.model is not None  # keep_model=True
        r.model.eval()
        with torch.no_grad():  # the paper's measure: error on the training set
            train_error = float((r.model(Xtr).argmax(1) != ytr).float().mean())
        return train_error, str(r.verdict.get("status")), _median_grad_by_layer(r.layer_grad_norm)

    plain_s, _, _ = trained(shallow, False)
    plain_d, verdict_d, flow_plain = trained(deep, False)
    res_d, verdict_r, flow_res = trained(deep, True)
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.semilogy(flow_plain, "C0.-", label=f"plain, {deep} blocks ({verdict_d})")
    ax.semilogy(flow_res, "C1.-", label=f"residual, {deep} blocks ({verdict_r})")
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel("median ‖g‖ over the run (monitor)")
    ax.legend(fontsize=7, title="monitor's verdict", title_fontsize=7)
    passed = (
        plain_d > plain_s + c["min_degradation"] and res_d <= plain_s + c["residual_slack"] and verdict_d != "vanishing"
    )
    return Outcome(
        measured=f"training error after {steps} steps: plain {shallow} blocks {plain_s:.1%}, plain {deep} blocks "
        f"{plain_d:.1%}, residual {deep} blocks {res_d:.1%}; the monitor's verdict on the deep plain net: {verdict_d}",
        passed=passed,
        values={"plain_shallow": plain_s, "plain_deep": plain_d, "residual_deep": res_d, "verdict": verdict_d},
        figure=fig,
        note="ReLU + batch-norm MLPs on digits (width 32) instead of CNNs on CIFAR/ImageNet; residual blocks are the "
        "pre-activation ones of He et al. 2016b. The paper concludes that the degradation is not vanishing "
        "gradients, and that is what is checked. It also says batch norm keeps the backward norms healthy; at 48 "
        "blocks our monitor often finds the opposite failure in the plain net instead — gradients exploding at its "
        "bottom, the first layer's ‖θ‖ growing by orders of magnitude (the verdict above) — which Yang et al. 2019 "
        "('A mean field theory of batch normalization', ICLR) predict for deep batch-normalized nets without skips.",
    )


# --------------------------------------------------------------------------- Veit et al. 2016: short paths
def _veit(ctx: Context) -> Outcome:
    c = ctx.criterion
    Xtr = digits_split()[0]
    n = 20 if ctx.tier == "quick" else 54
    spec = _digits_spec(
        activation="relu",
        hidden=64,
        layers=n,
        norm="batch",
        residual=True,
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        steps=300,
        eval_every=300,
    )
    net: Any = train(ctx, "veit-paths", spec, (0,), batched=False, keep_model=True)[0].model
    net.eval()
    with torch.no_grad():
        ys = [net.input_act(net.input(Xtr[:1]))]
        for blk in net.blocks:
            ys.append(blk(ys[-1]))
    # the error signal at the top: the gradient of the mean logit w.r.t. the last block's output
    top_in = ys[-1].detach().requires_grad_(True)
    (g_top,) = torch.autograd.grad(net.output(net.final(top_in)).mean(), top_in)
    g_top = g_top[0].double()
    # float64 for the path products: at 54 blocks the longest paths' magnitudes (≈ e^-90) are below
    # float32's smallest normal number and would flush to 0
    jac = [torch.func.jacrev(net.blocks[i].branch)(ys[i])[0, :, 0, :].detach().double() for i in range(n)]
    rng = np.random.default_rng(0)
    lengths = np.arange(n + 1)
    mags = []
    for k in lengths:
        vals = []
        for _ in range(50):
            v = g_top
            for i in sorted(rng.choice(n, size=int(k), replace=False), reverse=True):
                v = v @ jac[i]  # a path through the branches of S and the identity skips elsewhere
            vals.append(float(v.norm()))
        mags.append(float(np.mean(vals)))
    logm = np.log(np.asarray(mags))
    slope = float(np.polyfit(lengths, logm, 1)[0])
    r = float(np.corrcoef(lengths, logm)[0, 1])
    contrib = np.array([comb(n, int(k)) * m for k, m in zip(lengths, mags, strict=True)])
    eff = float((lengths * contrib).sum() / contrib.sum())
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.semilogy(lengths, mags, "ko-", label="mean gradient magnitude of a path")
    ax.semilogy(lengths, contrib / contrib.max(), "C1s--", label="× number of paths (normalized)")
    ax.set_xlabel("path length k (residual branches traversed)")
    ax.legend(fontsize=8)
    return Outcome(
        measured=f"{n}-block residual net: log gradient magnitude falls linearly with path length (slope {slope:.2f} "
        f"per block, r = {r:.3f}); the gradient-weighted path length is {eff:.1f} of {n} blocks (typical path: {n / 2:.0f})",
        passed=slope < 0 and r < c["max_correlation"] and eff < n * c["max_length_fraction"],
        values={"magnitudes": mags, "slope": slope, "r": r, "effective_length": eff},
        figure=fig,
        note="A residual MLP (ReLU + batch norm) trained briefly on digits through the experiments runner instead of "
        "a ResNet on CIFAR; 50 random paths per length, one input.",
    )


# --------------------------------------------------------------------------- Ioffe & Szegedy 2015: batch norm
def _batchnorm(ctx: Context) -> Outcome:
    c = ctx.criterion
    steps = 300 if ctx.tier == "quick" else 1500
    errs, pct, drift = {}, {}, {}
    for norm in (None, "batch", "layer"):
        key = norm or "none"
        spec = _digits_spec(
            activation="sigmoid",
            hidden=64,
            layers=20,
            norm=norm,
            optimizer="sgd",
            lr=0.1,
            momentum=0.9,
            steps=steps,
            eval_every=steps,
        )
        net = build_model(spec)
        # Ioffe & Szegedy's fig. 1(b, c): the {15, 50, 85}th percentiles of the input to one sigmoid
        # of the last hidden layer, over the course of training (here: over each training batch)
        last = [m for m in net.modules() if isinstance(m, nn.Sigmoid)][-1]
        seen: list[list[float]] = []

        def record(m: nn.Module, args: Any, out: torch.Tensor, seen: list[list[float]] = seen) -> None:
            if torch.is_grad_enabled():  # training steps only, not the runner's evaluation
                seen.append(torch.quantile(args[0][:, 0].detach(), torch.tensor([0.15, 0.5, 0.85])).tolist())

        hook = last.register_forward_hook(record)
        try:
            errs[key] = train_module(ctx, "batchnorm-deep-sigmoid", f"norm-{key}", spec, net).final_error
        finally:
            hook.remove()
        pct[key] = np.array(seen)
        k = max(1, steps // 10)
        # drift: how far each percentile's typical value moves from the first to the last tenth of training
        drift[key] = float(np.max(np.abs(np.median(pct[key][-k:], axis=0) - np.median(pct[key][:k], axis=0))))
    fig = Figure(figsize=(10, 3.4))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, title in zip(axes, ("none", "batch"), ("without batch norm", "with batch norm"), strict=True):
        for j, q in enumerate((15, 50, 85)):
            ax.plot(pct[key][:, j], lw=0.8, label=f"{q}th percentile")
        ax.set_title(f"{title}: held-out error {errs[key]:.0%}", fontsize=9)
        ax.set_xlabel("training step")
    axes[0].set_ylabel("input to a last-layer sigmoid")
    axes[0].legend(fontsize=7)
    return Outcome(
        measured=f"20-layer sigmoid MLP on digits after {steps} SGD steps: held-out error {errs['none']:.1%} without "
        f"batch norm, {errs['batch']:.1%} with it ({errs['layer']:.1%} with layer norm, Ba et al. 2016); drift of "
        f"the sigmoid input's 15/50/85th percentiles (first vs last tenth of training): {drift['none']:.2f} without, "
        f"{drift['batch']:.2f} with",
        passed=errs["none"] > c["stall_error"] and errs["batch"] < c["max_error"] and drift["batch"] < drift["none"],
        values={"errors": errs, "percentile_drift": drift},
        figure=fig,
        note="Digits instead of MNIST, and a 20-layer net (the paper's fig. 1 uses 3 layers of 100): at this depth "
        "the net without batch norm does not train at all. Percentiles are taken over each training batch for unit "
        "0 of the last hidden layer (a forward hook on the model the runner trains).",
    )


# --------------------------------------------------------------------------- rectifiers
def _relu_family(ctx: Context) -> Outcome:
    c = ctx.criterion
    steps = 600 if ctx.tier == "quick" else 3000
    base: dict[str, Any] = {
        "hidden": 64,
        "layers": 20,
        "optimizer": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "steps": steps,
        "eval_every": 100,
    }
    variants = {
        "sigmoid": _digits_spec(**base, activation="sigmoid"),
        "tanh": _digits_spec(**base, activation="tanh"),
        "ReLU (He init)": _digits_spec(**base, activation="relu", init="he"),
        "leaky ReLU (He init)": _digits_spec(**base, activation="leaky_relu", init="he"),
    }
    results = {n: train(ctx, "relu-family", s, (0,), batched=False)[0] for n, s in variants.items()}
    errs = {n: r.final_error for n, r in results.items()}
    status = {n: r.verdict.get("status") for n, r in results.items()}
    saturating, rectified = ("sigmoid", "tanh"), ("ReLU (He init)", "leaky ReLU (He init)")
    passed = all(errs[n] > c["stall_error"] and status[n] == "vanishing" for n in saturating) and all(
        errs[n] < c["max_error"] and status[n] == "healthy" for n in rectified
    )
    fig = Figure(figsize=(10, 3.6))
    a1, a2 = fig.subplots(1, 2)
    for i, (n, r) in enumerate(results.items()):
        a1.plot(r.steps, r.error, color=f"C{i}", label=f"{n} ({status[n]})")
        a2.semilogy(_median_grad_by_layer(r.layer_grad_norm), color=f"C{i}", marker=".", label=n)
    a1.set_xlabel("training step")
    a1.set_ylabel("held-out error")
    a1.legend(fontsize=7, title="monitor's verdict", title_fontsize=7)
    a2.set_xlabel("layer (input → output)")
    a2.set_ylabel("median ‖g‖ over the run (monitor)")
    a2.legend(fontsize=7)
    return Outcome(
        measured="20-layer MLP on digits, SGD (lr 0.01, momentum 0.9), held-out error after "
        f"{steps} steps and the monitor's verdict: " + "; ".join(f"{n} {errs[n]:.1%} ({status[n]})" for n in results),
        passed=passed,
        values={"errors": errs, "verdicts": status},
        figure=fig,
        note="Digits, 64-wide layers, one seed; saturating units keep torch's default init, rectifiers use He init "
        "(the pairing the papers recommend). The monitor's verdict is part of the criterion: the same tool that "
        "diagnoses the problem confirms the remedy.",
    )


CLAIMS = (
    Claim(
        "he-degradation",
        "He, Zhang, Ren & Sun 2016, 'Deep residual learning for image recognition', §4.1",
        "A deep plain network trains worse than a shallower one, while its residual version does not; with batch "
        "norm the degradation is not caused by vanishing gradients.",
        "34-layer plain nets have higher training error than 18-layer ones; ResNets reverse this",
        Criterion(
            "deep plain training error > shallow + {min_degradation:.0%} (absolute); deep residual within "
            "{residual_slack:.0%} of shallow plain; the monitor's verdict on the deep plain net is not 'vanishing'",
            {"min_degradation": 0.3, "residual_slack": 0.05},
        ),
        _he_residual,
        remedies=("residual", "batchnorm", "relu"),
    ),
    Claim(
        "veit-paths",
        "Veit, Wilber & Belongie 2016, 'Residual networks behave like ensembles of relatively shallow networks'",
        "In a deep residual network the gradient magnitude of a path falls exponentially with its length, so the "
        "paths that carry the gradient are far shorter than the network.",
        "effective paths of 5–17 blocks in a 54-block ResNet",
        Criterion(
            "log magnitude linear in length (r < {max_correlation}, negative slope); gradient-weighted path length "
            "< {max_length_fraction} × the number of blocks",
            {"max_correlation": -0.95, "max_length_fraction": 0.25},
        ),
        _veit,
        remedies=("residual",),
    ),
    Claim(
        "batchnorm-deep-sigmoid",
        "Ioffe & Szegedy 2015",
        "Batch normalization lets a deep sigmoid MLP train where the same net without it stalls, and the "
        "distribution of a sigmoid's input drifts less during training.",
        "BN networks train with saturating nonlinearities that otherwise fail to train; fig. 1(b, c): the sigmoid "
        "input's 15/50/85th percentiles stay stable with BN and drift without",
        Criterion(
            "without BN the held-out error stays near chance (> {stall_error:.0%}), with BN it falls below "
            "{max_error:.0%}; the percentiles drift less with BN",
            {"stall_error": 0.8, "max_error": 0.5},
        ),
        _batchnorm,
        remedies=("batchnorm", "layernorm"),
    ),
    Claim(
        "relu-family",
        "Glorot, Bordes & Bengio 2011 (rectifiers); Maas, Hannun & Ng 2013 (leaky ReLU); He et al. 2015 (init)",
        "Rectified units keep the gradient of a deep MLP alive where sigmoid and tanh units let it vanish; the "
        "monitor's verdict says which.",
        "deep rectifier nets train with plain back-propagation; saturating ones need pre-training",
        Criterion(
            "sigmoid and tanh: held-out error > {stall_error:.0%} and the monitor says 'vanishing'; ReLU and leaky "
            "ReLU: < {max_error:.0%} and 'healthy'",
            {"stall_error": 0.8, "max_error": 0.5},
        ),
        _relu_family,
        remedies=("relu", "leaky_relu", "init:he"),
    ),
)
