"""Time profile: ‖∂L/∂u_t‖ of the model's input at every time step t (and ‖∂L/∂h_t‖ if exposed)."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.hooks import RemovableHandle

from gradwatch.errors import GradwatchWarning, out_of_range
from gradwatch.monitor import timeline
from gradwatch.monitor.collectors.base import Batch, Collector, StepContext
from gradwatch.monitor.store import Store

__all__ = ["TimeProfile"]


class TimeProfile(Collector):
    """‖∂L/∂u_t‖ for every t, from the backward pass the user runs anyway.

    Cost per measured step (every ``every`` recorded steps): a forward pre-hook on the
    profiled module, registered only for that step, that makes its input a leaf requiring
    grad (same values: training is unchanged) so backward also computes ∂L/∂u; then one
    reduction over ∂L/∂u (and one per exposed hidden state). Host syncs: 0.

    Args:
        target: the module whose first positional argument is profiled.
        every: period in recorded steps.
        time_dim, batch_dim: where time and batch are in that input.
    """

    name = "time_profile"

    def __init__(self, target: nn.Module, every: int, *, time_dim: int, batch_dim: int) -> None:
        super().__init__()
        self.target, self.every = target, every
        self.time_dim, self.batch_dim = time_dim, batch_dim
        self._handle: RemovableHandle | None = None
        self._hidden_ctx: timeline.collect_hidden | None = None
        self._hidden: list[torch.Tensor] | None = None
        self._input: torch.Tensor | PackedSequence | None = None
        self._disabled = False

    def arm(self, due: bool) -> None:
        self.close()
        if due and not self._disabled:
            self._handle = self.target.register_forward_pre_hook(self._hook)
            self._hidden_ctx = timeline.collect_hidden()
            self._hidden = self._hidden_ctx.__enter__()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self._hidden_ctx is not None:
            self._hidden_ctx.__exit__(None, None, None)
            self._hidden_ctx = None

    def _hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not torch.is_grad_enabled() or not args:
            return None
        x = args[0]
        data = x.data if isinstance(x, PackedSequence) else x
        if not torch.is_tensor(data) or not torch.is_floating_point(data):
            self._disabled = True
            warnings.warn(
                "Monitor: the time profile needs a floating-point input; the model's first argument is "
                f"{type(data).__name__}{'' if not torch.is_tensor(data) else ' of ' + str(data.dtype)}. "
                "Pass profile_module= the name of the first module that sees float inputs (e.g. after an "
                "embedding). Time profiles are off.",
                GradwatchWarning,
                stacklevel=2,
            )
            return None
        if not isinstance(x, PackedSequence):
            nd = data.dim()
            for name, dim in (("time_dim", self.time_dim), ("batch_dim", self.batch_dim)):
                if not -nd <= dim < nd:  # wrapping it would silently profile another dimension
                    raise out_of_range(
                        name,
                        "Monitor",
                        f"a dimension of the profiled input of shape {tuple(data.shape)} (-{nd}..{nd - 1})",
                        dim,
                    )
            if self.time_dim % nd == self.batch_dim % nd:
                raise out_of_range(
                    "time_dim", "Monitor", f"a dimension other than batch_dim={self.batch_dim}", self.time_dim
                )
        if data.requires_grad:
            # Inside a graph (a submodule's input): keep the graph, just keep the gradient.
            data.retain_grad()
            self._input = x
            return None
        leaf = data.detach().requires_grad_(True)
        new = (
            PackedSequence(leaf, x.batch_sizes, x.sorted_indices, x.unsorted_indices)
            if isinstance(x, PackedSequence)
            else leaf
        )
        self._input = new
        return (new, *args[1:])

    def collect(self, ctx: StepContext) -> None:
        x, self._input = self._input, None
        if x is None:
            return
        data = x.data if isinstance(x, PackedSequence) else x
        g = data.grad
        states, self._hidden = self._hidden or [], None
        if g is None:
            return
        grad = (
            PackedSequence(g, x.batch_sizes, x.sorted_indices, x.unsorted_indices)
            if isinstance(x, PackedSequence)
            else g
        )
        with torch.no_grad():
            fields = {"input": timeline.input_profile(grad, time_dim=self.time_dim, batch_dim=self.batch_dim)}
            norms = [h.grad.double().norm() if h.grad is not None else torch.zeros((), device=h.device) for h in states]
            if norms:
                fields["hidden"] = torch.stack([n.to(fields["input"].device, torch.float64) for n in norms])
        self.emit(ctx.step, **fields)
        # Retained gradients would otherwise keep the inputs' graph alive until the next step.
        if data.is_leaf:
            data.grad = None

    def finish(self, batch: Batch, store: Store) -> None:
        entries = batch.get(self.name, [])
        for row, (_, fields) in zip(store.rows_of(s for s, _ in entries), entries, strict=True):
            store.add_time_profile(int(row), fields["input"], fields.get("hidden"))
