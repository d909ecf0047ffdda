"""Bad arguments to the monitor: one ConfigError sentence naming the value and what is valid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import gradwatch as gw
from gradwatch.errors import ConfigError


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))


def _stepped(model: nn.Module) -> gw.Monitor:
    mon = gw.Monitor(model)
    model(torch.randn(2, 3)).sum().backward()
    return mon


@pytest.mark.parametrize(
    ("loss", "message"),
    [
        ("abc", "Got str"),
        (True, "Got bool"),
        (torch.ones(2, 1), r"shape \(2, 1\): reduce it first"),
        (torch.ones(1, dtype=torch.complex64), "complex64"),
        ([1.0], "Got list"),
    ],
)
def test_step_refuses_what_is_not_a_loss(loss: object, message: str) -> None:
    mon = _stepped(_model())
    with pytest.raises(ConfigError, match=message):
        mon.step(loss)  # type: ignore[arg-type]
    mon.close()


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6)))
def test_step_records_any_real_number_as_is(value: float) -> None:
    model = _model()
    with gw.Monitor(model) as mon:
        model(torch.randn(2, 3)).sum().backward()
        mon.step(value)
        got = mon.history.loss[0]
    assert (np.isnan(got) and np.isnan(value)) or got == pytest.approx(float(value))


def test_numpy_and_tensor_scalars_are_losses() -> None:
    model = _model()
    with gw.Monitor(model) as mon:
        for loss in (np.float32(0.5), torch.tensor(0.25), torch.tensor([0.125])):
            model(torch.randn(2, 3)).sum().backward()
            mon.step(loss)
            model.zero_grad()
        assert mon.history.loss.tolist() == [0.5, 0.25, 0.125]


@pytest.mark.parametrize("types", ["Linear", (nn.Linear, "Tanh"), 3])
def test_module_types_must_be_classes(types: object) -> None:
    with pytest.raises(ConfigError, match="'module_types' parameter of Monitor must be a module class"):
        gw.Monitor(_model(), module_types=types)  # type: ignore[arg-type]


def test_complex_parameters_are_refused_with_a_way_out() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3).to(torch.complex64))
    with pytest.raises(ConfigError, match=r"'1.weight' is torch.complex64.*exclude='1'"):
        gw.Monitor(model)
    gw.Monitor(model, exclude="1").close()


def test_a_time_dim_outside_the_profiled_input_is_refused_at_the_first_forward() -> None:
    """Wrapping time_dim=5 on a 3-D input would silently profile the feature dimension."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.out = nn.RNN(3, 4, batch_first=True), nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.rnn(x)[0][:, -1])

    net = Net()
    mon = gw.Monitor(net, time_profile_every=1, time_dim=5)
    with pytest.raises(
        ConfigError,
        match=r"'time_dim' parameter of Monitor must be a dimension of the profiled "
        r"input of shape \(2, 7, 3\) \(-3\.\.2\)\. Got 5",
    ):
        net(torch.randn(2, 7, 3))
    mon.close()
    with gw.Monitor(net, time_profile_every=1, time_dim=-2) as mon:  # the same as 1: valid
        net(torch.randn(2, 7, 3)).sum().backward()
        mon.step()
        assert mon.history.time_profiles[0][1].shape == (7,)
