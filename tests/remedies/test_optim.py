"""sign-SGD against its update rule (the registry's tests: test_registry.py)."""

import pytest
import torch

from gradwatch.errors import ConfigError
from gradwatch.remedies.optim import SignSGD


def test_sign_sgd_moves_every_weight_by_lr():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0, 0.5]))
    p.grad = torch.tensor([1e-9, -5.0, 0.0, 2.0])
    SignSGD([p], lr=0.1).step()
    torch.testing.assert_close(p.detach(), torch.tensor([0.9, -1.9, 3.0, 0.4]))


def test_signum_uses_the_sign_of_the_moving_average():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = SignSGD([p], lr=1.0, momentum=0.9)
    m = torch.zeros(2)
    expected = torch.zeros(2)
    for i, g in enumerate([torch.tensor([1.0, -1.0]), torch.tensor([-3.0, 0.5]), torch.tensor([-3.0, 0.5])]):
        p.grad = g.clone()
        opt.step()
        m = g.clone() if i == 0 else 0.9 * m + 0.1 * g
        expected -= torch.sign(m)
        torch.testing.assert_close(p.detach(), expected)


def test_sign_sgd_validates():
    with pytest.raises(ConfigError, match=r"'momentum' parameter of SignSGD must be in \[0, 1\)"):
        SignSGD([torch.nn.Parameter(torch.zeros(1))], momentum=1.0)
