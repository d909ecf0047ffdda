"""The theory lab: each of the article's models computed, summarized as JSON and drawn.

Every ``lab_*`` function computes one model with the article's values as defaults and
returns a :class:`LabRun`: a JSON-ready ``summary`` (the keys documented in docs/cli.md)
and a ``draw(path)`` that writes the figure as PNG. :func:`lab_all` runs them all and
writes every figure and a ``summary.json`` into a folder: the main job of the README.

Figures use matplotlib's object API (``Figure``), never pyplot, so nothing global changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from gradwatch import _checks, _limits
from gradwatch._output import atomic_write_text, check_figure_path, dump_json, json_safe, prepare_folder, save_figure
from gradwatch._progress import ProgressCallback
from gradwatch.report import lab_sizes  # registers each model's size estimate on import
from gradwatch.theory import doya, landscape, rnn, spectrum

__all__ = [
    "LAB_MODELS",
    "LabRun",
    "jsonable",
    "lab_all",
    "lab_doya",
    "lab_landscape",
    "lab_note3",
    "lab_rnn",
    "lab_spectrum",
]

LAB_MODELS = ("doya", "landscape", "note3", "rnn", "spectrum")


@dataclass(frozen=True)
class LabRun:
    """One lab model's results: a JSON-ready summary and a function that draws its figure."""

    name: str
    summary: dict[str, Any]
    draw: Callable[[Path], None]

    def save_figure(self, path: str | Path) -> Path:
        """Write the figure to ``path`` (PNG for .png; the extension picks the format).

        Raises:
            ConfigError: an extension matplotlib cannot write; OutputError: an unwritable path.
        """
        p = check_figure_path(path)
        self.draw(p)
        return p


jsonable = json_safe  # the lab summaries' name for the shared converter


def _positive(a: np.ndarray) -> np.ndarray:
    """Replace zeros (underflow) by NaN so log axes show a gap instead of failing."""
    out = np.asarray(a, dtype=float).copy()
    out[out <= 0] = np.nan
    return out


