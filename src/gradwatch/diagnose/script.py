"""Run a user's script in this process, as ``python script.py args`` would, under a :class:`Session`.

The script runs with ``runpy.run_path(..., run_name="__main__")``: its ``if __name__ ==
"__main__"`` block runs, ``sys.argv`` is ``[script, *args]`` (so it parses its own
arguments), its directory is first on ``sys.path`` (sibling imports work), and DataLoader
workers (forked or spawned: ``sys.modules["__main__"]`` is the script while it runs) work as
usual. Every RNG (``random``, numpy's global one, torch's) is seeded before each run, so two
runs of a script that draws from them see the same numbers. What a script changes globally
(``sys.argv``, ``sys.path``, the working folder, ``sys.stdout``/``sys.stderr``, the
multiprocessing start method, the SIGINT handler, torch's default dtype, grad mode and
thread count, warning filters, modules imported from its folder — not a virtualenv inside
it) is put back afterwards, so the next run starts the same way.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import runpy
import signal
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradwatch.diagnose.session import Session, StopScript

__all__ = ["ScriptRun", "run_script", "script_traceback"]

_OURS = (str(Path(__file__).resolve().parent),)


@dataclass
class ScriptRun:
    """How one run of the script ended.

    Attributes:
        session: the session (models, their monitors' histories and verdicts, steps).
        ended: "limit" (stopped after the steps/seconds asked), "finished" (the script ended
            by itself), "raised", "exit" (``sys.exit`` with a non-zero status) or "interrupted".
        seconds: wall-clock time of the run (s).
        error: the script's exception as one line (``"ValueError: …"``), or None.
        traceback: the script's traceback (its own frames only), or None.
        exit_code: the status a ``sys.exit`` of the script asked for (0 otherwise).
    """

    session: Session
    ended: str
    seconds: float
    error: str | None = None
    traceback: str | None = None
    exit_code: int = 0


def seed_everything(seed: int) -> None:
    """Seed ``random``, numpy's global generator and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 — the global generator is the one scripts draw from
    torch.manual_seed(seed)


def script_traceback(exc: BaseException, script: Path) -> str:
    """The traceback of ``exc`` as the script's: from its first frame in ``script``, without gradwatch's frames.

    When no frame is the script's (a syntax error: the file never ran), only the exception.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    name = str(script.resolve())
    start = next((i for i, f in enumerate(frames) if str(Path(f.filename).resolve()) == name), None)
    only = "".join(traceback.format_exception_only(type(exc), exc))
    if start is None:
        return only
    kept = [f for f in frames[start:] if not f.filename.startswith(_OURS)]
    return "".join(["Traceback (most recent call last):\n", *traceback.format_list(kept), only])


def _own_module(module: object, directory: str) -> bool:
    """Whether a module was loaded from the script's own folder (not from a virtualenv kept inside it)."""
    file = getattr(module, "__file__", None) or ""
    return file.startswith(directory + os.sep) and not any(
        part in ("site-packages", "dist-packages") for part in Path(file).parts
    )


def run_script(script: Path, args: list[str], session: Session, *, seed: int = 0) -> ScriptRun:
    """Run ``script`` with ``args`` under ``session`` and say how it ended.

    KeyboardInterrupt (or Ctrl-C that the script turned into ``sys.exit``, as Lightning does)
    is reported as ``ended="interrupted"``; every other exception of the script is a result
    (``"raised"``), never raised from here.
    """
    script = script.resolve()
    saved_argv, saved_path, saved_cwd = sys.argv[:], sys.path[:], os.getcwd()
    saved_streams = (sys.stdout, sys.stderr)
    saved_modules = set(sys.modules)
    saved_torch = (torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_num_threads())
    saved_start = multiprocessing.get_start_method(allow_none=True)
    saved_sigint = signal.getsignal(signal.SIGINT)
    interrupted = False

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal interrupted
        interrupted = True
        raise KeyboardInterrupt

    directory = str(script.parent)
    sys.argv = [str(script), *args]
    sys.path.insert(0, directory)
    start = time.perf_counter()
    ended, error, tb, code = "finished", None, None, 0
    try:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, on_sigint)
        seed_everything(seed)
        with warnings.catch_warnings(), session:
            runpy.run_path(str(script), run_name="__main__")
    except StopScript:
        ended = "limit"
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if interrupted:
            ended = "interrupted"
        elif code != 0:
            ended, error = (
                "exit",
                f"the script exited with status {code}"
                + (f" ({e.code})" if not isinstance(e.code, int) and e.code is not None else ""),
            )
    except KeyboardInterrupt:
        ended = "interrupted"
    except BaseException as e:  # the script's own failure is a result, shown as its own
        error = traceback.format_exception_only(type(e), e)[-1].strip()  # "SyntaxError: …" after its source lines
        ended, tb = "raised", script_traceback(e, script)
    finally:
        sys.argv[:], sys.path[:] = saved_argv, saved_path
        sys.stdout, sys.stderr = saved_streams
        os.chdir(saved_cwd)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, saved_sigint)
        if multiprocessing.get_start_method(allow_none=True) != saved_start:
            multiprocessing.set_start_method(saved_start, force=True)
        for name in set(sys.modules) - saved_modules:
            if _own_module(sys.modules[name], directory):
                del sys.modules[name]  # the next run imports the script's own modules afresh
        torch.set_default_dtype(saved_torch[0])
        torch.set_grad_enabled(saved_torch[1])
        torch.set_num_threads(saved_torch[2])
    if interrupted and ended != "interrupted":
        ended = "interrupted"
    return ScriptRun(session, ended, time.perf_counter() - start, error, tb, code)
