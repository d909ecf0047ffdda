"""The monitor's figures hide nothing: zeros, NaN/Inf, clipping, depth colours and events, checked on the artists."""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.colors import to_hex

from gradwatch.errors import ConfigError
from gradwatch.monitor.history import History, LayerHistory
from gradwatch.monitor.plot import history_figure, plot_history, time_profile_figure
from gradwatch.monitor.plot_marks import NONFINITE_COLOR, ZERO_COLOR, bin_columns, clip_threshold, envelope


@dataclass(frozen=True)
class Ev:
    """An event as the verdict's contract defines it (gradwatch.monitor.verdict.Event)."""

    step: int
    kind: str
    layer: str | None
    value: float = math.nan
    baseline: float = math.nan
    sentence: str = ""


def records(grad, *, global_norm=None, update=None, clip=None, loss=None):
    """JSON records (the JSONL format) from a (L, S) matrix of layer gradient norms."""
    grad = np.asarray(grad, dtype=float)
    L, S = grad.shape
    out = []
    for s in range(S):
        layers = {}
        for i in range(L):
            layers[str(i)] = {
                "grad_norm": _num(grad[i, s]),
                "grad_max": None,
                "param_norm": 1.0,
                "update_ratio": None if update is None or np.isnan(update[i, s]) else _num(update[i, s]),
                "numel": 10,
            }
        g = float(np.sqrt(np.sum(grad[:, s] ** 2))) if global_norm is None else float(global_norm[s])
        rec = {"step": s, "global_grad_norm": _num(g), "loss": None if loss is None else loss[s], "layers": layers}
        if clip is not None and np.isfinite(clip[1][s]):
            rec["clip"] = {"pre": _num(clip[0][s]), "post": _num(clip[1][s])}
        out.append(rec)
    return out


def _num(x):
    x = float(x)
    return x if math.isfinite(x) else str(x)


def panel(fig, name):
    (ax,) = [a for a in fig.axes if a.get_gid() == f"gradwatch:panel:{name}"]
    return ax


def gid(ax, name):
    return [a for a in ax.get_children() if a.get_gid() == name]


