"""Writing results: figures to PNG and numbers to JSON, the same way everywhere."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gradwatch.errors import ConfigError, OutputError, check_writable

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "atomic_write_text",
    "check_figure_path",
    "dump_json",
    "from_json_number",
    "json_safe",
    "png_data_uri",
    "prepare_folder",
    "save_figure",
    "to_json_number",
]


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


def from_json_number(x: Any) -> float:
    """Read a number written by :func:`to_json_number` (None becomes NaN)."""
    if x is None:
        return math.nan
    return float(x)  # float() reads "nan", "inf", "-inf"


def json_safe(value: Any) -> Any:
    """Turn numpy/torch values and containers into JSON types; non-finite floats become "nan", "inf", "-inf".

    The one place where non-finite numbers are converted for JSON: a document built with it
    passes ``json.dumps(..., allow_nan=False)`` and every other JSON reader.
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray) or type(value).__module__.startswith("torch"):
        return json_safe(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return to_json_number(float(value))
    return value


def dump_json(value: Any, *, indent: int | None = None) -> str:
    """``value`` as strict JSON text (non-finite numbers as strings, see :func:`json_safe`)."""
    return json.dumps(json_safe(value), indent=indent, allow_nan=False)


def atomic_write_text(path: str | Path, text: str, *, fsync: bool = False) -> Path:
    """Write ``text`` to ``path`` all at once: a temporary file beside it, then a rename.

    A reader never sees a half-written file, and a crash leaves either the old file or the
    new one. ``fsync=True`` also flushes the data to disk before the rename (run stores).

    Raises:
        OutputError: the file cannot be written.
    """
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        tmp.replace(p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"Cannot write {str(p)!r}: {exc.strerror or exc}.") from None
    return p


def figure_formats() -> tuple[str, ...]:
    """The file extensions matplotlib can write a figure as (png, pdf, svg, ...), sorted."""
    from matplotlib.backend_bases import FigureCanvasBase

    return tuple(sorted(FigureCanvasBase.get_supported_filetypes()))


def check_figure_path(path: str | Path, what: str = "plot file") -> Path:
    """Fail before any computation when ``path`` cannot take a figure: its extension or its folder.

    Raises:
        ConfigError: the extension is not a format matplotlib writes (the message lists them);
        OutputError: the folder is missing or not writable, or the path is a folder.
    """
    p = check_writable(path, what)
    ext = p.suffix.lower().lstrip(".")
    formats = figure_formats()
    if ext not in formats:
        raise ConfigError(
            f"The {what} {str(p)!r} must end in one of {', '.join('.' + f for f in formats)} "
            f"(the extension picks the format). Got {p.suffix or 'no extension'!r} instead."
        )
    return p


def save_figure(fig: Figure, path: Path) -> Path:
    """Lay out ``fig`` and write it in the format its extension names (PNG for .png).

    Raises:
        ConfigError: an extension matplotlib cannot write; OutputError: an OS error, naming the path.
    """
    check_figure_path(path)
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
