"""``gradwatch report``: the run-store page (report/html.py), its figures, and bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradwatch.errors import ConfigError
from gradwatch.experiments import RunStore, load_sweep, sweep
from gradwatch.report.html import group_results, render_store, write_report

SWEEP = """
[base]
task = "adding"
hidden = 8
steps = 20
eval_every = 10
eval_batch = 64
batch_size = 16

[grid]
length = [10, 12]
seed = [0]

[[variant]]
name = "sigmoid"
activation = "sigmoid"

[[variant]]
name = "tanh + clipping"
activation = "tanh"
remedies = { clip_grad_norm = { max_norm = 1.0 } }
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run store of 4 runs: 2 variants × 2 lengths, one seed each."""
    root = tmp_path_factory.mktemp("report")
    (root / "s.toml").write_text(SWEEP, encoding="utf-8")
    sweep(load_sweep(root / "s.toml"), root / "out", workers=2, progress=False)
    return root / "out"


@pytest.fixture(scope="module")
def page(store: Path) -> str:
    return render_store(store)


def test_report_renders_a_self_contained_page(page: str) -> None:
    # curves, success vs length, time profiles, and one gradient-flow heat map per group (4 groups)
    assert page.count('src="data:image/png;base64,') == 3 + 4
    assert "http://" not in page and "https://" not in page
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")


def test_summary_table_has_one_row_per_group_of_seeds(store: Path, page: str) -> None:
    cell = r'<td class="num">(\d+)</td>'
    rows = re.findall(
        r'<tr data-status="(\w+)"><td><span class="pill \w+">\w+</span></td><td>([^<]+)</td>'
        + cell * 2
        + r'<td class="num">(\d+)/(\d+)</td>',
        page,
    )
    assert [(label, int(t)) for _, label, t, *_ in rows] == list(group_results(RunStore(store).results()))
    assert all(seeds == total == "1" for _, _, _, seeds, _, total in rows)
    # a group's status is what its seeds did; the filter buttons offer the statuses present
    for status, _, _, _, solved, _ in rows:
        assert status == ("solved" if solved == "1" else "unsolved")
        assert f'data-filter="{status}"' in page
    assert "4 runs from <code>" in page


def test_cli_writes_index_html_and_names_bad_folders(store: Path, cli, tmp_path: Path) -> None:
    r = cli("report", str(store))
    assert r.code == 0, r.err
    assert (store / "index.html").read_text(encoding="utf-8").count("<img ") == 3 + 4
    r = cli("report", str(tmp_path / "nothing"))
    assert r.code == 2 and "is not a folder" in r.err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="holds no finished run"):
        write_report(empty)