# --------------------------------------------------------------------------- rnn
def lab_rnn(
    hidden: int = 32, gamma: float = 0.9, steps: int = 60, seed: int = 0, n_input: int = 1, *, limits: bool = True
) -> LabRun:
    """Sigmoid RNN: Jacobian products vs bounds, and ∇_θ L as a sum of per-step terms.

    A random sigmoid RNN with spectral radius ``gamma`` runs ``steps`` steps on inputs
    U(−1, 1); the loss is ½‖x_T − y‖² with y ~ U(0, 1). ``autograd_rel_err`` is the relative
    error between the sum of terms and torch autograd's gradient (float64).

    Raises:
        ConfigError: a parameter outside its range, or sizes over the memory/time limits
            (``limits=False`` lifts them; see gradwatch._limits).
    """
    owner = "lab rnn"
    _checks.positive_int(hidden, "hidden", owner)
    _checks.interval(gamma, "gamma", owner, 0, low_open=True)
    _checks.positive_int(n_input, "n_input", owner)
    T = _checks.positive_int(steps, "steps", owner)
    _checks.seed(seed, "seed", owner)
    _limits.enforce(owner, {"hidden": hidden, "steps": T, "n_input": n_input}, limits=limits)
    net = rnn.random_sigmoid_rnn(hidden, gamma, n_input=n_input, seed=seed)
    u = rnn.random_inputs(T, net.n_input, seed=seed)
    target = np.random.default_rng([seed, 3]).uniform(0.0, 1.0, net.n_hidden)
    products = rnn.jacobian_products(net, rnn.trajectory(net, u))
    terms = rnn.gradient_terms(net, u, target)
    reference = rnn.autograd_gradient(net, u, target)
    rel_err = float(np.linalg.norm(terms.gradient - reference) / np.linalg.norm(reference))
    summary = {
        "hidden": net.n_hidden,
        "steps": T,
        "seed": seed,
        "gamma": products.gamma,
        "w_rec_norm": products.w_rec_norm,
        "k": products.k,
        "product_norm": products.product_norm,
        "bound": products.bound,
        "tight_bound": products.tight_bound,
        "gamma_k": products.gamma_k,
        "term_norms": terms.term_norms,
        "horizon_99": terms.horizon_99,
        "autograd_rel_err": rel_err,
    }

    def draw(path: Path) -> None:
        fig = Figure(figsize=(11, 4.2))
        ax1, ax2 = fig.subplots(1, 2)
        k = products.k
        ax1.semilogy(
            k,
            _positive(products.product_norm),
            "k-",
            lw=2,
            label=r"$\|\prod_j W_{rec}\,\mathrm{diag}(\sigma'(x_{T-j}))\|$",
        )
        ax1.semilogy(k, products.bound, "C3--", label=r"article's bound $\|W_{rec}\|^k$")
        ax1.semilogy(k, products.tight_bound, "C0--", label=r"tight bound $(\|W_{rec}\|/4)^k$")
        ax1.semilogy(k, products.gamma_k, "C2:", label=rf"$\gamma^k$, $\gamma$={products.gamma:.2f} (rate)")
        ax1.set_xlabel("k (steps back from T)")
        ax1.set_ylabel("operator norm")
        ax1.set_title(f"Jacobian products, sigmoid RNN (n={net.n_hidden})")
        ax1.legend(fontsize=8)
        kk = np.arange(len(terms.term_norms))
        ax2.semilogy(kk, _positive(terms.term_norms), "k.-")
        ax2.axvline(terms.horizon_99 - 0.5, color="C1", ls="--", label=f"99 % horizon = {terms.horizon_99} terms")
        ax2.set_xlabel("k (term of the gradient sum, steps back)")
        ax2.set_ylabel(r"$\|$term$_k\|$ of $\nabla_\theta L$")
        ax2.set_title(f"Gradient terms decay (sum = autograd, rel. err {rel_err:.1e})")
        ax2.legend(fontsize=8)
        save_figure(fig, path)

    return LabRun("rnn", summary, draw)


# --------------------------------------------------------------------------- note 3
def lab_note3(eps: float = 0.8, c: float = 0.5, n: int = 40, *, limits: bool = True) -> LabRun:
    """The article's note 3: W_rec = [[0, 2], [ε, 0]], σ′ ≡ c; γ ≥ 1 yet products may vanish.

    Raises:
        ConfigError: a parameter outside its range, or ``n`` over the memory/time limits.
    """
    owner = "lab note3"
    _checks.interval(eps, "eps", owner, 0, low_open=True)
    _checks.interval(c, "c", owner, 0, 1, low_open=True)
    _limits.enforce(owner, {"n": _checks.positive_int(n, "n", owner)}, limits=limits)
    res = rnn.note3(eps, c, n)
    summary = {
        "eps": res.eps,
        "c": res.c,
        "spectral_radius": res.spectral_radius,
        "n": res.n,
        "norms": res.norms,
        "rate": res.rate,
        "critical_c": res.critical_c,
        "behaviour": res.behaviour,
    }

    def draw(path: Path) -> None:
        fig = Figure(figsize=(6.5, 4.2))
        ax = fig.subplots()
        cs = sorted({res.c, min(1.0, res.critical_c), min(1.0, 2 * res.critical_c - res.c)})
        for i, cc in enumerate(cs):
            r = rnn.note3(res.eps, cc, len(res.n))
            lab = f"c = {cc:.3f} ({r.behaviour})" + (" ← chosen" if math.isclose(cc, res.c) else "")
            ax.semilogy(r.n, _positive(r.norms), "o-", ms=3, color=f"C{i}", label=lab)
        ax.set_xlabel("n")
        ax.set_ylabel(r"$\|(W_{rec} D)^n\|$")
        ax.set_title(
            f"Note 3: ε={res.eps:g}, spectral radius γ={res.spectral_radius:.3f}, critical c*={res.critical_c:.3f}"
        )
        ax.legend(fontsize=8)
        save_figure(fig, path)

    return LabRun("note3", summary, draw)


