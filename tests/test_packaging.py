"""The sdist and the wheel build, pass ``twine check``, carry every package file, and the wheel works installed.

The build runs on a copy of what a release is made of (``pyproject.toml``, ``README.md``,
``src/``) with ``python -m build --no-isolation`` (offline: the installed setuptools, no
download), which makes the sdist and then the wheel *from the sdist*, so a file missing
from either fails here. The wheel is then installed, not editable, into a fresh virtual
environment that sees this environment's packages (torch and the other dependencies) but
whose own site-packages comes first; the tests check that it is the wheel's gradwatch that
runs there, and run the command line, the lab, a monitored training loop and an HTML report
(Jinja2 templates, package data) from it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "gradwatch"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]

pytestmark = pytest.mark.slow

MONITOR_EXAMPLE = """
import sys
import torch
import gradwatch as gw

print("gradwatch from", gw.__file__)
model = gw.models.mlp(in_dim=8, out_dim=3, hidden=16, layers=8, activation="sigmoid", seed=0)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
g = torch.Generator().manual_seed(0)
with gw.Monitor(model, opt, log="run.jsonl") as mon:
    for _ in range(20):
        x, y = torch.randn(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        mon.step(loss)
        opt.step()
        opt.zero_grad()
    verdict = mon.verdict()
    mon.plot("flow.png")
print(verdict.status)
"""


def _package_files() -> set[str]:
    """Every file of the package in the source tree, as ``gradwatch/...`` (no bytecode)."""
    return {
        p.relative_to(PACKAGE.parent).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build", reason="the 'build' package (dev extra) makes the sdist and wheel")
    work = tmp_path_factory.mktemp("packaging")
    src = work / "project"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    out = work / "dist"
    r = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, f"python -m build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return out


def _one(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {dist}, found {[p.name for p in found]}"
    return found[0]


def test_the_sdist_and_the_wheel_carry_every_package_file(dist: Path) -> None:
    wheel = _one(dist, f"gradwatch-{VERSION}-py3-none-any.whl")
    sdist = _one(dist, f"gradwatch-{VERSION}.tar.gz")
    expected = _package_files()
    assert {"gradwatch/py.typed", "gradwatch/report/templates/base.html.j2"} <= expected
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert not expected - in_wheel, f"missing from the wheel: {sorted(expected - in_wheel)}"
    prefix = f"gradwatch-{VERSION}/src/"
    with tarfile.open(sdist) as tar:
        in_sdist = {n[len(prefix) :] for n in tar.getnames() if n.startswith(prefix)}
    assert not expected - in_sdist, f"missing from the sdist: {sorted(expected - in_sdist)}"
    metadata = zipfile.ZipFile(wheel).read(f"gradwatch-{VERSION}.dist-info/METADATA").decode()
    assert "Classifier: Typing :: Typed" in metadata
    assert "Provides-Extra: docs" in metadata


def test_twine_check_passes(dist: Path) -> None:
    pytest.importorskip("twine", reason="twine (dev extra) checks the distributions' metadata")
    files = [str(p) for p in sorted(dist.iterdir())]
    r = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (not editable); this environment's packages stay visible under it."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    wheel = _one(dist, "*.whl")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return env_dir


def _run(env_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1", PATH=f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    r = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{' '.join(args)} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


def test_the_installed_wheel_runs(installed: Path, tmp_path: Path) -> None:
    python = str(installed / "bin" / "python")
    where = _run(
        installed, tmp_path, python, "-c", "import gradwatch; print(gradwatch.__file__); print(gradwatch.__version__)"
    )
    module_file, version = where.stdout.split()
    assert Path(module_file).resolve().is_relative_to(installed.resolve()), f"not the wheel's gradwatch: {module_file}"
    assert version == VERSION

    assert "reproduce" in _run(installed, tmp_path, str(installed / "bin" / "gradwatch"), "--help").stdout
    doya = json.loads(_run(installed, tmp_path, "gradwatch", "lab", "doya", "--json").stdout)
    assert [round(f["b"], 4) for f in doya["folds"]] == [-2.6556, -2.3444]

    (tmp_path / "example.py").write_text(MONITOR_EXAMPLE, encoding="utf-8")
    out = _run(installed, tmp_path, python, "example.py").stdout
    assert f"gradwatch from {module_file}" in out and out.split()[-1] == "vanishing"
    assert (tmp_path / "flow.png").stat().st_size > 0
    shown = json.loads(_run(installed, tmp_path, "gradwatch", "show", "run.jsonl", "--json").stdout)
    assert shown["status"] == "vanishing"

    # the HTML report renders the package's Jinja2 templates
    _run(
        installed,
        tmp_path,
        "gradwatch",
        "run",
        "--task",
        "adding",
        "--length",
        "10",
        "--steps",
        "4",
        "--eval-every",
        "2",
        "--out",
        "store",
    )
    _run(installed, tmp_path, "gradwatch", "report", "store")
    assert "<html" in (tmp_path / "store" / "index.html").read_text(encoding="utf-8").lower()
