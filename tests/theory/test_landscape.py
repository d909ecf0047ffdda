"""The wall in the loss landscape: simulation vs closed form vs finite differences."""

import numpy as np
import pytest
from scipy.special import logit

from gradwatch.errors import ConfigError
from gradwatch.theory import doya, landscape


@pytest.fixture(scope="module")
def wall():
    return landscape.wall(n_points=401)


def test_wall_is_where_x0_becomes_the_unstable_equilibrium(wall):
    # closed form: x0 = σ(w x0 + b)  ⇔  b = logit(x0) − w x0 = −2.5 for the article's values
    assert wall.wall_b == pytest.approx(logit(0.5) - 5.0 * 0.5, abs=1e-9)
    assert wall.unstable_at_wall == pytest.approx((0.5,), abs=1e-9)


def test_wall_moves_with_x0():
    w = landscape.wall(x0=0.4, n_points=101)
    assert w.wall_b == pytest.approx(logit(0.4) - 5.0 * 0.4, abs=1e-9)


def test_article_numbers_at_the_wall(wall):
    # The article, note 4: attractors ≈ 0.145 and ≈ 0.855; the loss jumps to ≈ 0.50.
    assert wall.attractors_at_wall == pytest.approx((0.145, 0.855), abs=5e-4)
    assert wall.loss_jump == pytest.approx(0.50, abs=0.01)
    assert wall.loss_right < 1e-3
    assert wall.loss_left == pytest.approx(0.50, abs=0.02)


def test_loss_on_each_side_equals_the_settled_attractor_loss(wall):
    left = doya.equilibria(5.0, wall.wall_b - wall.margin)[0].x
    right = doya.equilibria(5.0, wall.wall_b + wall.margin)[-1].x
    assert wall.loss_left == pytest.approx((0.855 - left) ** 2, rel=1e-4)
    assert wall.loss_right == pytest.approx((0.855 - right) ** 2, rel=1e-3, abs=1e-8)


def test_gradient_spikes_at_the_wall(wall):
    assert wall.max_abs_grad_b == pytest.approx(wall.wall_b, abs=(wall.b[1] - wall.b[0]))
    assert wall.max_abs_grad > 1e4 * np.median(np.abs(wall.grad))


def test_autograd_loss_gradient_matches_finite_differences_away_from_the_wall():
    b = np.array([-2.9, -2.7, -2.3, -2.1])
    h = 1e-6
    _, grad, _ = landscape.loss_curve(b)
    lp, _, _ = landscape.loss_curve(b + h)
    lm, _, _ = landscape.loss_curve(b - h)
    np.testing.assert_allclose(grad, (lp - lm) / (2 * h), rtol=1e-5)


def test_landscape_2d_row_equals_loss_curve():
    bs = np.linspace(-3, -2, 11)
    surf = landscape.landscape_2d(np.array([4.0, 5.0]), bs)
    loss, _, _ = landscape.loss_curve(bs, w=5.0)
    np.testing.assert_allclose(surf[1], loss, rtol=1e-12)
    assert surf.shape == (2, 11)


def test_no_wall_in_range_is_a_clear_error():
    with pytest.raises(ConfigError, match="basin of x"):
        landscape.wall(b_min=-2.4, b_max=-2.0, n_points=11)
    with pytest.raises(ConfigError, match="'x0' parameter of landscape must be in"):
        landscape.loss_curve(np.array([-2.0]), x0=2.0)