def rendered(fig):
    """Draw the whole figure with every warning an error (no empty log axis, no all-NaN reduction)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.tight_layout()
        fig.savefig(io.BytesIO(), format="png", dpi=40)
    return fig


def legend_colors(legend):
    return [to_hex(h.get_color() if hasattr(h, "get_color") else h.get_facecolor()) for h in legend.legend_handles]


def test_zeros_and_nonfinite_are_marked_not_dropped():
    grad = np.full((3, 12), 0.5)
    grad[0] *= 1e-6  # a vanishing first layer: its own colour, not a hole
    grad[1, 5], grad[1, 7], grad[1, 9] = 0.0, np.nan, np.inf
    g = np.full(12, 2.0)
    g[3], g[7], g[9] = 0.0, np.nan, np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = rendered(history_figure(History.from_records(records(grad, global_norm=g))))

    flow = panel(fig, "flow")
    (heat,) = gid(flow, "gradwatch:heat")
    values = heat.get_array().reshape(3, 12)
    assert values[0, 0] == pytest.approx(-6 + math.log10(0.5))  # log10 ‖g‖, computed independently
    assert values[2, 4] == pytest.approx(math.log10(0.5))
    assert np.ma.is_masked(values[1, 5]) and np.ma.is_masked(values[1, 7])
    (cells,) = gid(flow, "gradwatch:heat_marks")
    cat = cells.get_array().reshape(3, 12)
    assert cat[1, 5] == 0 and cat[1, 7] == 1 and cat[1, 9] == 1  # 0 → grey, NaN and Inf → red
    assert int((~np.ma.getmaskarray(cat)).sum()) == 3
    assert [t.get_text() for t in flow.get_legend().get_texts()] == ["0 (exact)", "NaN/Inf"]
    assert legend_colors(flow.get_legend()) == [ZERO_COLOR, NONFINITE_COLOR]

    grad_ax = panel(fig, "grad")
    assert grad_ax.get_yscale() == "log"
    (zero,) = gid(grad_ax, "gradwatch:zero")
    (bad,) = gid(grad_ax, "gradwatch:nonfinite")
    assert list(zero.get_xdata()) == [3.0]
    assert list(bad.get_xdata()) == [7.0, 9.0]
    assert list(zero.get_ydata()) == [0.0] and list(bad.get_ydata()) == [1.0, 1.0]  # axis edges (axes coordinates)
    (pre,) = gid(grad_ax, "gradwatch:pre")
    ydata = np.asarray(pre.get_ydata(), dtype=float)
    assert np.isnan(ydata[[3, 7, 9]]).all() and (ydata[np.isfinite(ydata)] == 2.0).all()  # the line breaks there
    assert grad_ax.get_ylim()[0] < 2.0 < grad_ax.get_ylim()[1]
    texts = [t.get_text() for t in grad_ax.get_legend().get_texts()]
    assert texts == ["‖g‖ recorded by mon.step()", "0 (exact; bottom edge)", "NaN/Inf (top edge)"]


def test_mostly_nonfinite_steps_keep_sensible_axes_and_a_note():
    grad = np.full((2, 20), np.nan)
    grad[:, 4], grad[:, 11] = 0.3, 0.1
    fig = rendered(history_figure(History.from_records(records(grad))))
    grad_ax = panel(fig, "grad")
    lo, hi = grad_ax.get_ylim()
    assert 0 < lo < 0.1 * math.sqrt(2) and 0.3 * math.sqrt(2) < hi < 10
    (note,) = gid(grad_ax, "gradwatch:note")
    assert note.get_text() == "18 of 20 norms not drawable: 18 NaN/Inf, 0 exact 0"
    (bad,) = gid(grad_ax, "gradwatch:nonfinite")
    assert len(bad.get_xdata()) == 18
    (flow_note,) = gid(panel(fig, "flow"), "gradwatch:note")
    assert flow_note.get_text().startswith("90% of layer-steps are NaN/Inf")


def test_all_nonfinite_gives_fixed_axes_not_an_empty_autoscale():
    fig = rendered(history_figure(History.from_records(records(np.full((2, 6), np.inf)))))
    grad_ax = panel(fig, "grad")
    assert grad_ax.get_ylim() == pytest.approx((0.1, 10.0))
    (note,) = gid(grad_ax, "gradwatch:note")
    assert note.get_text() == "no finite positive norms to draw: 6 NaN/Inf, 0 exact 0"
    (cells,) = gid(panel(fig, "flow"), "gradwatch:heat_marks")
    assert (cells.get_array() == 1).all()


def test_pre_and_post_clip_norms_and_the_inferred_threshold():
    rng = np.random.default_rng(0)
    pre = np.exp(rng.normal(-1.0, 1.0, 40))  # norms around 0.37
    max_norm = 0.25
    post = np.where(pre > max_norm, pre * max_norm / (pre + 1e-6), pre)  # torch's clip_grad_norm_
    grad = np.vstack([pre / math.sqrt(2)] * 2)
    fig = rendered(history_figure(History.from_records(records(grad, global_norm=pre, clip=(pre, post)))))
    ax = panel(fig, "grad")
    (line,) = gid(ax, "gradwatch:clip_threshold")
    assert line.get_ydata()[0] == pytest.approx(max_norm, rel=1e-5)
    n_clipped = int((pre > max_norm).sum())
    assert 5 < n_clipped < 40
    assert line.get_label() == f"clip threshold 0.25 (inferred from post-clip norms; clipped {n_clipped} of 40 steps)"
    (pre_line,) = gid(ax, "gradwatch:pre")
    assert pre_line.get_label() == "‖g‖ recorded by mon.step(), before your clipping"
    (post_line,) = gid(ax, "gradwatch:post")
    assert np.asarray(post_line.get_ydata()) == pytest.approx(post, rel=1e-9)
    assert "before and after your clipping" in ax.get_title()

    given = history_figure(History.from_records(records(grad, global_norm=pre, clip=(pre, post))), clip_threshold=0.3)
    (line,) = gid(panel(given, "grad"), "gradwatch:clip_threshold")
    assert line.get_ydata()[0] == 0.3 and "(given;" in line.get_label()


def test_value_clipping_has_no_single_threshold():
    pre = np.linspace(1.0, 3.0, 10)
    post = pre * 0.5  # clip_grad_value_-like: the post norm varies
    fig = history_figure(History.from_records(records(np.vstack([pre]), global_norm=pre, clip=(pre, post))))
    ax = panel(rendered(fig), "grad")
    assert not gid(ax, "gradwatch:clip_threshold")
    assert ax.get_title().endswith("(post-clip norms 0.5–1.5 on clipped steps: no single threshold)")
    assert math.isnan(clip_threshold(pre, post)[0])
    unclipped = clip_threshold(pre, pre)
    assert math.isnan(unclipped[0]) and unclipped[1:3] == (0, 10)


def test_21_layers_get_21_distinct_colours_ordered_by_depth():
    """The README's example: 21 layers; the old legend gave layers 0 and 20 the same blue."""
    L, S = 21, 71
    grad = np.outer(np.logspace(-9, 0, L), np.ones(S))
    update = np.full((L, S), np.nan)
    update[:, ::10] = np.outer(np.logspace(-11, -0.5, L), np.ones(8))
    recs = records(grad, update=update)
    for r in recs[::10]:
        r["activations"] = {str(2 * i + 1): {"kind": "saturation", "fraction": 0.1 * i, "std": 0.5} for i in range(10)}
    fig = rendered(history_figure(History.from_records(recs)))
    ax = panel(fig, "update")
    lines = [a for a in ax.get_lines() if str(a.get_gid()).startswith("gradwatch:update:")]
    assert [a.get_gid() for a in lines] == [f"gradwatch:update:{i}" for i in range(L)]
    colours = [to_hex(a.get_color()) for a in lines]
    assert len(set(colours)) == L
    act = [a for a in panel(fig, "activations").get_lines() if str(a.get_gid()).startswith("gradwatch:activation:")]
    assert len({to_hex(a.get_color()) for a in act}) == 10
    assert np.asarray(act[3].get_ydata()) == pytest.approx(np.full(8, 0.3))
    assert colours == [to_hex(colormaps["viridis"](i / (L - 1))) for i in range(L)]
    assert np.asarray(lines[20].get_xdata()).tolist() == list(range(0, S, 10))  # the measured steps only
    assert ax.get_legend() is None  # a colour bar names the layers instead
    bar, act_bar = [a for a in fig.axes if a.get_gid() == "gradwatch:depth_colorbar"]  # update, activations
    labels = [t.get_text() for t in bar.get_yticklabels()]
    assert labels[0] == "0" and labels[-1] == "20" and len(labels) >= 7
    assert act_bar.get_yticklabels()[-1].get_text() == "19 (saturation)"
    spans = {name: panel(fig, name).get_position() for name in ("flow", "grad", "update", "activations")}
    assert len({(round(b.x0, 6), round(b.x1, 6)) for b in spans.values()}) == 1  # one step axis, aligned
    for a in fig.axes:  # no legend anywhere repeats a colour
        if a.get_legend() is not None:
            c = legend_colors(a.get_legend())
            assert len(c) == len(set(c)), c