# --------------------------------------------------------------------------- doya
def lab_doya(
    w: float = 5.0,
    b: float = -2.5,
    b_min: float = -3.0,
    b_max: float = -2.0,
    eps: float = 0.1,
    steps: int = 1000,
    far_x0: float = 0.1,
    delta: float = 1e-6,
    *,
    limits: bool = True,
) -> LabRun:
    """Doya's network: folds, bistable interval, hysteresis sweep, sensitivities near/far.

    "near": x(0) on the unstable equilibrium at ``b`` (on the separatrix); "far":
    x(0) = ``far_x0``. The sensitivities in ``sensitivity`` are the article's
    finite-difference quotients Δx(T)/Δx(0), Δx(T)/Δb (step ``delta``); the autograd
    derivatives are given beside them with the suffix ``_autograd``.

    Raises:
        ConfigError: a parameter outside its range, or ``steps`` over the memory/time limits.
    """
    owner = "lab doya"
    for name, value in (("w", w), ("b", b), ("b_min", b_min)):
        _checks.finite(value, name, owner)
    _checks.interval(b_max, "b_max", owner, b_min, low_open=True)
    _checks.interval(eps, "eps", owner, 0, 1, low_open=True)
    _checks.positive_int(steps, "steps", owner)
    lab_sizes.check_doya_eps(eps, limits=limits)
    _limits.enforce(owner, {"steps": steps}, context={"eps": eps}, limits=limits)
    _checks.interval(far_x0, "far_x0", owner, 0, 1)
    _checks.interval(delta, "delta", owner, 0, low_open=True)
    fl = doya.folds(w)
    interval = doya.bistable_interval(w)
    hyst = doya.hysteresis(w, b_min, b_max, eps=eps)
    eqs = doya.equilibria(w, b)
    unstable = [e.x for e in eqs if not e.stable]
    near_x0 = unstable[0] if unstable else None
    far = doya.sensitivity(far_x0, b, w=w, eps=eps, n_steps=steps, delta=delta)
    near = doya.sensitivity(near_x0, b, w=w, eps=eps, n_steps=steps, delta=delta) if near_x0 is not None else None

    def sens(s: doya.Sensitivity | None) -> dict[str, Any] | None:
        if s is None:
            return None
        return {
            "x0": s.x0,
            "x_T": s.x_T,
            "dxT_dx0": s.fd_dxT_dx0,
            "dxT_db": s.fd_dxT_db,
            "dxT_dx0_autograd": s.dxT_dx0,
            "dxT_db_autograd": s.dxT_db,
        }

    summary = {
        "w": w,
        "b": b,
        "eps": eps,
        "steps": steps,
        "delta": delta,
        "folds": [{"x": f.x, "b": f.b} for f in fl],
        "bistable_interval": list(interval) if interval else None,
        "equilibria": [{"x": e.x, "stable": e.stable, "slope": e.slope} for e in eqs],
        "hysteresis": {"jump_up_b": hyst.jump_up_b, "jump_down_b": hyst.jump_down_b},
        "sensitivity": {"near": sens(near), "far": sens(far)},
    }

    def draw(path: Path) -> None:
        fig = Figure(figsize=(11, 4.4))
        ax1, ax2 = fig.subplots(1, 2)
        bif = doya.bifurcation(w, b_min, b_max)
        # Split the curve into runs of equal stability so that stable/unstable lines do not join.
        edges = np.flatnonzero(np.diff(bif.stable.astype(int))) + 1
        for seg_x, seg_b, seg_s in zip(
            np.split(bif.x, edges), np.split(bif.b, edges), np.split(bif.stable, edges), strict=True
        ):
            ax1.plot(seg_b, seg_x, "k-" if seg_s[0] else "k--", lw=2)
        ax1.plot([], [], "k-", lw=2, label="stable equilibria")
        ax1.plot([], [], "k--", lw=2, label="unstable equilibria")
        ax1.plot(hyst.b_up, hyst.x_up, ".", color="C0", ms=3, label="sweep b up (simulated)")
        ax1.plot(hyst.b_down, hyst.x_down, ".", color="C1", ms=3, label="sweep b down (simulated)")
        for f in bif.folds:
            ax1.plot(f.b, f.x, "o", color="C3", ms=7, zorder=5)
        if bif.folds:
            ax1.plot([], [], "o", color="C3", label="fold points")
        for jb, xs, bs, col in (
            (hyst.jump_up_b, hyst.x_up, hyst.b_up, "C0"),
            (hyst.jump_down_b, hyst.x_down, hyst.b_down, "C1"),
        ):
            if jb is None:
                continue
            i = int(np.argmin(np.abs(bs - jb)))
            ax1.annotate(
                "",
                xy=(jb, xs[i]),
                xytext=(jb, xs[i - 1]),
                arrowprops={"arrowstyle": "->", "color": col, "lw": 2},
            )
        ax1.set_xlabel("b")
        ax1.set_ylabel("x (equilibrium)")
        ax1.set_title(f"Bifurcation and hysteresis, w = {w:g}")
        ax1.legend(fontsize=8, loc="upper left")
        x0s = np.linspace(0.005, 0.995, 397)
        if near_x0 is not None:
            x0s = np.sort(np.concatenate([x0s, near_x0 + np.array([-1e-3, -1e-4, -1e-5, 0.0, 1e-5, 1e-4, 1e-3])]))
        _, d_x0, d_b = doya.sensitivity_profile(x0s, b, w=w, eps=eps, n_steps=steps)
        ax2.semilogy(x0s, _positive(np.abs(d_x0)), "C0-", label=r"$|dx(T)/dx(0)|$")
        ax2.semilogy(x0s, _positive(np.abs(d_b)), "C2-", label=r"$|dx(T)/db|$")
        if near_x0 is not None:
            ax2.axvline(near_x0, color="C3", ls="--", label=f"unstable equilibrium x={near_x0:.3f}")
        ax2.set_xlabel("x(0)")
        ax2.set_ylabel("sensitivity (autograd)")
        ax2.set_title(f"Sensitivities at b = {b:g}, T = {steps} steps of ε = {eps:g}")
        ax2.legend(fontsize=8)
        save_figure(fig, path)

    return LabRun("doya", summary, draw)


