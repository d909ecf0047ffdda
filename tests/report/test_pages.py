"""The page templates (report/pages.py): one base layout, escaping, figures, and that they ship."""

from __future__ import annotations

import importlib.resources
import re

import pytest
from matplotlib.figure import Figure

from gradwatch.report import pages
from gradwatch.report.reproduce import render_page

PNG = b"\x89PNG\r\n\x1a\n-not-a-real-image"


def _claim(cid: str, *, passed: bool | None, note: str = "") -> dict:
    return {
        "id": cid,
        "source": "Doya 1993 & co",
        "claim": "x < y",
        "published": "p",
        "criterion": "k",
        "measured": "m",
        "pass": passed,
        "skipped": passed is None,
        "seconds": 1.5,
        "note": note,
    }


DOC = {
    "tier": "quick",
    "claims": [
        _claim("held", passed=True),
        _claim("broke", passed=False, note="<b>trace</b>"),
        _claim("gpu", passed=None),
    ],
    "passed": 1,
    "failed": 1,
    "skipped": 1,
}


def test_reproduce_page_rows_sections_figures_and_escaping() -> None:
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    page = pages.reproduce_page(DOC, {"held": fig, "broke": PNG, "gpu": None})
    assert re.findall(r'<tr data-status="(\w+)">', page) == ["pass", "fail", "skipped"]
    sections = r'<section class="card" id="([^"]+)" data-status="(\w+)">.*?<span class="pill \w+">(\w+)</span>'
    assert re.findall(sections, page, re.S) == [
        ("held", "pass", "pass"),
        ("broke", "fail", "FAIL"),
        ("gpu", "skipped", "skipped"),
    ]
    # one filter button per status present, with its count
    assert re.findall(r'data-filter="(\w+)" aria-pressed="\w+">([^<]+)</button>', page) == [
        ("all", "all"),
        ("pass", "held 1"),
        ("fail", "failed 1"),
        ("skipped", "skipped 1"),
    ]
    assert page.count('src="data:image/png;base64,') == 2  # the skipped claim has no figure
    assert "x &lt; y" in page and "Doya 1993 &amp; co" in page and "&lt;b&gt;trace&lt;/b&gt;" in page
    assert "<b>trace</b>" not in page
    assert "1 of 3 claims held, 1 did not, 1 could not run here." in page
    assert "http://" not in page and "https://" not in page
    assert render_page(DOC, {}) == pages.reproduce_page(DOC, {})  # the name gradwatch.reproduce calls


def test_both_pages_share_the_base_layout() -> None:
    run_store = pages.run_store_page(
        root="runs/<x>",
        n_runs=2,
        seconds=3.4,
        rows=[pages.StoreRow("rnn/tanh/plain", 10, 2, 1, float("nan"), ["healthy", "vanishing"])],
        figures=[("Learning curves", PNG)],
    )
    reproduce = pages.reproduce_page(DOC, {})
    style = re.compile(r"<style>.*</style>", re.S)
    assert style.search(run_store).group() == style.search(reproduce).group()  # type: ignore[union-attr]
    for page in (run_store, reproduce):
        assert page.startswith('<!doctype html>\n<html lang="en"><head>')  # the browser test injects after <head>
        assert page.count("<style>") == 1 and page.rstrip().endswith("</body></html>")
    assert "<code>runs/&lt;x&gt;</code>" in run_store and "3 s of training" in run_store
    # NaN shows as unknown; one seed of two solved: a partial group
    assert '<td class="num">1/2</td><td class="num">—</td><td class="num">0</td>' in run_store
    assert '<span class="pill healthy">healthy</span> <span class="pill vanishing">vanishing</span>' in run_store
    assert '<tr data-status="partial">' in run_store
    assert "Gradient flow" not in run_store  # no heat maps given, no heading
    for page in (run_store, reproduce):  # the shell every page shares: summary bar, theme toggle, lightbox
        assert '<header class="summary">' in page and 'id="gw-theme"' in page and 'id="gw-lightbox"' in page


def test_store_row_status_and_flow_filters() -> None:
    assert [pages.StoreRow("x", 10, 3, n, 0.1, []).status for n in (3, 1, 0)] == ["solved", "partial", "unsolved"]
    page = pages.run_store_page(
        root="r",
        n_runs=1,
        seconds=1.0,
        rows=[pages.StoreRow("x", 10, 1, 1, 0.1, ["healthy"])],
        figures=[],
        flows=[("x, T=10, seed 0", PNG, "solved"), ("no status", PNG)],
    )
    assert re.findall(r'<section class="card"( data-status="\w+")?><h3>([^<]+)</h3>', page) == [
        (' data-status="solved"', "x, T=10, seed 0"),
        ("", "no status"),
    ]
    assert page.count('<button type="button" class="zoom"') == page.count("<img ") == 2


def test_a_misspelt_template_field_fails_loudly() -> None:
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        pages.render("reproduce.html.j2", tier="quick")


def test_templates_ship_with_the_package() -> None:
    templates = importlib.resources.files("gradwatch.report") / "templates"
    names = {t.name for t in templates.iterdir()}
    assert {"base.html.j2", "run_store.html.j2", "reproduce.html.j2"} <= names
