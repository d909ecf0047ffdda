"""The public surface and the architecture's import rules."""

import subprocess
import sys
from pathlib import Path

import gradwatch


def test_all_is_sorted_and_resolvable():
    assert list(gradwatch.__all__) == sorted(gradwatch.__all__)
    for name in gradwatch.__all__:
        assert hasattr(gradwatch, name), name


def test_error_hierarchy():
    assert issubclass(gradwatch.ConfigError, gradwatch.GradwatchError)
    assert issubclass(gradwatch.ConfigError, ValueError)
    assert issubclass(gradwatch.OutputError, OSError)


def test_layers_import_one_way():
    # The contract lives in pyproject.toml ([tool.importlinter]); import-linter is a [dev] dependency.
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "KEPT" in proc.stdout