# --------------------------------------------------------------------------- landscape
def lab_landscape(
    w: float = 5.0,
    x0: float = 0.5,
    target: float = 0.855,
    b_min: float = -3.0,
    b_max: float = -2.0,
    eps: float = 0.1,
    steps: int = 600,
    *,
    limits: bool = True,
) -> LabRun:
    """The geometric model: L(b) = (target − x(T))², its wall, and the gradient spike there.

    Raises:
        ConfigError: a parameter outside its range (every number must be finite), no wall
            in [b_min, b_max], or ``steps`` over the memory/time limits.
    """
    owner = "lab landscape"
    for name, value in (("w", w), ("target", target), ("b_min", b_min)):
        _checks.finite(value, name, owner)
    _checks.interval(b_max, "b_max", owner, b_min, low_open=True)
    _checks.positive_int(steps, "steps", owner)
    _checks.interval(eps, "eps", owner, 0, 1, low_open=True)
    _checks.interval(x0, "x0", owner, 0, 1)
    _limits.enforce(owner, {"steps": steps}, limits=limits)
    wl = landscape.wall(w=w, x0=x0, target=target, b_min=b_min, b_max=b_max, eps=eps, n_steps=steps)
    summary = {
        "w": w,
        "x0": x0,
        "target": target,
        "eps": eps,
        "steps": steps,
        "wall_b": wl.wall_b,
        "loss_left": wl.loss_left,
        "loss_right": wl.loss_right,
        "margin": wl.margin,
        "loss_jump": wl.loss_jump,
        "max_abs_grad": wl.max_abs_grad,
        "max_abs_grad_b": wl.max_abs_grad_b,
        "attractors_at_wall": sorted(wl.attractors_at_wall),
        "unstable_at_wall": sorted(wl.unstable_at_wall),
    }

    def draw(path: Path) -> None:
        fig = Figure(figsize=(14, 4.2))
        ax1, ax2, ax3 = fig.subplots(1, 3)
        ax1.plot(wl.b, wl.loss, "k-", lw=2)
        ax1.axvline(wl.wall_b, color="C3", ls="--", label=f"wall b = {wl.wall_b:.4f}")
        ax1.set_xlabel("b")
        ax1.set_ylabel(f"L = ({target:g} − x(T))²")
        ax1.set_title(f"The wall: loss jumps by {wl.loss_jump:.2f}")
        ax1.legend(fontsize=8)
        zoom = wl.wall_b + np.linspace(-2e-3, 2e-3, 801)
        _, g_zoom, _ = landscape.loss_curve(zoom, w=w, x0=x0, target=target, eps=eps, n_steps=steps)
        bb = np.concatenate([wl.b, zoom, [wl.wall_b]])
        gg = np.concatenate([wl.grad, g_zoom, [np.nan]])
        order = np.argsort(bb)
        ax2.semilogy(bb[order], _positive(np.abs(gg[order])), "C0-")
        ax2.plot(
            [wl.max_abs_grad_b],
            [wl.max_abs_grad],
            "v",
            color="C3",
            label=f"max |dL/db| = {wl.max_abs_grad:.2e}",
        )
        ax2.set_xlabel("b")
        ax2.set_ylabel("|dL/db| (autograd)")
        ax2.set_title("Exploding gradient at the wall")
        ax2.legend(fontsize=8)
        ws = np.linspace(3.0, 7.0, 161)
        bs = np.linspace(-4.0, -1.0, 241)
        surf = landscape.landscape_2d(ws, bs, x0=x0, target=target, eps=eps, n_steps=steps)
        im = ax3.pcolormesh(bs, ws, surf, shading="auto", cmap="viridis")
        fig.colorbar(im, ax=ax3, label="L")
        ax3.plot([wl.wall_b], [w], "r+", ms=10)
        ax3.set_xlabel("b")
        ax3.set_ylabel("w")
        ax3.set_title("Loss over (w, b): cliffs where basins change")
        save_figure(fig, path)

    return LabRun("landscape", summary, draw)


