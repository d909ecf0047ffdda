"""The registry of remedies: names (as the verdict's advice uses them), kinds, sources, reasons."""

from __future__ import annotations

from dataclasses import dataclass

from gradwatch import _checks

__all__ = ["KINDS", "Remedy", "available", "get"]

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
class Remedy:
    """One remedy: its registry name, kind, source (paper or tool), one-line why, and where it lives."""

    name: str
    kind: str
    source: str
    why: str
    api: str


_REMEDIES = (
    Remedy(
        "clip_grad_norm",
        "clipping",
        "Pascanu, Mikolov & Bengio 2013, §3.2",
        "rescales the gradient when its norm exceeds a threshold, bounding the step taken at a cliff",
        "gradwatch.remedies.clipping.clip_grad_norm_",
    ),
    Remedy(
        "clip_grad_value",
        "clipping",
        "torch.nn.utils.clip_grad_value_",
        "clips every gradient entry to [−c, c]; cruder than norm clipping (changes the direction)",
        "gradwatch.remedies.clipping.clip_grad_value_",
    ),
    Remedy(
        "agc",
        "clipping",
        "Brock, De, Smith & Simonyan 2021 (NFNets), eq. 3",
        "clips each unit's gradient relative to its weight norm, so small layers are not over-clipped",
        "gradwatch.remedies.clipping.adaptive_clip_grad_",
    ),
    Remedy(
        "autoclip",
        "clipping",
        "Seetharaman, Wichern, Pardo & Le Roux 2020",
        "clips at a percentile of the gradient norms seen so far: no threshold to tune",
        "gradwatch.remedies.clipping.AutoClip",
    ),
    Remedy(
        "pascanu_regularizer",
        "regularizer",
        "Pascanu, Mikolov & Bengio 2013, eq. 9",
        "penalizes changes of ‖∂E/∂x_k‖ from step to step, keeping the error signal alive in time",
        "gradwatch.remedies.regularizer.pascanu_penalty",
    ),
    Remedy(
        "init:kumar",
        "init",
        "Kumar 2017, arXiv:1704.08863",
        "variance 1/(N g′(0)²(1+g(0)²)) keeps each layer's gain near 1 (std ≈ 3.6/√N for the logistic function)",
        "gradwatch.remedies.init.kumar_",
    ),
    Remedy(
        "init:yilmaz_poli",
        "init",
        "Yilmaz & Poli 2022, Neural Networks 153",
        "a negative weight mean max(−1, −8/N) keeps deep logistic MLPs out of the vanishing regime",
        "gradwatch.remedies.init.yilmaz_poli_",
    ),
    Remedy(
        "init:orthogonal",
        "init",
        "Saxe, McClelland & Ganguli 2014",
        "all singular values 1: products of Jacobians neither shrink nor grow at initialization",
        "gradwatch.remedies.init.orthogonal_",
    ),
    Remedy(
        "init:identity_recurrent",
        "init",
        "Le, Jaitly & Hinton 2015 (IRNN)",
        "a ReLU RNN whose recurrent matrix starts as the identity carries state and gradient unchanged",
        "gradwatch.remedies.init.identity_recurrent_",
    ),
    Remedy(
        "init:forget_bias",
        "init",
        "Gers, Schmidhuber & Cummins 2000; Hochreiter & Schmidhuber 1997 (no forget gate)",
        "a forget gate that starts open (σ(5) ≈ 0.993) lets the LSTM cell carry error over long lags from step one",
        "gradwatch.remedies.init.forget_bias_",
    ),
    Remedy(
        "init:glorot",
        "init",
        "Glorot & Bengio 2010",
        "variance 2/(fan_in + fan_out) balances forward and backward signal for tanh-like units",
        "gradwatch.remedies.init.glorot_",
    ),
    Remedy(
        "init:he",
        "init",
        "He, Zhang, Ren & Sun 2015",
        "variance 2/fan_in keeps ReLU activations and gradients at constant scale",
        "gradwatch.remedies.init.he_",
    ),
    Remedy(
        "spectral_radius<1",
        "init",
        "Pascanu, Mikolov & Bengio 2013, §2.1",
        "a recurrent matrix with spectral radius below 1 cannot make linear-regime gradients explode",
        "gradwatch.theory.rnn.recurrent_matrix",
    ),
    Remedy(
        "batchnorm",
        "architecture",
        "Ioffe & Szegedy 2015; Santurkar et al. 2018",
        "normalizing pre-activations keeps them out of saturation and evens the gradient scale across layers",
        "gradwatch.models.mlp(norm='batch')",
    ),
    Remedy(
        "layernorm",
        "architecture",
        "Ba, Kiros & Hinton 2016",
        "per-sample normalization, the batch-independent alternative to batch normalization",
        "gradwatch.models.mlp(norm='layer')",
    ),
    Remedy(
        "residual",
        "architecture",
        "He, Zhang, Ren & Sun 2016",
        "identity skip connections give the gradient a path with gain 1 through every block",
        "gradwatch.models.mlp(residual=True)",
    ),
    Remedy(
        "relu",
        "architecture",
        "Glorot, Bordes & Bengio 2011",
        "rectifiers do not saturate for positive inputs, unlike sigmoid (σ′ ≤ 1/4) and tanh",
        "gradwatch.models.mlp(activation='relu')",
    ),
    Remedy(
        "leaky_relu",
        "architecture",
        "Maas, Hannun & Ng 2013",
        "a small negative slope keeps units that are off for the whole batch trainable",
        "gradwatch.models.mlp(activation='leaky_relu')",
    ),
    Remedy(
        "lstm",
        "architecture",
        "Hochreiter & Schmidhuber 1997 (LSTM); Cho et al. 2014 (GRU)",
        "gated cells carry state along an additive path, so ∂h_t/∂h_{t−1} need not shrink",
        "gradwatch.models.rnn(kind='lstm' | 'gru')",
    ),
    Remedy(
        "dbn_pretraining",
        "pretraining",
        "Hinton, Osindero & Teh 2006",
        "greedy layer-wise RBM pre-training starts backpropagation from features, not from noise",
        "gradwatch.remedies.pretrain.pretrain_dbn + load_dbn_",
    ),
    Remedy(
        "history_compressor",
        "pretraining",
        "Schmidhuber 1992, Neural Computation 4",
        "a chunker sees only what the automatizer failed to predict: long lags become short ones",
        "gradwatch.remedies.hierarchy.HistoryCompressor",
    ),
    Remedy(
        "random_search",
        "search",
        "Hochreiter & Schmidhuber 1996/97 (weight guessing)",
        "guesses weights at random; no gradient, so nothing to vanish — solves some long-lag tasks outright",
        "gradwatch.remedies.search.random_search",
    ),
    Remedy(
        "genetic_algorithm",
        "search",
        "the article, after Hochreiter's fundamental deep learning problem",
        "evolves a population of weight vectors by selection, crossover and mutation, without gradients",
        "gradwatch.remedies.search.genetic_algorithm",
    ),
    Remedy(
        "rprop",
        "optimizer",
        "Riedmiller & Braun 1993; used by Behnke 2003",
        "steps by the sign of the gradient, whose size does not vanish (full-batch training)",
        "torch.optim.Rprop",
    ),
    Remedy(
        "sign_sgd",
        "optimizer",
        "Bernstein, Wang, Azizzadenesheli & Anandkumar 2018",
        "the mini-batch version of sign steps (optionally with momentum: Signum)",
        "gradwatch.remedies.optim.SignSGD",
    ),
    Remedy(
        "lr:lower",
        "optimizer",
        "Pascanu, Mikolov & Bengio 2013, §3",
        "a smaller learning rate keeps updates from overshooting where the gradient is steep",
        "the optimizer's lr",
    ),
    Remedy(
        "amp:grad_scaler",
        "optimizer",
        "Micikevicius et al. 2018; torch.amp.GradScaler",
        "with mixed precision, loss scaling skips the steps whose gradients overflow",
        "torch.amp.GradScaler",
    ),
    Remedy(
        "data:check",
        "practice",
        "—",
        "a NaN/Inf first seen at the model's first module usually comes from the input batch itself",
        "torch.isfinite(batch).all()",
    ),
    Remedy(
        "gpu",
        "hardware",
        "the article, 'Faster hardware' (Schmidhuber 2015)",
        "more compute makes plain backpropagation feasible for deeper nets; it does not remove the problem",
        "model.to('cuda')",
    ),
)


def available(kind: str | None = None) -> list[Remedy]:
    """List the remedies (optionally of one kind), sorted by name.

    Raises:
        ConfigError: an unknown kind.
    """
    if kind is not None:
        _checks.choice(kind, "kind", "available", KINDS)
    return sorted((r for r in _REMEDIES if kind is None or r.kind == kind), key=lambda r: r.name)


def get(name: str) -> Remedy:
    """Return the remedy registered under ``name``.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones).
    """
    by_name = {r.name: r for r in _REMEDIES}
    _checks.choice(name, "name", "remedies.get", tuple(by_name))
    return by_name[name]
