"""The reproduce report in a real browser: headless Chromium (Debian's ``chromium``, installed by .ci/run).

It must load with no JavaScript/console errors, every embedded image must decode, and a
screenshot must not be blank.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="no chromium binary (.ci/run installs Debian's chromium package; apt was unavailable)"
    ),
]

# Injected into a copy of the page: records errors and, once loaded, whether every image decoded.
_PROBE = """<script>
window.__gwErrors = [];
window.addEventListener('error', e => window.__gwErrors.push(String(e.message || e.type)), true);
window.addEventListener('load', () => {
  // after 'load' every image has been fetched and decoded or has failed: naturalWidth tells which
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const pre = document.createElement('pre');
  pre.id = 'gw-probe';
  pre.textContent = 'images=' + imgs.length + ' decoded=' + ok + ' errors=' + window.__gwErrors.length;
  document.body.appendChild(pre);
});
</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from gradwatch.reproduce import reproduce

    out = tmp_path_factory.mktemp("rep")
    reproduce("quick", only=["doya-bistability", "loss-wall", "product-spectra", "guessing"], out=out)
    return out / "index.html"


def test_page_loads_without_errors_and_every_image_decodes(report, tmp_path) -> None:
    probed = tmp_path / "probed.html"
    html = report.read_text(encoding="utf-8")
    probed.write_text(html.replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    r = _chromium("--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    m = re.search(r"images=(\d+) decoded=(\d+) errors=(\d+)", r.stdout)
    assert m, (r.stdout[-1000:], r.stderr[-2000:])
    images, decoded, errors = (int(g) for g in m.groups())
    assert images == html.count('src="data:image/png;base64,') == 4  # each of the four claims draws a figure
    assert decoded == images
    assert errors == 0
    console_errors = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln and ("Uncaught" in ln or "ERROR" in ln)]
    assert not console_errors, console_errors


def test_screenshot_is_not_blank(report, tmp_path) -> None:
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    r = _chromium(f"--screenshot={shot}", "--window-size=1200,1600", "--hide-scrollbars", report.as_uri())
    assert shot.is_file(), r.stderr[-2000:]
    pixels = imread(shot)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    gray = pixels[..., :3].mean(axis=-1)
    assert float(np.std(gray)) > 0.05  # text, tables and figures, not a blank page
    assert float((gray < 0.5).mean()) > 0.005  # some dark ink on the page