# --------------------------------------------------------------------------- spectrum
def lab_spectrum(
    cell: str = "lstm",
    hidden: int = 64,
    steps: int = 200,
    seed: int = 0,
    input_size: int = 8,
    input_scale: float = 1.0,
    burn_in: int = 0,
    *,
    limits: bool = True,
) -> LabRun:
    """Lyapunov exponents and Jacobian singular values of a freshly initialized cell.

    ``cell`` is "rnn" (tanh), "gru", "lstm" (torch's default init, seeded) or "linear"
    (h ↦ W h with W Gaussian, spectral radius 1; its exact exponents ln|eig(W)| are
    reported as ``expected``). Inputs are i.i.d. N(0, input_scale²).

    Raises:
        ConfigError: a parameter outside its range, or sizes over the memory/time limits.
    """
    owner = "lab spectrum"
    kind = _checks.choice(cell, "cell", owner, (*spectrum.CELL_KINDS, "linear"))
    H = _checks.positive_int(hidden, "hidden", owner)
    T = _checks.positive_int(steps, "steps", owner)
    m = _checks.positive_int(input_size, "input_size", owner)
    scale = _checks.interval(input_scale, "input_scale", owner, 0)
    _checks.positive_int(burn_in, "burn_in", owner, minimum=0)
    _checks.seed(seed, "seed", owner)
    sizes = {"hidden": H, "steps": T, "input_size": m, "burn_in": burn_in}
    _limits.enforce(owner, sizes, context={"cell": kind}, limits=limits)
    expected = None
    gen = torch.Generator().manual_seed(seed)
    if kind == "linear":
        W = torch.tensor(rnn.recurrent_matrix(H, 1.0, seed=seed))
        h0 = torch.randn(H, generator=gen, dtype=torch.float64)
        res = spectrum.lyapunov_spectrum(lambda h: W @ h, steps=T, h0=h0, burn_in=burn_in)
        expected = np.sort(np.log(np.abs(np.linalg.eigvals(W.numpy()))))[::-1]
    else:
        module = spectrum.random_cell(kind, H, m, seed=seed)
        u = scale * torch.randn(burn_in + T, m, generator=gen, dtype=torch.float64)
        res = spectrum.lyapunov_spectrum(module, steps=T, inputs=u, burn_in=burn_in)
    summary = {
        "cell": kind,
        "hidden": H,
        "state_size": res.state_size,
        "steps": T,
        "seed": seed,
        "lyapunov": res.lyapunov,
        "max_lyapunov": res.max_lyapunov,
        "singular_values": res.singular_values,
        "one_step_max_singular_value": res.one_step_singular_values[:, 0],
        "one_step_min_singular_value": res.one_step_singular_values[:, -1],
    }
    if expected is not None:
        summary["expected"] = expected

    def draw(path: Path) -> None:
        fig = Figure(figsize=(11, 4.2))
        ax1, ax2 = fig.subplots(1, 2)
        idx = np.arange(1, res.state_size + 1)
        ax1.plot(idx, res.lyapunov, "k.-", label="QR method")
        if expected is not None:
            ax1.plot(idx, expected, "C3x", label="ln|eig(W)| (exact)")
        ax1.axhline(0.0, color="grey", lw=1)
        ax1.set_xlabel("index i")
        ax1.set_ylabel(r"Lyapunov exponent $\lambda_i$ (nats/step)")
        ax1.set_title(f"{kind.upper()} cell, state size {res.state_size}: λ₁ = {res.max_lyapunov:.3f}")
        ax1.legend(fontsize=8)
        t = np.arange(1, T + 1)
        ax2.semilogy(t, _positive(res.one_step_singular_values[:, 0]), "C0-", label="largest")
        ax2.semilogy(t, _positive(res.one_step_singular_values[:, -1]), "C1-", label="smallest")
        ax2.set_xlabel("step t")
        ax2.set_ylabel(r"singular value of $J_t = \partial h_t/\partial h_{t-1}$")
        ax2.set_title("One-step Jacobian along the trajectory")
        ax2.legend(fontsize=8)
        save_figure(fig, path)

    return LabRun("spectrum", summary, draw)


