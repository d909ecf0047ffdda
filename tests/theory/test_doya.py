"""Doya's network: closed forms vs root finding vs simulation vs autograd."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit

from gradwatch.errors import ConfigError
from gradwatch.theory import doya


def test_folds_are_extrema_of_the_equilibrium_curve():
    w = 5.0
    b_of_x = lambda x: logit(x) - w * x  # noqa: E731
    # b(x) has a local minimum on (1/2, 1) (lower fold) and a local maximum on (0, 1/2) (upper fold)
    low = minimize_scalar(b_of_x, bounds=(0.5, 0.999), method="bounded", options={"xatol": 1e-12})
    high = minimize_scalar(lambda x: -b_of_x(x), bounds=(0.001, 0.5), method="bounded", options={"xatol": 1e-12})
    f_low, f_high = doya.folds(w)
    assert f_low.b < f_high.b
    assert f_low.x == pytest.approx(low.x, abs=1e-6)
    assert f_low.b == pytest.approx(b_of_x(low.x), abs=1e-10)
    assert f_high.x == pytest.approx(high.x, abs=1e-6)
    assert f_high.b == pytest.approx(b_of_x(high.x), abs=1e-10)
    assert doya.bistable_interval(w) == (f_low.b, f_high.b)


def test_article_values_at_w5_b_minus_2_5():
    eqs = doya.equilibria(5.0, -2.5)
    assert [e.stable for e in eqs] == [True, False, True]
    # The article (note 4): attractors ≈ 0.145 and ≈ 0.855, unstable point 0.5.
    assert [round(e.x, 3) for e in eqs] == [0.145, 0.5, 0.855]
    lo, hi = doya.bistable_interval(5.0)
    assert -3.0 < lo < -2.5 < hi < -2.0


def test_number_of_equilibria_changes_exactly_at_the_folds():
    lo, hi = doya.bistable_interval(5.0)
    for b, n in [(lo - 1e-6, 1), (lo + 1e-6, 3), (hi - 1e-6, 3), (hi + 1e-6, 1), (-3.0, 1), (-2.0, 1)]:
        assert len(doya.equilibria(5.0, b)) == n, b


@settings(max_examples=60, deadline=None)
@given(w=st.floats(-20, 20), b=st.floats(-15, 15))
def test_every_equilibrium_is_a_fixed_point_with_the_right_stability(w, b):
    eqs = doya.equilibria(w, b)
    assert len(eqs) in (1, 2, 3)
    for e in eqs:
        assert abs(expit(w * e.x + b) - e.x) < 1e-12
        assert e.stable == (-1 + w * e.x * (1 - e.x) < 0)
    interval = doya.bistable_interval(w)
    inside = interval is not None and interval[0] + 1e-6 < b < interval[1] - 1e-6
    outside = interval is None or b < interval[0] - 1e-6 or b > interval[1] + 1e-6
    if inside:
        assert len(eqs) == 3
    if outside:
        assert len(eqs) == 1


def test_no_folds_for_w_at_most_4():
    assert doya.folds(4.0) == ()
    assert doya.bistable_interval(3.0) is None
    assert doya.hysteresis(3.0, -3.0, 0.0, n_points=41).jump_up_b is None


def test_simulation_settles_on_the_stable_equilibria_and_leaves_the_unstable_one():
    eqs = doya.equilibria(5.0, -2.5)
    starts = torch.tensor([0.01, 0.4, 0.6, 0.99], dtype=torch.float64)
    ends = doya.simulate(starts, -2.5, w=5.0, eps=0.1, n_steps=3000).numpy()
    np.testing.assert_allclose(ends, [eqs[0].x, eqs[0].x, eqs[2].x, eqs[2].x], atol=1e-10)


def test_hysteresis_jumps_within_one_grid_step_past_each_fold():
    h = doya.hysteresis(5.0, -3.0, -2.0, n_points=201)
    lo, hi = doya.bistable_interval(5.0)
    step = 1.0 / 200
    assert hi <= h.jump_up_b <= hi + step + 1e-12
    assert lo - step - 1e-12 <= h.jump_down_b <= lo
    # Between the folds the two sweeps sit on different branches: that is the memory.
    mid = np.abs(h.b_up - (-2.5)).argmin()
    assert h.x_up[mid] < 0.2
    assert h.x_down[::-1][mid] > 0.8


def test_sensitivity_autograd_agrees_with_finite_differences_away_from_separatrix():
    s = doya.sensitivity(0.3, -2.5, n_steps=200, delta=1e-6)
    assert s.dxT_dx0 == pytest.approx(s.fd_dxT_dx0, rel=1e-5)
    assert s.dxT_db == pytest.approx(s.fd_dxT_db, rel=1e-5)


def test_far_from_separatrix_x0_sensitivity_vanishes_and_b_sensitivity_is_the_equilibrium_slope():
    s = doya.sensitivity(0.1, -2.5, n_steps=1000)
    assert abs(s.dxT_dx0) < 1e-12
    assert abs(s.fd_dxT_dx0) < 1e-6
    # Implicit function theorem at the settled attractor: dx*/db = σ'/(1 - w σ').
    x_star = doya.equilibria(5.0, -2.5)[0].x
    sp = x_star * (1 - x_star)
    assert s.dxT_db == pytest.approx(sp / (1 - 5.0 * sp), rel=1e-8)
    assert s.fd_dxT_db == pytest.approx(sp / (1 - 5.0 * sp), rel=1e-6)


def test_on_the_separatrix_both_sensitivities_explode():
    eps, T = 0.1, 1000
    x_u = doya.equilibria(5.0, -2.5)[1].x
    s = doya.sensitivity(x_u, -2.5, eps=eps, n_steps=T, delta=1e-6)
    slope = -1 + 5.0 * x_u * (1 - x_u)  # f'(x_u) > 0
    # The state stays at x_u, so dx(T)/dx(0) = (1 + ε f')^T and
    # dx(T)/db = σ'/f' ((1 + ε f')^T − 1) exactly.
    growth = (1 + eps * slope) ** T
    assert s.dxT_dx0 == pytest.approx(growth, rel=1e-6)
    assert s.dxT_db == pytest.approx(x_u * (1 - x_u) / slope * (growth - 1), rel=1e-6)
    # A perturbation ±Δ lands on the two different attractors.
    lo, _, hi = doya.equilibria(5.0, -2.5)
    assert s.fd_dxT_dx0 == pytest.approx((hi.x - lo.x) / 2e-6, rel=1e-4)
    assert s.fd_dxT_db > 1e5


def test_sensitivity_profile_matches_pointwise_sensitivity():
    x0 = np.array([0.2, 0.45, 0.7])
    x_T, d_x0, d_b = doya.sensitivity_profile(x0, -2.5, n_steps=300)
    for i, v in enumerate(x0):
        s = doya.sensitivity(float(v), -2.5, n_steps=300)
        assert x_T[i] == pytest.approx(s.x_T, rel=1e-12)
        assert d_x0[i] == pytest.approx(s.dxT_dx0, rel=1e-10)
        assert d_b[i] == pytest.approx(s.dxT_db, rel=1e-10)


def test_map_stability_matches_flow_stability_for_small_steps():
    for e in doya.equilibria(5.0, -2.5):
        assert e.stable_for_step(0.1) == e.stable
    # A strongly negative self-weight: stable flow, but the map with ε = 1 oscillates away.
    (e,) = doya.equilibria(-20.0, 10.0)
    assert e.stable and not e.stable_for_step(1.0)


def test_simulate_with_input_drive():
    u = torch.ones(50, dtype=torch.float64)
    x_T = doya.simulate(0.0, 0.0, w=0.0, eps=1.0, n_steps=50, w_in=0.25, inputs=u)
    # with w = 0, ε = 1: x_{t+1} = σ(0) + w' u_t = 0.75
    assert float(x_T) == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: doya.simulate(0.5, 0.0, eps=0.0), r"'eps' parameter of doya.simulate must be in \(0, 1\]"),
        (lambda: doya.simulate(0.5, 0.0, eps=1.5), r"'eps' parameter .* Got 1.5"),
        (lambda: doya.simulate(0.5, 0.0, n_steps=-1), r"'n_steps' .* integer >= 1"),
        (lambda: doya.sensitivity(1.5, 0.0), r"'x0' parameter of doya.sensitivity must be in \[0, 1\]"),
        (lambda: doya.hysteresis(b_min=-2.0, b_max=-3.0), r"'b_max' .* must be > -2"),
        (lambda: doya.equilibria(math.nan, 0.0), r"'w' .* finite real number"),
        (lambda: doya.simulate(0.5, 0.0, n_steps=3, inputs=torch.zeros(2)), r"'inputs' .* 3 rows"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ConfigError, match=match):
        call()


def test_bifurcation_curve_lies_on_equilibria_and_marks_stability():
    bif = doya.bifurcation(5.0, -3.0, -2.0, n_points=2001)
    assert np.all((bif.b >= -3.0) & (bif.b <= -2.0))
    np.testing.assert_allclose(expit(5.0 * bif.x + bif.b), bif.x, atol=1e-12)
    assert bif.stable.sum() > 0 and (~bif.stable).sum() > 0
    assert len(bif.folds) == 2
