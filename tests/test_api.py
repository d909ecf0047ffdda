"""The public surface and the architecture's import rules."""

import subprocess
import sys
from pathlib import Path

import pytest

import gradwatch

SUBPACKAGES = [
    "experiments",
    "integrations",
    "models",
    "monitor",
    "remedies",
    "report",
    "reproduce",
    "sinks",
    "tasks",
    "theory",
]


def test_all_is_sorted_and_resolvable():
    assert list(gradwatch.__all__) == sorted(gradwatch.__all__)
    for name in gradwatch.__all__:
        assert hasattr(gradwatch, name), name
    assert set(gradwatch.__all__) <= set(dir(gradwatch))


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_every_subpackage_is_an_attribute(name):
    import importlib

    assert name in gradwatch.__all__
    assert getattr(gradwatch, name) is importlib.import_module(f"gradwatch.{name}")


def test_the_lazy_names_are_the_monitors_own():
    from gradwatch import Monitor, verdict  # a from-import goes through the lazy table too
    from gradwatch import monitor as mon_pkg

    assert Monitor is mon_pkg.Monitor is gradwatch.Monitor
    assert verdict is mon_pkg.verdict
    assert gradwatch.NonFiniteError is mon_pkg.NonFiniteError
    assert isinstance(gradwatch.__version__, str)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        gradwatch.nope  # noqa: B018


def test_import_gradwatch_stays_light():
    """``import gradwatch`` loads neither torch nor matplotlib: the subpackages load on first use."""
    code = (
        "import sys, gradwatch as gw\n"
        "heavy = sorted(m for m in ('torch', 'matplotlib', 'numpy', 'scipy') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "gw.models.mlp(in_dim=2, out_dim=1)\n"
        "assert 'torch' in sys.modules and 'matplotlib' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


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