def test_very_deep_models_draw_a_subset_with_unique_colours():
    L = 120
    update = np.outer(np.logspace(-8, -1, L), np.ones(5))
    update[57] *= 1e4  # the worst layer must be among those drawn
    fig = history_figure(History.from_records(records(np.ones((L, 5)), update=update)))
    ax = panel(rendered(fig), "update")
    drawn = [
        str(a.get_gid()).split(":")[-1] for a in ax.get_lines() if str(a.get_gid()).startswith("gradwatch:update:")
    ]
    assert len(drawn) == 32 and {"0", "119", "57"} <= set(drawn)
    assert (
        len({to_hex(a.get_color()) for a in ax.get_lines() if str(a.get_gid()).startswith("gradwatch:update:")}) == 32
    )
    assert "(32 of 120 layers" in ax.get_title()


def test_events_are_marked_at_their_steps_and_layers():
    grad = np.full((3, 30), 0.1)
    events = [
        Ev(3, "grad_spike", "1"),
        Ev(17, "grad_spike", "2"),
        Ev(9, "divergence", None),
        Ev(12, "saturation", "act.4"),  # not a layer: a line, not a ring
    ]

    @dataclass(frozen=True)
    class FakeVerdict:
        events: tuple

    fig = rendered(history_figure(History.from_records(records(grad)), verdict=FakeVerdict(tuple(events))))
    flow = panel(fig, "flow")
    (rings,) = gid(flow, "gradwatch:event:grad_spike")
    assert list(rings.get_xdata()) == [3.0, 17.0] and list(rings.get_ydata()) == [1.0, 2.0]
    (div,) = gid(flow, "gradwatch:event:divergence")
    assert [seg[0][0] for seg in div.get_segments()] == [9.0]
    grad_ax = panel(fig, "grad")
    (spikes,) = gid(grad_ax, "gradwatch:event:grad_spike")
    assert sorted(seg[0][0] for seg in spikes.get_segments()) == [3.0, 17.0]
    texts = [t.get_text() for t in grad_ax.get_legend().get_texts()]
    assert texts[1:] == ["event: grad_spike (2)", "event: divergence (1)", "event: saturation (1)"]
    c = legend_colors(grad_ax.get_legend())
    assert len(c) == len(set(c)) == 4
    # events= takes precedence, and an object without events draws none
    fig2 = history_figure(History.from_records(records(grad)), verdict=object(), events=[Ev(5, "loss_spike", None)])
    assert [a.get_gid() for a in panel(fig2, "grad").collections] == ["gradwatch:event:loss_spike"]
    assert not any(
        str(a.get_gid()).startswith("gradwatch:event")
        for a in panel(history_figure(History.from_records(records(grad)), verdict=object()), "grad").get_children()
    )


