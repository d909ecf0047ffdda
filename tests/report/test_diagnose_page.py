"""The diagnose page (report/diagnose.py): drawn from the JSON document alone, self-contained, escaped."""

from __future__ import annotations

import base64
import io
import math
import re

import matplotlib.image as mpimg

from gradwatch.report.diagnose import diagnosis_page, loss_figure


def _trial(
    label: str, losses: list[float | None], status: str, remedy: str | None, diverged: int | None = None
) -> dict:
    finite = [v for v in losses if v is not None]
    return {
        "label": label,
        "remedy": remedy,
        "params": {},
        "steps": len(losses),
        "losses": losses,
        "status": status,
        "final_loss": None if diverged is not None else finite[-1],
        "final_se": None if diverged is not None else 0.01,
        "start_loss": finite[0],
        "diverged_at": diverged,
        "error": None,
        "seconds": 1.0,
        "outcome": f"diverged at step {diverged}" if diverged is not None else f"loss {finite[0]} → {finite[-1]}",
    }


DOC = {
    "script": "train<1>.py",
    "args": ["--lr", "5"],
    "steps": 5,
    "ended": "limit",
    "seconds": 2.0,
    "models": [
        {"name": "Net", "class": "__main__.Net", "optimizer": None, "parameters": 10, "steps": 5, "verdict": None}
    ],
    "main_model": 0,
    "verdict": {
        "status": "exploding",
        "where": ["rnn"],
        "evidence": [{"sentence": "exploding at step 3"}],
        "advice": [{"remedy": "clip_grad_norm", "reason": "bounds the step"}],
        "events": [{"step": 3, "sentence": "a <jump>"}],
    },
    "trials": [
        _trial("as written", [5.0, 9.0, None, None, None], "nonfinite", None, diverged=2),
        _trial("as written (repeat)", [5.0, 9.0, None, None, None], "nonfinite", None, diverged=2),
        _trial("lr×0.1", [5.0, 4.0, 3.0, 2.5, 2.0], "healthy", "lr:lower"),
    ],
    "deterministic": True,
    "repeat_difference": None,
    "recommendation": {"label": "lr×0.1", "remedy": "lr:lower", "sentence": "lr×0.1: the script as written diverged"},
    "code_changes": [{"remedy": "lstm", "why": "gates", "location": "train.py:3", "line": "nn.RNN(1, 2)"}],
    "not_tried": [],
    "error": None,
    "traceback": None,
    "exit_code": 0,
}


def test_page_shows_the_verdict_the_runs_and_the_code_changes_escaped() -> None:
    html = diagnosis_page(DOC, None)
    assert "train&lt;1&gt;.py" in html and "a &lt;jump&gt;" in html and "<jump>" not in html
    assert html.count('data-status="healthy"') == 1 and html.count('data-status="nonfinite"') == 2
    assert "lr×0.1: the script as written diverged" in html and "nn.RNN(1, 2)" in html
    assert "none (manual update)" in html and "deterministic under fixed seeds" in html
    assert not re.search(r"""(src|href)=["']https?:""", html)  # no network


def test_every_embedded_figure_decodes_and_diverged_runs_are_gaps() -> None:
    html = diagnosis_page(DOC, loss_figure(DOC["trials"]))
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(uris) == 2
    for uri in uris:
        img = mpimg.imread(io.BytesIO(base64.b64decode(uri)), format="png")
        assert img.shape[0] > 100 and img.shape[1] > 100
    ax = loss_figure(DOC["trials"]).axes[0]
    plain = ax.get_lines()[0].get_ydata()
    assert [math.isnan(v) for v in plain] == [False, False, True, True, True]
