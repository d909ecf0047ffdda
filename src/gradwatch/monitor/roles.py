"""What each monitored layer *is*: recurrent, embedding, norm, attention, linear, conv or other.

The verdict reads roles to choose its rules and its advice: an embedding is not a first
dense layer (most of its rows get no gradient in a batch), a normalization layer's
parameters are not a depth step, and a recurrent model gets recurrent advice whatever the
monitor's periods are.

Roles come from two sources, both decided before the first record:

- **module types**, at ``Monitor`` construction (:func:`layer_roles`): ``nn.RNN``/``LSTM``/
  ``GRU`` and their ``Cell`` variants, ``nn.Embedding``/``EmbeddingBag``, the batch/
  instance/layer/group/RMS norms, ``nn.MultiheadAttention`` (and the layers inside it),
  convolutions, ``nn.Linear``/``Bilinear``; unknown classes by their name ("...Attention",
  "...Norm", "...Embedding", "...RNN/LSTM/GRU/Recurrence...");
- **calls**, during the first forward (:class:`CallCounter`): a layer run
  ``LOOP_CALLS`` (3) or more times per forward of the model is a cell of a hand-written
  recurrent loop (``h = cell(x[:, t], h)``), whatever its type.

The roles are written in the first JSONL record (``"roles": {layer: role}``), so a log read
back by :func:`~gradwatch.monitor.history.read_jsonl` or ``gradwatch show`` has them; a log
without them (older versions) reads with unknown roles ("").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

from gradwatch.monitor.collectors.base import eager

__all__ = ["LOOP_CALLS", "ROLES", "CallCounter", "architecture", "layer_roles", "module_role"]

ROLES = ("attention", "conv", "embedding", "linear", "norm", "other", "recurrent")
LOOP_CALLS = 3

_NORMS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)
_BY_TYPE: tuple[tuple[tuple[type[nn.Module], ...], str], ...] = (
    ((nn.RNNBase, nn.RNNCellBase), "recurrent"),
    ((nn.Embedding, nn.EmbeddingBag), "embedding"),
    (_NORMS, "norm"),
    ((nn.MultiheadAttention,), "attention"),
    ((nn.modules.conv._ConvNd,), "conv"),
    ((nn.Linear, nn.Bilinear), "linear"),
)
# custom classes (Hugging Face's GPT2Attention, LlamaRMSNorm, ...) by the words in their names
_BY_NAME = (
    (("RNN", "Rnn", "LSTM", "Lstm", "GRU", "Recurren"), "recurrent"),
    (("Embedding",), "embedding"),
    (("Norm",), "norm"),
    (("Attention", "Attn"), "attention"),
    (("Conv",), "conv"),
    (("Linear", "Dense"), "linear"),
)


def module_role(module: nn.Module) -> str:
    """The role of one module from its type (see :data:`ROLES`); "other" when unknown."""
    if getattr(module, "_gradwatch_recurrent", False):  # gradwatch's own hand-written cells mark theirs
        return "recurrent"
    for types, role in _BY_TYPE:
        if isinstance(module, types):
            return role
    cls = type(module).__name__
    for words, role in _BY_NAME:
        if any(w in cls for w in words):
            return role
    return "other"


def layer_roles(model: nn.Module, names: Iterable[str]) -> dict[str, str]:
    """The role of each named layer of ``model``, from module types.

    A layer inside an attention module (``self_attn.out_proj``) has the role "attention".

    Args:
        model: the model.
        names: qualified names of its layers ("" is the model itself).

    Returns:
        layer name → role, one of :data:`ROLES`.
    """
    modules = dict(model.named_modules())
    attention = [n for n, m in modules.items() if n and module_role(m) == "attention"]
    roles = {}
    for name in names:
        role = module_role(modules[name])
        if role in ("linear", "other") and any(name.startswith(a + ".") for a in attention):
            role = "attention"
        roles[name] = role
    return roles


def loop_roles(roles: Mapping[str, str], calls: Mapping[str, int], forwards: int) -> dict[str, str]:
    """``roles`` with every layer run ≥ ``LOOP_CALLS`` times per model forward marked "recurrent".

    Args:
        roles: layer name → role from :func:`layer_roles`.
        calls: layer name → forward calls seen.
        forwards: forward calls of the whole model in the same time (0: the model itself was
            not called; the least-called layer is then the unit).
    """
    seen = [c for name, c in calls.items() if name in roles and c > 0]
    unit = forwards if forwards > 0 else min(seen, default=1)
    out = dict(roles)
    for name, n in calls.items():
        # a norm or an embedding applied per step is still what it is
        if name in out and n >= LOOP_CALLS * unit and out[name] not in ("embedding", "norm"):
            out[name] = "recurrent"
    return out


def architecture(roles: Iterable[str]) -> str:
    """The model's family from its layers' roles.

    Returns:
        "recurrent" (any recurrent layer), "transformer" (attention, no recurrence),
        "convolutional", "feedforward" (linear layers only), or "unknown" (no role known:
        a log written before roles were recorded).
    """
    known = {r for r in roles if r}
    if not known:
        return "unknown"
    for role, family in (("recurrent", "recurrent"), ("attention", "transformer"), ("conv", "convolutional")):
        if role in known:
            return family
    return "feedforward"


class CallCounter:
    """Forward pre-hooks that learn the depth order and count calls, until :meth:`stop`.

    ``order`` lists layers in the order they first ran (the monitor's depth order);
    ``calls`` counts each layer's forward calls and ``forwards`` the model's own, from which
    :meth:`roles` finds the cells of hand-written loops. Cost: one Python call per module call
    until the first record; nothing after.

    Args:
        model: the model (its forward calls are counted).
        layers: (name, module) of every module to watch: the monitored layers (and any other
            module whose first-call order is wanted; only layers get a role).
    """

    def __init__(self, model: nn.Module, layers: Iterable[tuple[str, nn.Module]]) -> None:
        self.order: list[str] = []
        self.calls: Counter[str] = Counter()
        self.forwards = 0
        self._handles: list[RemovableHandle] = [model.register_forward_pre_hook(eager(self._model_hook))]
        self._handles += [m.register_forward_pre_hook(self._hook(name)) for name, m in layers]

    def _model_hook(self, module: nn.Module, args: Any) -> None:
        self.forwards += 1

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            if name not in self.calls:
                self.order.append(name)
            self.calls[name] += 1

        return eager(hook)

    def roles(self, by_type: Mapping[str, str]) -> dict[str, str]:
        """``by_type`` (from :func:`layer_roles`) with the loop cells seen so far marked recurrent."""
        return loop_roles(by_type, self.calls, self.forwards)

    def stop(self) -> None:
        """Remove the hooks (idempotent)."""
        for h in self._handles:
            h.remove()
        self._handles = []
