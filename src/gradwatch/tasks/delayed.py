"""The delayed copy and delayed XOR tasks of Engelken 2023 ("Gradient flossing", NeurIPS).

A stream of random bits s_t ∈ {0, 1} enters the network one per time step; at every step t
the target is

- copy: y_t = s_{t−d} (the bit seen ``delay`` = d steps ago);
- XOR:  y_t = s_{t−d} ⊕ s_{t−2d} (the paper's "delayed XOR", its hierarchical XOR of order 1),

scored from the first step where the target is defined (t ≥ d for copy, t ≥ 2d for XOR;
0-based). A network must carry a bit across d (or 2d) steps, so the gradient has to cross
them: the task probes exactly the time horizon that gradient flossing extends. Chance
accuracy is 1/2 for both (every target bit is a fair coin given the past targets).

As in the authors' code (``GradientFlossing_XOR.jl``): one input channel, the bits are fed
as 0/1 (times ``amplitude``), the output is one logit per step trained with binary
cross-entropy. We draw with a ``torch.Generator``; the authors' stream is Xoroshiro128*.
"""

from __future__ import annotations

import torch

from gradwatch import _checks

__all__ = ["DELAYED_TASKS", "delayed_task", "first_scored_step"]

DELAYED_TASKS = ("copy", "xor")


def first_scored_step(task: str, delay: int) -> int:
    """The first 0-based step whose target is defined: d (copy) or 2d (XOR).

    Raises:
        ConfigError: an unknown task or a delay < 1.
    """
    _checks.choice(task, "task", "delayed_task", DELAYED_TASKS)
    d = _checks.positive_int(delay, "delay", "delayed_task")
    return d if task == "copy" else 2 * d


def delayed_task(
    task: str,
    delay: int,
    length: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    *,
    amplitude: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw a batch of the delayed copy or XOR task.

    Args:
        task: "copy" or "xor".
        delay: d ≥ 1, in time steps.
        length: T, the sequence length; must exceed the first scored step (d or 2d).
        batch_size: B ≥ 1.
        generator: the random stream (a fresh one seeded 0 when None).
        amplitude: the input value of a 1 bit.

    Returns:
        ``(inputs, targets)``: inputs (B, T, 1) float32 in {0, amplitude}; targets (B, T)
        float32 in {0, 1}, meaningful from :func:`first_scored_step` on (0 before).

    Raises:
        ConfigError: an unknown task, a delay < 1, a length not above the first scored step,
            or a batch size < 1.

    Example:
        >>> x, y = delayed_task("xor", 2, 8, 1, torch.Generator().manual_seed(0))
        >>> bits = x[0, :, 0].long()
        >>> bool(torch.equal(y[0, 4:].long(), bits[2:6] ^ bits[:4]))
        True
    """
    first = first_scored_step(task, delay)
    T = _checks.positive_int(length, "length", "delayed_task", minimum=first + 1)
    B = _checks.positive_int(batch_size, "batch_size", "delayed_task")
    amp = _checks.finite(amplitude, "amplitude", "delayed_task")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    bits = torch.randint(0, 2, (B, T), generator=gen)
    target = torch.zeros(B, T, dtype=torch.long)
    if task == "copy":
        target[:, delay:] = bits[:, : T - delay]
    else:
        target[:, first:] = bits[:, delay : T - delay] ^ bits[:, : T - first]
    return bits.unsqueeze(-1).float() * amp, target.float()
