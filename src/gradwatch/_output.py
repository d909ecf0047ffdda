"""Writing results: figures to PNG and numbers to JSON, the same way everywhere."""

from __future__ import annotations

import base64
import io
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from gradwatch.errors import OutputError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["png_data_uri", "prepare_folder", "save_figure", "to_json_number"]


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


def png_data_uri(figure: Figure | bytes) -> str:
    """A ``data:image/png;base64,...`` URI for a figure (or PNG bytes), for self-contained HTML."""
    if isinstance(figure, bytes):
        png = figure
    else:
        buf = io.BytesIO()
        figure.tight_layout()
        figure.savefig(buf, format="png", dpi=100)
        png = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(png).decode()


def prepare_folder(path: str | Path, what: str = "output folder") -> Path:
    """Create ``path`` (its parent must exist) and prove it writable, before any work starts.

    Raises:
        OutputError: naming the folder as ``what`` when it cannot be created or written.
    """
    p = Path(path)
    try:
        p.mkdir(parents=False, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create the {what} {str(p)!r}: {exc.strerror or exc}.") from None
    # a real write, not os.access (which says yes to root on read-only mounts); a unique
    # temporary name, because sweep workers prepare the same folder concurrently
    try:
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as exc:
        raise OutputError(f"Cannot write into the {what} {str(p)!r}: {exc.strerror or exc}.") from None
    return p
