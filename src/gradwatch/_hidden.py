"""Exposing hidden states of hand-written recurrent loops (shared by models and the monitor).

A loop passes each new state through :func:`track_hidden`. Outside a collecting context
it returns its argument and costs one attribute look-up; inside :class:`collect_hidden`
(used by the monitor's time profile) it keeps the state's gradient so that ‖∂L/∂h_t‖ — the
total derivative through every later step — can be read after backward.
"""

from __future__ import annotations

import threading

import torch

__all__ = ["collect_hidden", "track_hidden"]


class _Collector(threading.local):
    states: list[torch.Tensor] | None = None


_collector = _Collector()


def track_hidden(h: torch.Tensor) -> torch.Tensor:
    """Expose a hidden state h_t of a hand-written recurrent loop to gradient profiling.

    Returns ``h`` itself. During a profiling pass it also keeps ``h``'s gradient.
    """
    states = _collector.states
    if states is not None and h.requires_grad:
        h.retain_grad()
        states.append(h)
    return h


class collect_hidden:  # noqa: N801 - used as a context manager, like torch.no_grad
    """Context in which :func:`track_hidden` records states (thread-local)."""

    def __enter__(self) -> list[torch.Tensor]:
        self._previous = _collector.states
        _collector.states = []
        return _collector.states

    def __exit__(self, *exc: object) -> None:
        _collector.states = self._previous
