"""The ``gradwatch`` command line: thin typer commands over library functions.

Exit codes: 0 ok, 1 a claim or check failed, 2 bad usage or input (one red line on
stderr, never a traceback).
"""

from gradwatch.cli.app import app, main

__all__ = ["app", "main"]
