"""Writing results: figures to PNG and numbers to JSON, the same way everywhere."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from gradwatch.errors import OutputError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["save_figure", "to_json_number"]


def to_json_number(x: float | None) -> float | str | None:
    """Return ``x`` as a JSON-safe value: finite floats stay, NaN/±Inf become "nan", "inf", "-inf"."""
    if x is None:
        return None
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def save_figure(fig: Figure, path: Path) -> Path:
    """Lay out ``fig`` and write it as PNG; an OS error becomes an OutputError naming the path."""
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise OutputError(f"Cannot write the plot file {str(path)!r}: {exc.strerror or exc}.") from None
    return path
