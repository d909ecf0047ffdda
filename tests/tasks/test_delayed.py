"""The delayed copy and XOR tasks, against a direct construction from the bits."""

import pytest
import torch

from gradwatch.errors import ConfigError
from gradwatch.tasks.delayed import delayed_task, first_scored_step


@pytest.mark.parametrize(("task", "delay"), [("copy", 1), ("copy", 7), ("xor", 1), ("xor", 5)])
def test_targets_follow_the_definition(task, delay):
    x, y = delayed_task(task, delay, 40, 8, torch.Generator().manual_seed(delay))
    assert x.shape == (8, 40, 1) and y.shape == (8, 40)
    s = x[..., 0].long()
    first = first_scored_step(task, delay)
    for b in range(8):
        for t in range(first, 40):
            want = s[b, t - delay] if task == "copy" else s[b, t - delay] ^ s[b, t - 2 * delay]
            assert int(y[b, t]) == int(want)
    assert torch.all(y[:, :first] == 0)


def test_the_targets_are_fair_coins():
    _, y = delayed_task("xor", 3, 2000, 64, torch.Generator().manual_seed(0))
    assert float(y[:, 6:].mean()) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "add", "delay": 2, "length": 9, "batch_size": 1}, r"'task' .* 'copy', 'xor'"),
        ({"task": "copy", "delay": 0, "length": 9, "batch_size": 1}, r"'delay' .* integer >= 1"),
        ({"task": "xor", "delay": 5, "length": 10, "batch_size": 1}, r"'length' .* integer >= 11"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        delayed_task(**kwargs)
