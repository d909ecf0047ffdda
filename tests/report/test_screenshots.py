"""Both HTML pages in headless Chromium at desktop (1280 px) and phone (390 px) widths.

The pages are built from small fake data (a few seeded matplotlib figures, no training), so
the whole module takes seconds. For each page and width it checks that nothing overflows
horizontally, that every embedded image decodes, that the page runs without script errors
and that its status filter, lightbox, light/dark toggle and sticky summary work (one browser run holds every
page at every width in iframes of exactly that size); and that a screenshot is not blank and
still looks like the reference under ``tests/report/screenshots/`` (a greyscale thumbnail,
one pixel per 8×8 block; compared loosely, so font antialiasing passes and a blank or broken
layout does not). The references were made with Debian's chromium; another browser build or
font set may need new ones.

To accept a new design, regenerate the references and look at them::

    GRADWATCH_UPDATE_SCREENSHOTS=1 python -m pytest tests/report/test_screenshots.py
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from html import escape, unescape
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from gradwatch.report import pages

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary on PATH (.ci/run installs Debian's chromium package with apt; apt was unavailable)",
)

REFERENCES = Path(__file__).parent / "screenshots"
UPDATE = os.environ.get("GRADWATCH_UPDATE_SCREENSHOTS") == "1"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
THUMB = 8  # reference thumbnails: one grey pixel per 8×8 block of the screenshot

# Records a page's script errors; injected into each page right after <head>.
_ERRORS = """<script>
window.__gwErrors = [];
window.addEventListener('error', e => window.__gwErrors.push(String(e.message || e.type)), true);
</script>"""

# The probe page holds every page at every width in a same-origin (srcdoc) iframe of exactly
# that size: a headless window cannot be narrower than 500 px, an iframe can. Once all are
# loaded it measures each one, then uses its filter buttons, lightbox and theme toggle, and
# writes the results as JSON into the DOM for --dump-dom.
_PROBE = """<script>
function probe(frame) {
  const win = frame.contentWindow, doc = frame.contentDocument, r = {};
  const imgs = Array.from(doc.images);
  r.scroll = doc.documentElement.scrollWidth;
  r.inner = win.innerWidth;
  r.images = imgs.length;
  r.decoded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const visible = () => Array.from(doc.querySelectorAll('[data-status]')).filter(e => !e.hidden).length;
  const buttons = Array.from(doc.querySelectorAll('button[data-filter]'));
  r.filters = {};
  for (const b of buttons) { b.click(); r.filters[b.dataset.filter] = visible(); }
  buttons[0].click();
  r.back = visible();
  const box = doc.getElementById('gw-lightbox');
  doc.querySelector('button.zoom').click();
  const big = box.querySelector('img');
  r.lightbox = box.open && big !== null && big.src === imgs[0].src;
  box.close();
  const bg = () => win.getComputedStyle(doc.body).backgroundColor;
  const before = bg();
  doc.getElementById('gw-theme').click();
  r.theme_changed = bg() !== before;
  win.scrollTo(0, 600);
  r.sticky = win.scrollY > 0 && doc.querySelector('header.summary').getBoundingClientRect().top === 0;
  win.scrollTo(0, 0);
  r.errors = win.__gwErrors;
  return r;
}
window.addEventListener('load', () => {
  const out = {};
  for (const f of document.querySelectorAll('iframe')) out[f.id] = probe(f);
  const pre = document.createElement('pre');
  pre.id = 'gw-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _figure(seed: int, heat: bool = False) -> Figure:
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(6, 3))
    ax = fig.subplots()
    if heat:
        ax.imshow(rng.random((6, 40)), aspect="auto")
    else:
        for i in range(3):
            ax.plot(np.cumsum(rng.normal(size=50)), label=f"series {i}")
        ax.legend()
    ax.set_title(f"figure {seed}")
    return fig


def _claim(cid: str, passed: bool | None, note: str = "") -> dict:
    return {
        "id": cid,
        "source": "Doya 1993",
        "claim": "A one-neuron network with self-weight w > 4 is bistable over an interval of biases.",
        "published": "bistable for b in [-3.0, -2.0]",
        "criterion": "both folds within 0.01 of the published values",
        "measured": "folds at -2.97 and -2.03",
        "pass": passed,
        "skipped": passed is None,
        "seconds": 1.5,
        "note": note,
    }


def _reproduce_page() -> str:
    trace = "Traceback (most recent call last):\n  File x, line 3\nValueError: " + "unbroken" * 12  # must wrap
    doc = {
        "tier": "quick",
        "claims": [_claim("doya-bistability", True), _claim("loss-wall", False, trace), _claim("gpu-amp", None)],
        "passed": 1,
        "failed": 1,
        "skipped": 1,
    }
    return pages.reproduce_page(doc, {"doya-bistability": _figure(1), "loss-wall": _figure(2)})


def _run_store_page() -> str:
    rows = [
        pages.StoreRow("rnn/sigmoid/plain", 100, 3, 0, 0.5, ["vanishing"]),
        pages.StoreRow("rnn/tanh/clip_grad_norm", 100, 3, 2, 0.12, ["healthy", "exploding"], 1),
        pages.StoreRow("lstm/tanh/plain", 100, 3, 3, 0.01, ["healthy"]),
    ]
    return pages.run_store_page(
        root="runs/a-store-with-a-rather-long-folder-name",
        n_runs=9,
        seconds=123.4,
        rows=rows,
        figures=[("Learning curves", _figure(3)), ("Success rate vs length", _figure(4))],
        flows=[(f"{r.label}, T=100, seed 0", _figure(5 + i, heat=True), r.status) for i, r in enumerate(rows)],
        invalid=[pages.InvalidRow("adding-T100-rnn-sigmoid-s2-0123456789", "result.json is truncated")],
    )


# page name → (html, number of data-status elements per filter: reproduce has a row and a section per claim)
PAGES = {
    "reproduce": (_reproduce_page, {"pass": 2, "fail": 2, "skipped": 2}),
    "run_store": (_run_store_page, {"solved": 2, "partial": 2, "unsolved": 2}),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pages")
    out = {}
    for name, (build, _) in PAGES.items():
        out[name] = folder / f"{name}.html"
        out[name].write_text(build(), encoding="utf-8")
    return out


def _chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={tmp_path / 'profile'}",  # a fresh profile: no theme remembered from another run
        "--virtual-time-budget=5000",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def probed(built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every page at every width, measured and used in one browser run: ``{"<page>-<width>": results}``."""
    frames = []
    for name, page in built.items():
        html = page.read_text(encoding="utf-8")
        assert html.count("<head>") == 1
        srcdoc = escape(html.replace("<head>", "<head>" + _ERRORS, 1), quote=True)
        for width, (w, h) in WIDTHS.items():
            frames.append(
                f'<iframe id="{name}-{width}" style="width:{w}px;height:{h}px;border:0" srcdoc="{srcdoc}"></iframe>'
            )
    folder = tmp_path_factory.mktemp("probe")
    probe = folder / "probe.html"
    probe.write_text(
        f"<!doctype html><html><head>{_PROBE}</head><body>{''.join(frames)}</body></html>", encoding="utf-8"
    )
    r = _chromium(folder, probe, "--window-size=1400,1000", "--dump-dom")
    m = re.search(r'<pre id="gw-probe">([^<]*)</pre>', r.stdout)
    assert m, (r.stdout[-1000:], r.stderr[-2000:])
    return json.loads(unescape(m[1]))


def _thumbnail(shot: Path) -> np.ndarray:
    """The screenshot in grey, one pixel per THUMB×THUMB block, as floats in [0, 1]."""
    grey = Image.open(shot).convert("L")
    small = grey.resize((grey.width // THUMB, grey.height // THUMB), Image.Resampling.BOX)
    return np.asarray(small, dtype=float) / 255.0


def _compare_with_reference(thumb: np.ndarray, name: str) -> None:
    ref_path = REFERENCES / f"{name}.png"
    if UPDATE:
        REFERENCES.mkdir(exist_ok=True)
        Image.fromarray(np.round(thumb * 255).astype(np.uint8), mode="L").save(ref_path, optimize=True)
        return
    assert ref_path.is_file(), f"no reference {ref_path}; make one with GRADWATCH_UPDATE_SCREENSHOTS=1"
    ref = np.asarray(Image.open(ref_path).convert("L"), dtype=float) / 255.0
    assert ref.shape == thumb.shape, (ref.shape, thumb.shape)
    # Loose on purpose, and on 32×32-pixel blocks: antialiasing, hinting and a slightly different
    # font size pass (correlation ≥ 0.8); a blank page, a page without its CSS or a fallback to
    # another font family moves whole blocks of ink (correlation ≤ 0.4, measured).
    a, b = _pool(ref), _pool(thumb)
    corr = float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) if b.std() > 0 else 0.0
    mean_diff = float(np.abs(a - b).mean())
    assert corr > 0.5 and mean_diff < 0.03, (
        f"{name} no longer looks like {ref_path} (correlation {corr:.2f}, mean |Δ| {mean_diff:.3f}); "
        "if the design changed on purpose, regenerate with GRADWATCH_UPDATE_SCREENSHOTS=1 and look at the result"
    )


def _pool(thumb: np.ndarray, k: int = 4) -> np.ndarray:
    """Average k×k blocks of a thumbnail (dropping a ragged edge)."""
    h, w = thumb.shape[0] // k * k, thumb.shape[1] // k * k
    return thumb[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3))


@needs_chromium
@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("name", list(PAGES))
def test_no_horizontal_overflow_every_image_decodes_no_errors(built, probed, name: str, width: str) -> None:
    r = probed[f"{name}-{width}"]
    assert r["inner"] == WIDTHS[width][0]  # the page really had that width
    assert r["scroll"] <= r["inner"], f"{name} overflows horizontally at {r['inner']} px: {r['scroll']} px of content"
    html = built[name].read_text(encoding="utf-8")
    assert r["images"] == r["decoded"] == html.count('src="data:image/png;base64,') > 0
    assert r["errors"] == []


@needs_chromium
@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("name", list(PAGES))
def test_filters_lightbox_theme_and_sticky_summary_work(probed, name: str, width: str) -> None:
    r, per_status = probed[f"{name}-{width}"], PAGES[name][1]
    assert r["filters"] == {"all": sum(per_status.values()), **per_status}  # one button per status present
    assert r["back"] == r["filters"]["all"]
    assert r["lightbox"] is True and r["theme_changed"] is True
    assert r["sticky"] is True  # the summary bar stays on top when the page scrolls


@needs_chromium
@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("name", list(PAGES))
def test_screenshot_is_not_blank_and_looks_like_before(built, tmp_path: Path, name: str, width: str) -> None:
    w, h = WIDTHS[width]
    shot = tmp_path / "shot.png"
    r = _chromium(tmp_path, built[name], f"--window-size={w},{h}", f"--screenshot={shot}")
    assert shot.is_file(), r.stderr[-2000:]
    thumb = _thumbnail(shot)
    assert thumb.shape == (h // THUMB, w // THUMB)
    assert thumb.std() > 0.05 and (thumb < 0.8).mean() > 0.01  # ink on the page, not a blank one
    _compare_with_reference(thumb, f"{name}-{width}")


@needs_chromium
def test_dark_mode_follows_the_system(built, tmp_path: Path) -> None:
    shot = tmp_path / "dark.png"
    _chromium(tmp_path, built["reproduce"], "--force-dark-mode", "--window-size=390,844", f"--screenshot={shot}")
    light, dark = REFERENCES / "reproduce-phone.png", _thumbnail(shot)
    assert dark.mean() < 0.4, "prefers-color-scheme: dark should give a dark page"
    if light.is_file():
        assert np.asarray(Image.open(light), dtype=float).mean() / 255.0 > 0.6


def test_every_embedded_image_decodes(built) -> None:
    for page in built.values():
        payloads = re.findall(r'src="data:image/png;base64,([^"]+)"', page.read_text(encoding="utf-8"))
        assert payloads
        for data in payloads:
            with Image.open(io.BytesIO(base64.b64decode(data))) as img:
                img.load()
                assert img.width > 100 and img.height > 100


def test_pages_need_no_network(built) -> None:
    for page in built.values():
        html = page.read_text(encoding="utf-8")
        assert not re.search(r"(?:src|href)=\"(?!data:|#)", html), "every src/href is a data URI or an in-page anchor"
        assert "http://" not in html and "https://" not in html and "@import" not in html and "url(" not in html
