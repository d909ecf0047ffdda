"""The gradient-flossing claim: the batched ensemble is independent runs; the full tier's code path at toy size."""

import numpy as np
import torch

from gradwatch.remedies import flossing
from gradwatch.reproduce import CLAIMS
from gradwatch.reproduce import flossing as claim


def test_the_ensemble_trains_each_seed_as_if_alone():
    both = claim.train_ensemble(4, (0, 1), steps=15, floss_steps=3, n=6, k=2)
    for i, seed in enumerate((0, 1)):
        alone = claim.train_ensemble(4, (seed,), steps=15, floss_steps=3, n=6, k=2)
        for arm in ("plain", "flossed"):
            # float rounding of batched vs single matmuls may flip a logit at 0: a few of 7,680 predictions
            assert abs(both["accuracy"][arm][i] - alone["accuracy"][arm][0]) <= 0.002
        np.testing.assert_allclose(both["lyapunov"]["flossed"][i], alone["lyapunov"]["flossed"][0], atol=1e-4)
        np.testing.assert_allclose(both["lyapunov"]["initial"][i], alone["lyapunov"]["initial"][0], atol=1e-5)


def test_exponents_are_those_of_the_authors_network():
    # x_t = J tanh(x_{t-1}) + b + w_s s_t: the ensemble's cell, network by network, against a plain closure
    net = claim.Ensemble.init((3, 4), 5)
    bits = torch.randint(0, 2, (2, 40, 1), generator=torch.Generator().manual_seed(0)).float()
    ours = claim._exponents(net, bits, 3)
    for i in range(2):
        J, b, ws = net.J[i].detach(), net.b[i].detach(), net.ws[i].detach()
        cell = lambda u, x, J=J, b=b, ws=ws: torch.tanh(x) @ J.T + b + ws * u  # noqa: E731
        ref = flossing.lyapunov_exponents(cell, bits[i : i + 1], k=3, hidden_size=5)
        np.testing.assert_allclose(ours[i], ref.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_flossing_moves_the_exponents_to_zero_and_the_full_tier_runs(monkeypatch):
    monkeypatch.setitem(claim._FLOSSING, "full", {"delays": (3, 4), "seeds": (0, 1), "steps": 10, "floss_steps": 30})
    monkeypatch.setattr(claim, "_N", 8)
    monkeypatch.setattr(claim, "_K", 2)
    monkeypatch.setattr(claim, "_SCORED", 5)
    outcome = CLAIMS["gradient-flossing"].check("full")
    assert outcome.figure is not None and isinstance(outcome.passed, bool)
    assert "success rate plain/flossed by delay" in outcome.measured
    run = outcome.values["runs"]["25"]  # the criterion's delay is always measured
    before, after = np.array(run["lyapunov"]["initial"]), np.array(run["lyapunov"]["flossed"])
    assert np.all(np.abs(after[:, 0]) < np.abs(before[:, 0]))
    assert run["floss_loss"][-1] < run["floss_loss"][0]
