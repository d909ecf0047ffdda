"""The remedy catalog as pure data: name, kind, source, why, and the verdict's advice sentence.

This is a leaf module (no torch, no gradwatch imports) so that every layer may read it:
:mod:`gradwatch.remedies.registry` adds to each entry how the runner applies it, and the
monitor's verdict names remedies from it as data (the monitor never imports
``gradwatch.remedies``: see the import-linter contracts in pyproject.toml).

Entries are in the order the runner applies per-step remedies: norm clipping first (so it
may act on a norm measured before any other remedy touched the gradients), then value,
unit-wise and percentile clipping, spike skipping and ZClip, then the regularizer.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATALOG", "KINDS", "RemedyInfo", "advice", "info", "names"]

KINDS = (
    "architecture",
    "clipping",
    "hardware",
    "init",
    "optimizer",
    "practice",
    "pretraining",
    "regularizer",
    "search",
)


@dataclass(frozen=True)
class RemedyInfo:
    """What is known about a remedy, as data.

    Attributes:
        name: the registry name (the verdict's advice uses it).
        kind: one of :data:`KINDS`.
        source: the paper or tool it comes from.
        why: one line on why it helps.
        api: where it lives (a dotted path, a model knob, or a torch API).
        advice: the sentence the monitor's verdict gives when it advises this remedy
            (None: the verdict never advises it).
    """

    name: str
    kind: str
    source: str
    why: str
    api: str
    advice: str | None = None


CATALOG: tuple[RemedyInfo, ...] = (
    RemedyInfo(
        "clip_grad_norm",
        "clipping",
        "Pascanu, Mikolov & Bengio 2013, §3.2",
        "rescales the gradient when its norm exceeds a threshold, bounding the step taken at a cliff",
        "gradwatch.remedies.clipping.clip_grad_norm_",
        advice="rescaling the gradient whenever its norm exceeds a threshold bounds the step taken at a cliff (Pascanu et al. 2013)",
    ),
    RemedyInfo(
        "clip_grad_value",
        "clipping",
        "torch.nn.utils.clip_grad_value_",
        "clips every gradient entry to [−c, c]; cruder than norm clipping (changes the direction)",
        "gradwatch.remedies.clipping.clip_grad_value_",
    ),
    RemedyInfo(
        "agc",
        "clipping",
        "Brock, De, Smith & Simonyan 2021 (NFNets), eq. 3",
        "clips each unit's gradient relative to its weight norm, so small layers are not over-clipped",
        "gradwatch.remedies.clipping.adaptive_clip_grad_",
    ),
    RemedyInfo(
        "autoclip",
        "clipping",
        "Seetharaman, Wichern, Pardo & Le Roux 2020",
        "clips at a percentile of the gradient norms seen so far: no threshold to tune",
        "gradwatch.remedies.clipping.AutoClip",
    ),
    RemedyInfo(
        "skip_step_on_spike",
        "clipping",
        "the LLM trainers' practice (PaLM, Chowdhery et al. 2022, §5.1: skipping the batches around a spike)",
        "skips the optimizer step (weights and optimizer state unchanged) when ‖g‖ or the loss has an EMA z-score "
        "above a threshold: one outlier batch cannot move the weights",
        "gradwatch.remedies.spike.SkipStepOnSpike",
    ),
    RemedyInfo(
        "zclip",
        "clipping",
        "Kumar, Owen, Roy Chowdhury & Güra 2025 (ZClip), arXiv:2504.02507",
        "clips ‖g‖ only when its z-score against an EMA of past norms exceeds z_thres, to μ + z_thres²σ/z: "
        "no fixed threshold to tune",
        "gradwatch.remedies.spike.ZClip",
    ),
    RemedyInfo(
        "pascanu_regularizer",
        "regularizer",
        "Pascanu, Mikolov & Bengio 2013, eq. 9",
        "penalizes changes of ‖∂E/∂x_k‖ from step to step, keeping the error signal alive in time",
        "gradwatch.remedies.regularizer.pascanu_penalty",
        advice="penalizes the change of ‖∂E/∂x_k‖ from step to step, keeping the error signal alive across time (Pascanu et al. 2013)",
    ),
    RemedyInfo(
        "flossing",
        "regularizer",
        'Engelken 2023, NeurIPS, "Gradient flossing: improving gradient descent through dynamic control of Jacobians"',
        "pushes the first k Lyapunov exponents of the forward dynamics toward 0 (loss Σλ_i²), so k directions "
        "of the long-term Jacobian neither vanish nor explode",
        "gradwatch.remedies.flossing.flossing_loss",
        advice="gradient flossing pushes the recurrent Lyapunov exponents toward 0 (a loss Σλ_i²), so the "
        "gradient through time neither vanishes nor explodes (Engelken 2023)",
    ),
    RemedyInfo(
        "init:kumar",
        "init",
        "Kumar 2017, arXiv:1704.08863",
        "variance 1/(N g′(0)²(1+g(0)²)) keeps each layer's gain near 1 (std ≈ 3.6/√N for the logistic function)",
        "gradwatch.remedies.init.kumar_",
        advice="an initialization scaled to the activation (Kumar 2017: std 3.6/√N for the logistic function) keeps each layer's gain near 1",
    ),
    RemedyInfo(
        "init:yilmaz_poli",
        "init",
        "Yilmaz & Poli 2022, Neural Networks 153",
        "a negative weight mean max(−1, −8/N) keeps deep logistic MLPs out of the vanishing regime",
        "gradwatch.remedies.init.yilmaz_poli_",
        advice="for logistic layers, a negative mean of the initial weights (max(−1, −8/N)) keeps gradients from vanishing in deep MLPs (Yilmaz & Poli 2022)",
    ),
    RemedyInfo(
        "init:orthogonal",
        "init",
        "Saxe, McClelland & Ganguli 2014",
        "all singular values 1: products of Jacobians neither shrink nor grow at initialization",
        "gradwatch.remedies.init.orthogonal_",
        advice="an orthogonal (or identity, IRNN) recurrent matrix has all singular values 1, so products of Jacobians neither shrink nor grow at initialization",
    ),
    RemedyInfo(
        "init:identity_recurrent",
        "init",
        "Le, Jaitly & Hinton 2015 (IRNN)",
        "a ReLU RNN whose recurrent matrix starts as the identity carries state and gradient unchanged",
        "gradwatch.remedies.init.identity_recurrent_",
    ),
    RemedyInfo(
        "init:forget_bias",
        "init",
        "Gers, Schmidhuber & Cummins 2000; Hochreiter & Schmidhuber 1997 (no forget gate)",
        "a forget gate that starts open (σ(5) ≈ 0.993) lets the LSTM cell carry error over long lags from step one",
        "gradwatch.remedies.init.forget_bias_",
    ),
    RemedyInfo(
        "init:glorot",
        "init",
        "Glorot & Bengio 2010",
        "variance 2/(fan_in + fan_out) balances forward and backward signal for tanh-like units",
        "gradwatch.remedies.init.glorot_",
    ),
    RemedyInfo(
        "init:he",
        "init",
        "He, Zhang, Ren & Sun 2015",
        "variance 2/fan_in keeps ReLU activations and gradients at constant scale",
        "gradwatch.remedies.init.he_",
    ),
    RemedyInfo(
        "spectral_radius<1",
        "init",
        "Pascanu, Mikolov & Bengio 2013, §2.1",
        "a recurrent matrix with spectral radius below 1 cannot make linear-regime gradients explode",
        "gradwatch.theory.rnn.recurrent_matrix",
        advice="a recurrent matrix with spectral radius above 1 multiplies the gradient by more than 1 per step in the linear regime",
    ),
    RemedyInfo(
        "batchnorm",
        "architecture",
        "Ioffe & Szegedy 2015; Santurkar et al. 2018",
        "normalizing pre-activations keeps them out of saturation and evens the gradient scale across layers",
        "gradwatch.models.mlp(norm='batch')",
        advice="normalizing pre-activations keeps them out of the saturated range and evens out the gradient scale across layers",
    ),
    RemedyInfo(
        "layernorm",
        "architecture",
        "Ba, Kiros & Hinton 2016",
        "per-sample normalization, the batch-independent alternative to batch normalization",
        "gradwatch.models.mlp(norm='layer')",
        advice="layer normalization before each sublayer (pre-LN, Xiong et al. 2020) leaves the residual path "
        "unnormalized, so a deep transformer's lower layers keep their gradient; post-LN needs warm-up and a small lr",
    ),
    RemedyInfo(
        "residual",
        "architecture",
        "He, Zhang, Ren & Sun 2016",
        "identity skip connections give the gradient a path with gain 1 through every block",
        "gradwatch.models.mlp(residual=True)",
        advice="identity skip connections give the gradient a path with gain 1 through every block",
    ),
    RemedyInfo(
        "relu",
        "architecture",
        "Glorot, Bordes & Bengio 2011",
        "rectifiers do not saturate for positive inputs, unlike sigmoid (σ′ ≤ 1/4) and tanh",
        "gradwatch.models.mlp(activation='relu')",
        advice="sigmoid and tanh derivatives are at most 1/4 and 1 and near 0 when saturated; rectifiers (ReLU family) do not saturate for positive inputs",
    ),
    RemedyInfo(
        "leaky_relu",
        "architecture",
        "Maas, Hannun & Ng 2013",
        "a small negative slope keeps units that are off for the whole batch trainable",
        "gradwatch.models.mlp(activation='leaky_relu')",
        advice="units that are zero for the whole batch get no gradient; a leaky slope keeps them trainable",
    ),
    RemedyInfo(
        "lstm",
        "architecture",
        "Hochreiter & Schmidhuber 1997 (LSTM); Cho et al. 2014 (GRU)",
        "gated cells carry state along an additive path, so ∂h_t/∂h_{t−1} need not shrink",
        "gradwatch.models.rnn(kind='lstm' | 'gru')",
        advice="gated cells (LSTM/GRU) carry state along an additive path, so ∂h_t/∂h_{t−1} need not shrink",
    ),
    RemedyInfo(
        "dbn_pretraining",
        "pretraining",
        "Hinton, Osindero & Teh 2006",
        "greedy layer-wise RBM pre-training starts backpropagation from features, not from noise",
        "gradwatch.remedies.pretrain.pretrain_dbn + load_dbn_",
    ),
    RemedyInfo(
        "history_compressor",
        "pretraining",
        "Schmidhuber 1992, Neural Computation 4",
        "a chunker sees only what the automatizer failed to predict: long lags become short ones",
        "gradwatch.remedies.hierarchy.HistoryCompressor",
    ),
    RemedyInfo(
        "random_search",
        "search",
        "Hochreiter & Schmidhuber 1996/97 (weight guessing)",
        "guesses weights at random; no gradient, so nothing to vanish — solves some long-lag tasks outright",
        "gradwatch.remedies.search.random_search",
    ),
    RemedyInfo(
        "genetic_algorithm",
        "search",
        "the article, after Hochreiter's fundamental deep learning problem",
        "evolves a population of weight vectors by selection, crossover and mutation, without gradients",
        "gradwatch.remedies.search.genetic_algorithm",
    ),
    RemedyInfo(
        "rprop",
        "optimizer",
        "Riedmiller & Braun 1993; used by Behnke 2003",
        "steps by the sign of the gradient, whose size does not vanish (full-batch training)",
        "torch.optim.Rprop",
    ),
    RemedyInfo(
        "sign_sgd",
        "optimizer",
        "Bernstein, Wang, Azizzadenesheli & Anandkumar 2018",
        "the mini-batch version of sign steps (optionally with momentum: Signum)",
        "gradwatch.remedies.optim.SignSGD",
    ),
    RemedyInfo(
        "lr:lower",
        "optimizer",
        "Pascanu, Mikolov & Bengio 2013, §3",
        "a smaller learning rate keeps updates from overshooting where the gradient is steep",
        "the optimizer's lr",
        advice="a smaller learning rate keeps updates from overshooting where the gradient is steep",
    ),
    RemedyInfo(
        "amp:grad_scaler",
        "optimizer",
        "Micikevicius et al. 2018; torch.amp.GradScaler",
        "with mixed precision, loss scaling skips the steps whose gradients overflow",
        "torch.amp.GradScaler",
        advice="with float16, a GradScaler scales the loss so that small gradients do not underflow to zero, "
        "and skips the steps whose gradients overflow",
    ),
    RemedyInfo(
        "data:check",
        "practice",
        "—",
        "a NaN/Inf first seen at the model's first module usually comes from the input batch itself",
        "torch.isfinite(batch).all()",
        advice="the input batch or the targets may themselves hold NaN/Inf (check torch.isfinite(batch).all()); "
        "every value computed from them is then non-finite",
    ),
    RemedyInfo(
        "numerics:guard",
        "practice",
        "IEEE 754; torch.logsumexp, torch.nn.functional.log_softmax, torch.autocast(dtype=torch.bfloat16)",
        "a NaN/Inf made by log, sqrt, division or exp at the edge of their domain is a bug of the forward code, "
        "not of the gradient's size",
        "torch.clamp(x, min=eps) / x + eps inside log, sqrt and division; log_softmax; bfloat16",
        advice="the NaN/Inf came from the arithmetic itself: guard log, sqrt, pow and division against 0 "
        "(clamp or add an eps; sqrt'(0) is infinite), use log_softmax/logsumexp rather than log(softmax(x)) or exp, "
        "and keep float16 values in range (bfloat16 autocast)",
    ),
    RemedyInfo(
        "gpu",
        "hardware",
        "the article, 'Faster hardware' (Schmidhuber 2015)",
        "more compute makes plain backpropagation feasible for deeper nets; it does not remove the problem",
        "model.to('cuda')",
    ),
)

_BY_NAME = {r.name: r for r in CATALOG}


def names() -> tuple[str, ...]:
    """Every remedy name, in catalog order."""
    return tuple(_BY_NAME)


def info(name: str) -> RemedyInfo:
    """The catalog entry of ``name`` (KeyError for an unknown name: callers validate first)."""
    return _BY_NAME[name]


def advice(name: str) -> str:
    """The verdict's sentence for advising ``name``.

    Raises:
        KeyError: ``name`` is not in the catalog or has no advice sentence (a programming
            error in the verdict's rules, caught by the tests).
    """
    sentence = _BY_NAME[name].advice
    if sentence is None:
        raise KeyError(f"remedy {name!r} has no advice sentence in gradwatch._remedy_catalog")
    return sentence
