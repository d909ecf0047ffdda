"""Restricted Boltzmann machines and greedy deep-belief-net pre-training.

The article's "related approach": Hinton, Osindero & Teh 2006, "A fast learning
algorithm for deep belief nets" — learn one layer of features at a time with an RBM,
each trained on the hidden activities of the one below, then use the stack to initialize
a network fine-tuned by backpropagation.

- :class:`RBM` — Bernoulli–Bernoulli or Gaussian–Bernoulli (unit-variance visibles: standardize
  the data first, as Hinton's practical guide (2010, §13.2) recommends) trained by
  contrastive divergence CD-k (Hinton 2002) or persistent CD (Tieleman 2008), with momentum
  and weight decay.
- :func:`pretrain_dbn` — greedy layer-wise training of a stack of RBMs.
- :func:`load_dbn_` — copy the stack into the first Linear layers of any model (e.g.
  ``gradwatch.models.mlp(..., activation="sigmoid")``), in place.

Energies (W of shape (n_visible, n_hidden), visible bias b, hidden bias c):
Bernoulli visibles E(v, h) = −bᵀv − cᵀh − vᵀWh, free energy F(v) = −bᵀv − Σ_j softplus(c_j + (vW)_j);
Gaussian visibles (σ = 1) E(v, h) = ½‖v − b‖² − cᵀh − vᵀWh, F(v) = ½‖v − b‖² − Σ_j softplus(c_j + (vW)_j).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.functional import softplus

from gradwatch import _checks
from gradwatch.errors import ConfigError

__all__ = ["RBM", "CDGradients", "load_dbn_", "pretrain_dbn"]

VISIBLE = ("bernoulli", "gaussian")


@dataclass(frozen=True)
class CDGradients:
    """Ascent directions for the log-likelihood: positive minus negative statistics, batch means."""

    W: torch.Tensor
    b: torch.Tensor
    c: torch.Tensor


class RBM:
    """A restricted Boltzmann machine trained by CD-k or persistent CD (scikit-learn style).

    Args:
        n_hidden: number of hidden (binary) units.
        visible: "bernoulli" (data in [0, 1]) or "gaussian" (standardized real data, σ = 1).
        k: Gibbs steps per update (CD-k).
        persistent: keep the negative chains across updates (PCD, Tieleman 2008).
        lr, momentum, weight_decay: the update θ ← θ + lr·(Δ − wd·W) with momentum.
        batch_size, n_epochs: mini-batch size and passes over the data.
        seed: seeds a private torch.Generator (initial weights ~ N(0, 0.01²), sampling).

    Learned attributes (after :meth:`fit`): ``W_`` (n_visible, n_hidden), ``b_`` (n_visible,),
    ``c_`` (n_hidden,), ``history_`` (reconstruction error per epoch).
    """

    def __init__(
        self,
        n_hidden: int,
        *,
        visible: str = "bernoulli",
        k: int = 1,
        persistent: bool = False,
        lr: float = 0.05,
        momentum: float = 0.5,
        weight_decay: float = 1e-4,
        batch_size: int = 64,
        n_epochs: int = 10,
        seed: int = 0,
    ) -> None:
        owner = "RBM"
        self.n_hidden = _checks.positive_int(n_hidden, "n_hidden", owner)
        self.visible = _checks.choice(visible, "visible", owner, VISIBLE)
        self.k = _checks.positive_int(k, "k", owner)
        self.persistent = bool(persistent)
        self.lr = _checks.interval(lr, "lr", owner, 0, low_open=True)
        self.momentum = _checks.interval(momentum, "momentum", owner, 0, 1, high_open=True)
        self.weight_decay = _checks.interval(weight_decay, "weight_decay", owner, 0)
        self.batch_size = _checks.positive_int(batch_size, "batch_size", owner)
        self.n_epochs = _checks.positive_int(n_epochs, "n_epochs", owner, minimum=0)
        self.seed = seed

    # ------------------------------------------------------------------ model
    def _init(self, n_visible: int, data: torch.Tensor) -> None:
        self._gen = torch.Generator().manual_seed(self.seed)
        self.W_ = torch.randn(n_visible, self.n_hidden, generator=self._gen, dtype=data.dtype) * 0.01
        self.c_ = torch.zeros(self.n_hidden, dtype=data.dtype)
        if self.visible == "bernoulli":
            # Hinton (2010, §8.1): visible biases log(p/(1 − p)) of the data's on-probabilities
            p = data.mean(dim=0).clamp(1e-3, 1 - 1e-3)
            self.b_ = torch.log(p / (1 - p))
        else:
            self.b_ = data.mean(dim=0).clone()
        self._chains: torch.Tensor | None = None

    def _check_fitted(self) -> None:
        if not hasattr(self, "W_"):
            raise ConfigError("This RBM is not fitted yet: call fit(X) first.")

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """p(h = 1 | v) = σ(c + vW), shape (batch, n_hidden)."""
        self._check_fitted()
        return torch.sigmoid(self.c_ + v @ self.W_)

    def visible_mean(self, h: torch.Tensor) -> torch.Tensor:
        """E[v | h]: σ(b + Whᵀ) for Bernoulli visibles, b + Whᵀ for Gaussian ones."""
        self._check_fitted()
        pre = self.b_ + h @ self.W_.T
        return torch.sigmoid(pre) if self.visible == "bernoulli" else pre

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) per sample (see the module docstring), shape (batch,)."""
        self._check_fitted()
        hidden_term = softplus(self.c_ + v @ self.W_).sum(dim=-1)
        if self.visible == "bernoulli":
            return -(v @ self.b_) - hidden_term
        return 0.5 * ((v - self.b_) ** 2).sum(dim=-1) - hidden_term

    def _sample_v(self, h: torch.Tensor) -> torch.Tensor:
        mean = self.visible_mean(h)
        if self.visible == "bernoulli":
            return torch.bernoulli(mean, generator=self._gen)
        return mean + torch.randn(mean.shape, generator=self._gen, dtype=mean.dtype)

    def gibbs(self, v: torch.Tensor, k: int) -> torch.Tensor:
        """Run k steps of block Gibbs sampling v → h → v from ``v``; returns v_k."""
        for _ in range(k):
            h = torch.bernoulli(self.hidden_probs(v), generator=self._gen)
            v = self._sample_v(h)
        return v

    def cd_gradients(self, v_data: torch.Tensor, v_model: torch.Tensor) -> CDGradients:
        """Positive minus negative statistics, with hidden probabilities (Hinton 2010, §3).

        ΔW = ⟨v p(h|v)ᵀ⟩_data − ⟨v p(h|v)ᵀ⟩_model, Δb = ⟨v⟩_data − ⟨v⟩_model,
        Δc = ⟨p(h|v)⟩_data − ⟨p(h|v)⟩_model — which is exactly −∇θ [mean F(v_data) − mean F(v_model)].
        """
        ph_d, ph_m = self.hidden_probs(v_data), self.hidden_probs(v_model)
        n_d, n_m = v_data.shape[0], v_model.shape[0]
        if self.visible == "bernoulli":
            db = v_data.mean(0) - v_model.mean(0)
        else:
            db = (v_data - self.b_).mean(0) - (v_model - self.b_).mean(0)
        return CDGradients(
            W=v_data.T @ ph_d / n_d - v_model.T @ ph_m / n_m,
            b=db,
            c=ph_d.mean(0) - ph_m.mean(0),
        )

    # ------------------------------------------------------------------ training
    def fit(self, X: torch.Tensor) -> RBM:
        """Train on ``X`` (n_samples, n_visible); returns ``self``.

        Raises:
            ConfigError: X not 2-D, or Bernoulli data outside [0, 1].
        """
        data = self._as_data(X)
        self._init(data.shape[1], data)
        vel = [torch.zeros_like(t) for t in (self.W_, self.b_, self.c_)]
        self.history_: list[float] = []
        n = data.shape[0]
        for _ in range(self.n_epochs):
            order = torch.randperm(n, generator=self._gen)
            for start in range(0, n, self.batch_size):
                v0 = data[order[start : start + self.batch_size]]
                if self.persistent:
                    if self._chains is None or self._chains.shape[0] != v0.shape[0]:
                        self._chains = v0.clone()
                    vk = self.gibbs(self._chains, self.k)
                    self._chains = vk
                else:
                    vk = self.gibbs(v0, self.k)
                g = self.cd_gradients(v0, vk)
                steps = (g.W - self.weight_decay * self.W_, g.b, g.c)
                for t, v, s in zip((self.W_, self.b_, self.c_), vel, steps, strict=True):
                    v.mul_(self.momentum).add_(s, alpha=self.lr)
                    t.add_(v)
            self.history_.append(self.reconstruction_error(data))
        return self

    def _as_data(self, X: torch.Tensor) -> torch.Tensor:
        data = torch.as_tensor(X, dtype=torch.float64) if not torch.is_tensor(X) else X.detach().double()
        if data.dim() != 2 or data.shape[0] < 1:
            raise ConfigError(f"RBM data must have shape (n_samples, n_visible). Got {tuple(data.shape)}.")
        if self.visible == "bernoulli" and (data.min() < 0 or data.max() > 1):
            raise ConfigError(
                "Bernoulli visible units need data in [0, 1] (scale or binarize it), "
                "or use visible='gaussian' with standardized data."
            )
        return data

    def transform(self, X: torch.Tensor) -> torch.Tensor:
        """Hidden probabilities p(h = 1 | v) for the rows of ``X`` (the features passed upward)."""
        return self.hidden_probs(self._as_data(X))

    def reconstruction_error(self, X: torch.Tensor) -> float:
        """Mean squared error of the mean-field reconstruction E[v | p(h|v)], per entry."""
        v = self._as_data(X)
        return float(((v - self.visible_mean(self.hidden_probs(v))) ** 2).mean())

    def pseudo_log_likelihood(self, X: torch.Tensor) -> float:
        """Mean over samples of Σ_i log p(v_i | v_−i) = Σ_i log σ(F(v with i flipped) − F(v)) (binary data).

        Raises:
            ConfigError: for Gaussian visibles, or data that is not binary.
        """
        if self.visible != "bernoulli":
            raise ConfigError("pseudo_log_likelihood is defined here for Bernoulli visibles only.")
        v = self._as_data(X)
        if not torch.all((v == 0) | (v == 1)):
            raise ConfigError("pseudo_log_likelihood needs binary data (0/1).")
        f = self.free_energy(v)
        total = torch.zeros(v.shape[0], dtype=v.dtype)
        for i in range(v.shape[1]):
            flipped = v.clone()
            flipped[:, i] = 1 - flipped[:, i]
            total += torch.nn.functional.logsigmoid(self.free_energy(flipped) - f)
        return float(total.mean())


