"""The documentation site builds with ``mkdocs build --strict``, and its generated pages are complete.

Strict mode turns every warning into a failure: a broken link or anchor between pages, a
cross-reference in a docstring that names no object, a docstring griffe cannot parse (a
parameter that is not in the signature). On top of the build:

- every public name — each ``__all__`` reached from ``gradwatch.__all__``, and the
  integrations' modules — is in the site's inventory (objects.inv), found by the object's
  own module and name at run time, not by the generator's bookkeeping;
- the CLI reference has a section for every command that ``gradwatch --help`` lists;
- the reproduce table has a row for every claim of ``docs/reproduce/results.json``, and
  that file covers exactly the claims of ``gradwatch.reproduce.CLAIMS`` (a new claim needs
  a fresh ``gradwatch reproduce`` run copied there).
"""

from __future__ import annotations

import ast
import html
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "reproduce" / "results.json"
_NEEDED = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
_MISSING = [
    m for m in _NEEDED if importlib.util.find_spec(m.split(".")[0]) is None or importlib.util.find_spec(m) is None
]

pytestmark = pytest.mark.skipif(
    bool(_MISSING), reason=f"the docs tools are not installed ({', '.join(_MISSING)}): pip install -e '.[docs]'"
)

BUILD_BUDGET_S = 120  # the build takes ~25 s on 2 busy cores; fail loudly well before it becomes a CI problem


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml")]
    start = time.perf_counter()
    r = subprocess.run([*cmd, "--site-dir", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    problems = [line for line in r.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert r.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(problems or r.stderr.splitlines()[-40:])
    assert seconds < BUILD_BUDGET_S, f"the site took {seconds:.0f} s to build (budget {BUILD_BUDGET_S} s)"
    return out


def _inventory(site: Path) -> set[str]:
    """The identifiers of the site's objects.inv (Sphinx inventory v2: 4 header lines, then zlib)."""
    raw = (site / "objects.inv").read_bytes()
    body = zlib.decompress(raw.split(b"\n", 4)[4]).decode()
    return {line.split(" ", 1)[0] for line in body.splitlines()}


PAGES = [
    "index.html",
    "getting-started/index.html",
    "concepts/index.html",
    "theory/index.html",
    "monitor/index.html",
    "integrations/index.html",
    "remedies/index.html",
    "experiments/index.html",
    "tasks/index.html",
    "reproduce/index.html",
    "reference/cli/index.html",
    "cli/index.html",
    "reference/api/index.html",
    "benchmarks/index.html",
    "architecture/index.html",
    "changelog/index.html",
]


def test_every_page_is_built(site: Path) -> None:
    for page in PAGES:
        assert (site / page).is_file(), page
    for figure in ("rnn", "note3", "doya", "landscape", "spectrum"):  # the concepts page's figures
        assert f"images/lab/{figure}.png" in (site / "concepts/index.html").read_text(encoding="utf-8")
        assert (site / f"images/lab/{figure}.png").is_file()


def _static_all(module: str) -> list[str]:
    """``__all__`` of a module read from its source (the integrations import optional packages)."""
    path = ROOT / "src" / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


def _public_modules() -> list[ModuleType]:
    """Every public module reached from ``gradwatch.__all__`` through the ``__all__`` of each (cli excepted)."""
    seen: dict[str, ModuleType] = {}
    queue = [importlib.import_module("gradwatch")]
    while queue:
        mod = queue.pop(0)
        seen[mod.__name__] = mod
        for name in mod.__all__:
            sub = sys.modules.get(f"{mod.__name__}.{name}")
            if sub is not None and getattr(mod, name, None) is sub and sub.__name__ not in seen:
                queue.append(sub)
    return list(seen.values())


def test_every_public_name_is_in_the_api_reference(site: Path) -> None:
    inventory = _inventory(site)
    missing = []
    for mod in _public_modules():
        assert mod.__name__ in inventory, f"no API page for {mod.__name__}"
        for name in mod.__all__:
            obj = getattr(mod, name)
            if isinstance(obj, ModuleType):
                continue
            qualname = getattr(obj, "__qualname__", None)
            where = {f"{mod.__name__}.{name}"}
            if qualname and getattr(obj, "__module__", None):
                where.add(f"{obj.__module__}.{qualname}")
            if not where & inventory and not any(i.endswith(f".{name}") for i in inventory):
                missing.append(f"{mod.__name__}.{name}")
    for module in ("gradwatch.integrations.lightning", "gradwatch.integrations.hf"):
        assert module in inventory, f"no API page for {module}"
        missing += [f"{module}.{n}" for n in _static_all(module) if f"{module}.{n}" not in inventory]
    assert not missing, f"public names missing from the API reference: {missing}"


def test_the_cli_reference_has_every_command(site: Path, cli) -> None:
    page = html.unescape((site / "reference/cli/index.html").read_text(encoding="utf-8"))
    commands = re.findall(r"^  (\w[\w-]*)  ", cli("--help").out.split("Commands:")[1], flags=re.M)
    lab = re.findall(r"^  (\w[\w-]*)  ", cli("lab", "--help").out.split("Commands:")[1], flags=re.M)
    assert "lab" in commands and "doya" in lab
    for path in [*commands, *(f"lab {c}" for c in lab)]:
        assert f"gradwatch {path}</code>" in page, f"no section for gradwatch {path}"
    assert "--b-max" in page  # the help text itself, not only the headings


def test_the_reproduce_table_is_generated_from_results_json(site: Path) -> None:
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    page = html.unescape((site / "reproduce/index.html").read_text(encoding="utf-8"))
    assert "<!-- reproduce-table -->" not in page
    for claim in results["claims"]:
        assert f"<td><code>{claim['id']}</code></td>" in page, claim["id"]
    assert f"{results['passed']} hold, {results['failed']} failed, {results['skipped']} skipped" in page


def test_results_json_covers_every_claim() -> None:
    from gradwatch.reproduce import CLAIMS

    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    ids = [c["id"] for c in results["claims"]]
    assert sorted(ids) == sorted(CLAIMS), (
        "docs/reproduce/results.json is not from a run of today's claims: run "
        "`gradwatch reproduce --quick --out /tmp/repro` and copy /tmp/repro/results.json there"
    )
