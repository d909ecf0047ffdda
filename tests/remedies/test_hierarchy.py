"""Schmidhuber's history compressor on a long-lag task with rare informative events."""

import pytest
import torch
from torch import nn

from gradwatch.errors import ConfigError
from gradwatch.remedies.hierarchy import HistoryCompressor
from gradwatch.tasks import rare_events

V = 6  # symbols 0, 1, 2 cycle predictably; 3 and 4 mark the class; 5 is a distractor


@pytest.fixture(scope="module")
def data():
    return rare_events(256, 100, seed=0), rare_events(512, 100, seed=1)


@pytest.fixture(scope="module")
def fitted(data):
    (x, y), _ = data
    return HistoryCompressor(V, 2, hidden=8, epochs_automatizer=150, epochs_chunker=150, joint_epochs=10).fit(x, y)


def test_chunker_sees_about_as_many_inputs_as_there_are_events(fitted, data):
    _, (xt, _) = data
    c = fitted.compress(xt)
    # events per sequence: x_0, the class event, two distractors (4, fewer if they coincide)
    assert 3.0 <= float(c.lengths.float().mean()) <= 6.0
    assert int(c.lengths.max()) <= 10  # of 100 steps
    # the class event is always among the kept inputs, with its time stamp
    kept_class = (c.inputs[:, :, 3] + c.inputs[:, :, 4]).sum(dim=1)
    assert torch.all(kept_class == 1)
    assert torch.all((c.inputs[:, :, V] >= 0) & (c.inputs[:, :, V] <= 1))


def test_hierarchy_solves_the_long_lag_task_a_single_rnn_of_the_same_size_fails(fitted, data):
    (x, y), (xt, yt) = data
    assert float((fitted.predict(xt) == yt).float().mean()) > 0.95
    torch.manual_seed(0)
    rnn, head = nn.RNN(V, 8, batch_first=True), nn.Linear(8, 2)
    opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=0.02)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(head(rnn(x)[0][:, -1]), y).backward()
        opt.step()
    with torch.no_grad():
        baseline = float((head(rnn(xt)[0][:, -1]).argmax(-1) == yt).float().mean())
    assert baseline < 0.65


def test_training_phases_reduce_their_losses(fitted):
    h = fitted.history_
    assert h["automatizer"][-1] < 0.5 * h["automatizer"][0]
    assert h["chunker"][-1] < 0.2 * h["chunker"][0]
    assert len(h["joint"]) == 10


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: HistoryCompressor(V, 2).fit(torch.zeros(4, 10, 3), torch.zeros(4)), r"shape \(batch, time >= 2, 6\)"),
        (lambda: HistoryCompressor(V, 2).fit(torch.zeros(4, 10, V), torch.full((4,), 5)), r"labels in \[0, 2\)"),
        (lambda: HistoryCompressor(V, 2).predict(torch.zeros(1, 5, V)), "not fitted"),
        (lambda: HistoryCompressor(V, 2, threshold=1.0), r"'threshold' .* in \(0, 1\)"),
        (lambda: HistoryCompressor(V, 2, cell="lstm"), r"'cell' .* one of 'gru', 'rnn'"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ConfigError, match=match):
        call()