def test_long_runs_are_thinned_for_drawing_without_losing_spikes_or_nan():
    S = 50_000
    rng = np.random.default_rng(1)
    g = np.exp(rng.normal(0, 0.1, S))
    g[31_337] = 1e4
    g[40_001] = np.nan
    layers = {
        str(i): LayerHistory(g / 2, np.full(S, np.nan), np.full(S, np.nan), np.full(S, np.nan), numel=4)
        for i in range(2)
    }
    h = History(steps=np.arange(S) * 2, global_grad_norm=g, loss=np.full(S, np.nan), layers=layers)
    fig = rendered(history_figure(h, max_points=1000))
    (heat,) = gid(panel(fig, "flow"), "gradwatch:heat")
    assert heat.get_array().shape == (2, 1000)  # 50 steps a column
    (pre,) = gid(panel(fig, "grad"), "gradwatch:pre")
    y = np.asarray(pre.get_ydata(), dtype=float)
    assert len(y) <= 1000 and np.nanmax(y) == 1e4 and np.nanmin(y) == np.nanmin(g)
    assert 31_337 * 2 in np.asarray(pre.get_xdata()).tolist()
    (bad,) = gid(panel(fig, "grad"), "gradwatch:nonfinite")
    assert list(bad.get_xdata()) == [80_002.0]
    (cells,) = gid(panel(fig, "flow"), "gradwatch:heat_marks")
    assert int((~np.ma.getmaskarray(cells.get_array())).sum()) == 2  # one binned column, two layers