def lab_all(out_dir: str | Path, *, on_progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Run every lab model with the article's defaults; write ``<name>.png`` and ``summary.json``.

    Args:
        out_dir: folder to write into (created if missing; its parent must exist).
        on_progress: called as ``on_progress(done, total, name)`` before each model and as
            ``on_progress(total, total, None)`` at the end (the CLI draws its progress bar from it).

    Returns:
        The summary: ``{name: summary_dict, ..., "figures": {name: path}}``.

    Raises:
        OutputError: ``out_dir`` cannot be created or written.
    """
    out = prepare_folder(out_dir)
    models: list[tuple[str, Callable[[], LabRun]]] = [
        ("doya", lab_doya),
        ("landscape", lab_landscape),
        ("note3", lab_note3),
        ("rnn", lab_rnn),
        ("spectrum", lab_spectrum),
    ]
    result: dict[str, Any] = {}
    figures = {}
    for done, (name, compute) in enumerate(models):
        if on_progress is not None:
            on_progress(done, len(models), name)
        run = compute()
        result[run.name] = jsonable(run.summary)
        figures[run.name] = str(run.save_figure(out / f"{run.name}.png"))
    if on_progress is not None:
        on_progress(len(models), len(models), None)
    result["figures"] = figures
    atomic_write_text(out / "summary.json", dump_json(result, indent=1))
    return result
