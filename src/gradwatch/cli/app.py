"""The root typer app, error handling and output conventions shared by every command."""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any, TextIO

import typer
from rich.console import Console
from rich.markup import escape

from gradwatch.errors import GradwatchError, GradwatchWarning

__all__ = ["app", "emit_json", "fail", "main", "print_error", "print_warning", "stderr"]

app = typer.Typer(
    name="gradwatch",
    help="See, explain and fix vanishing and exploding gradients.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

stderr = Console(stderr=True, highlight=False)


def emit_json(document: Any) -> None:
    """Print one JSON document on stdout and nothing else."""
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


def print_error(message: str) -> None:
    """Print one red line on stderr; the message itself is never read as rich markup."""
    stderr.print(f"[red]error:[/red] {escape(message)}", markup=True, soft_wrap=True)


def print_warning(message: str) -> None:
    """Print one yellow line on stderr (the message is never read as rich markup)."""
    stderr.print(f"[yellow]warning:[/yellow] {escape(message)}", markup=True, soft_wrap=True)


_python_showwarning = warnings.showwarning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    # gradwatch's own warnings are messages for the user, one line each, not source locations
    if issubclass(category, GradwatchWarning):
        print_warning(str(message))
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


def fail(message: str, code: int = 2) -> None:
    """Print one red line on stderr and exit with ``code``."""
    print_error(message)
    raise typer.Exit(code)


def _register() -> None:
    # Imported here so that `gradwatch --help` stays quick and the import graph stays one-way.
    from gradwatch.cli import diagnose, experiments, lab, show, watch

    app.add_typer(lab.app, name="lab")
    app.command("show")(show.show)
    app.command("watch")(watch.watch)
    app.command("run")(experiments.run_cmd)
    app.command("sweep")(experiments.sweep_cmd)
    app.command("report")(experiments.report_cmd)
    app.command("reproduce")(experiments.reproduce_cmd)
    app.command("diagnose")(diagnose.diagnose_cmd)


_register()


def main(argv: list[str] | None = None) -> None:
    """Run the command line; turn every GradwatchError and usage error into one line and exit 2.

    GradwatchWarnings (e.g. an invalid run redone on resume) print as one yellow line each.
    """
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        _main(argv)


def _main(argv: list[str] | None) -> None:
    try:
        # without standalone mode, click returns a typer.Exit's code instead of raising it
        rc = app(args=argv, prog_name="gradwatch", standalone_mode=False)
    except GradwatchError as exc:
        print_error(str(exc))
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print_error("aborted")
        sys.exit(130)
    except Exception as exc:
        # Typer vendors its own click; its usage errors are recognized by click's public API
        # (format_message, exit_code, ctx) rather than by a private exception class.
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.stdout.write(exc.format_message() + "\n")
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        print_error(f"{exc.format_message()}{hint}")
        sys.exit(2 if exc.exit_code in (1, 2) else exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)