def test_envelope_keeps_each_bins_min_max_and_a_gap():
    y = np.arange(100.0)
    y[[13, 57]] = [1e3, -5.0]
    y[80] = np.nan
    idx = envelope(y, 30)
    assert len(idx) <= 30 and {13, 57, 80} <= set(idx.tolist())
    assert np.array_equal(envelope(y, 100), np.arange(100))


def test_bin_columns_is_a_geometric_mean_with_flags():
    v = np.array([[1.0, 100.0, 0.0, 10.0, np.inf], [1.0, 1.0, 1.0, 1.0, 1.0]])
    edges, mean, zero, bad = bin_columns(np.arange(5) * 10, v, 3)
    assert mean[0, :2].tolist() == [1.0, 1.0] and np.isnan(mean[0, 2])  # log10 means of (1, 100), (0, 10), (inf)
    assert mean[1].tolist() == [0.0, 0.0, 0.0]
    assert zero[0].tolist() == [False, True, False] and bad[0].tolist() == [False, False, True]
    assert edges.tolist() == [-5.0, 15.0, 35.0, 45.0]


def test_time_profile_marks_zeros_and_nan():
    prof = np.array([0.0, 1e-3, 1e-2, np.nan, 1.0])
    fig = rendered(time_profile_figure(prof, hidden=np.array([0.0, 0.0, 0.1, 0.2, 0.3])))
    ax = fig.axes[0]
    (zero,) = gid(ax, "gradwatch:zero")
    assert sorted(zero.get_xdata()) == [0.0, 1.0]
    (bad,) = gid(ax, "gradwatch:nonfinite")
    assert list(bad.get_xdata()) == [3.0]
    c = legend_colors(ax.get_legend())
    assert len(c) == len(set(c)) == 4


def test_bad_max_points_and_paths_fail_with_a_sentence(tmp_path):
    h = History.from_records(records(np.ones((1, 3))))
    with pytest.raises(ConfigError, match="'max_points' parameter of history_figure must be an integer >= 10"):
        history_figure(h, max_points=3)
    out = plot_history(h, tmp_path / "f.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def spiky_history():
    rng = np.random.default_rng(0)
    grad = np.exp(rng.normal(0, 0.1, (3, 60))) * 0.1
    grad[1, 40] *= 100
    return History.from_records(records(grad, loss=list(np.linspace(2, 1, 60))))


def test_the_real_verdicts_events_are_drawn():
    from gradwatch.monitor.verdict import verdict

    h = spiky_history()
    v = verdict(h)
    spikes = [e for e in v.events if e.kind == "grad_spike"]
    assert [(e.step, e.layer) for e in spikes] == [(40, "1")]
    fig = rendered(history_figure(h, verdict=v))
    (ring,) = gid(panel(fig, "flow"), "gradwatch:event:grad_spike")
    assert list(ring.get_xdata()) == [40.0] and list(ring.get_ydata()) == [1.0]
    (line,) = gid(panel(fig, "grad"), "gradwatch:event:grad_spike")
    assert [seg[0][0] for seg in line.get_segments()] == [40.0]


def test_monitor_plot_and_show_pass_the_verdict(tmp_path, monkeypatch, cli):
    import torch
    from torch import nn

    import gradwatch as gw
    import gradwatch.monitor.plot as plot_module

    seen = []
    real = plot_module.history_figure

    def spy(history, **kw):
        seen.append(kw["verdict"])
        return real(history, **kw)

    monkeypatch.setattr(plot_module, "history_figure", spy)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gw.Monitor(model, opt, log=tmp_path / "run.jsonl") as mon:
        for _ in range(5):
            loss = model(torch.randn(16, 4)).pow(2).mean()
            loss.backward()
            mon.step(loss)
            opt.step()
            opt.zero_grad()
        mon.plot(tmp_path / "a.png")
        assert seen[-1] == mon.verdict()
    assert cli("show", str(tmp_path / "run.jsonl"), "--plot", str(tmp_path / "b.png")).code == 0
    assert seen[-1].status == mon.verdict().status and len(seen) == 2
    assert (tmp_path / "b.png").stat().st_size > 10_000