def pretrain_dbn(X: torch.Tensor, hidden_sizes: Sequence[int], **rbm_kwargs: object) -> list[RBM]:
    """Greedy layer-wise pre-training (Hinton et al. 2006): one RBM per layer, each on the one below.

    The first RBM sees ``X`` (its ``visible`` kind from ``rbm_kwargs``); every higher RBM
    has Bernoulli visibles and is trained on the hidden probabilities of the layer below.

    Returns:
        The trained RBMs, bottom first.

    Raises:
        ConfigError: no hidden size given.
    """
    if not hidden_sizes:
        raise ConfigError("pretrain_dbn needs at least one hidden size, e.g. [256, 128].")
    rbms: list[RBM] = []
    data = X
    for i, size in enumerate(hidden_sizes):
        kwargs = dict(rbm_kwargs)
        if i > 0:
            kwargs["visible"] = "bernoulli"
        kwargs.setdefault("seed", 0)
        kwargs["seed"] = int(kwargs["seed"]) + i  # type: ignore[call-overload]
        rbm = RBM(size, **kwargs).fit(data)  # type: ignore[arg-type]
        rbms.append(rbm)
        data = rbm.transform(data)
    return rbms


def load_dbn_(model: nn.Module, rbms: Sequence[RBM]) -> nn.Module:
    """Copy a stack of RBMs into the first ``len(rbms)`` Linear layers of ``model``, in place.

    Layer i gets weight = W_ᵀ and bias = c_ of RBM i (the recognition weights). Use it with
    sigmoid layers, whose units match the RBMs' binary hidden units.

    Raises:
        ConfigError: fewer Linear layers than RBMs, or a shape mismatch (named).
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if len(linears) < len(rbms):
        raise ConfigError(f"load_dbn_: the model has {len(linears)} Linear layers, fewer than {len(rbms)} RBMs.")
    with torch.no_grad():
        for i, (lin, rbm) in enumerate(zip(linears, rbms, strict=False)):
            rbm._check_fitted()
            want = (rbm.W_.shape[1], rbm.W_.shape[0])
            if tuple(lin.weight.shape) != want:
                raise ConfigError(
                    f"load_dbn_: Linear layer {i} has weight shape {tuple(lin.weight.shape)}, "
                    f"RBM {i} needs (out, in) = {want}."
                )
            lin.weight.copy_(rbm.W_.T.to(lin.weight.dtype))
            if lin.bias is not None:
                lin.bias.copy_(rbm.c_.to(lin.bias.dtype))
    return model
