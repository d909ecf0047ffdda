"""Locating the first NaN/Inf: forward outputs, gradients w.r.t. outputs and inputs.

The monitor always checks parameter gradients (from the per-parameter max |g| it computes
anyway). :class:`NonFiniteTracer` adds hooks on every leaf module that check, on the
device and without a host sync, whether each forward output, each gradient w.r.t. a
module's output and each gradient w.r.t. a module's input is finite. The flags are kept
in call order and read at the monitor's next sync, so the earliest offending tensor of the
earliest step is found: that is where the NaN/Inf came from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.hooks import RemovableHandle

from gradwatch.errors import NonFiniteError

__all__ = ["TENSOR_KINDS", "NonFinite", "NonFiniteError", "NonFiniteTracer"]

TENSOR_KINDS = ("forward output", "gradient w.r.t. output", "gradient w.r.t. input", "parameter gradient")


@dataclass(frozen=True)
class NonFinite:
    """Where the first NaN/Inf appeared.

    Attributes:
        step: the optimizer step (0-based count of ``Monitor.step`` calls).
        module: qualified name of the module ("" is the model itself).
        tensor: "forward output", "gradient w.r.t. output", "gradient w.r.t. input" or
            "parameter gradient".
        parameter: the parameter's qualified name, for parameter gradients.
        value: "nan", "inf" or "nan/inf" — what was found.
    """

    step: int
    module: str
    tensor: str
    parameter: str | None = None
    value: str = "nan/inf"

    def to_json(self) -> dict[str, Any]:
        """The record's ``nonfinite`` object."""
        return {
            "step": self.step,
            "module": self.module,
            "tensor": self.tensor,
            "parameter": self.parameter,
            "value": self.value,
        }

    def __str__(self) -> str:
        what = f"{self.tensor} of {self.parameter!r}" if self.parameter else self.tensor
        return f"first {self.value} at step {self.step} in module {self.module or '(model)'!r}: {what}"


def register_tensor_hook(t: torch.Tensor, hook: Callable[[torch.Tensor], None]) -> None:
    """``t.register_hook(hook)`` (torch leaves it unannotated)."""
    cast(Callable[[Callable[[torch.Tensor], None]], object], t.register_hook)(hook)


def _tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, PackedSequence):
        return [x.data]
    if torch.is_tensor(x):
        return [x]
    if isinstance(x, (tuple, list)):
        return [t for item in x for t in _tensors(item)]
    if isinstance(x, dict):
        return [t for item in x.values() for t in _tensors(item)]
    return []


def _finiteness(ts: list[torch.Tensor]) -> torch.Tensor:
    """A 0-d float tensor that is finite iff every entry of every tensor is.

    max − min is NaN when any entry is NaN and infinite when any is ±Inf; ``amax``/``amin``
    are plain reductions, several times cheaper on CPU than ``isfinite(t).all()``, which
    builds a boolean mask. (A finite range above ~3e38 would also read as infinite.)
    """
    spans = [
        (t.amax() - t.amin()).float() for t in ts if (torch.is_floating_point(t) or torch.is_complex(t)) and t.numel()
    ]
    if not spans:
        return torch.zeros(())
    return spans[0] if len(spans) == 1 else torch.stack([v.to(spans[0].device) for v in spans]).sum()


class NonFiniteTracer:
    """Hooks that record, in call order, whether tensors flowing through modules are finite.

    Args:
        modules: (qualified name, module) pairs to watch (the monitor passes leaf modules).
        current_step: returns the step the current forward/backward belongs to.
    """

    def __init__(self, modules: list[tuple[str, nn.Module]], current_step: Callable[[], int]) -> None:
        self._modules = modules
        self._current_step = current_step
        self._handles: list[RemovableHandle] = []
        self.flags: list[tuple[int, int, str, str, torch.Tensor]] = []
        self._seq = 0

    def _add(self, name: str, kind: str, tensors: list[torch.Tensor]) -> None:
        if not tensors:
            return
        self.flags.append((self._current_step(), self._seq, name, kind, _finiteness(tensors)))
        self._seq += 1

    def attach(self) -> None:
        """Register the hooks (idempotent)."""
        if self._handles:
            return
        for name, module in self._modules:
            self._handles.append(module.register_forward_pre_hook(self._pre_hook(name)))
            self._handles.append(module.register_forward_hook(self._fwd_hook(name)))

    def detach(self) -> None:
        """Remove every hook."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _pre_hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if not torch.is_grad_enabled():
                return
            for t in _tensors(args):
                if t.requires_grad:
                    register_tensor_hook(t, lambda g: self._add(name, "gradient w.r.t. input", [g]))

        return hook

    def _fwd_hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            outs = _tensors(output)
            self._add(name, "forward output", [t.detach() for t in outs])
            if not torch.is_grad_enabled():
                return
            for t in outs:
                if t.requires_grad:
                    register_tensor_hook(t, lambda g: self._add(name, "gradient w.r.t. output", [g]))

        return hook

    def take(self) -> list[tuple[int, int, str, str, torch.Tensor]]:
        """Return and forget the flags recorded so far."""
        out, self.flags = self.flags, []
        return out
