"""Layer roles: from module types, from class names, and from calls (cells of hand-written loops)."""

import pytest
import torch
from torch import nn

import gradwatch as gw
from gradwatch.monitor.roles import ROLES, architecture, layer_roles, loop_roles, module_role


class GPT2Attention(nn.Module):  # a custom class, known by its name only
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(4, 4))


class LlamaRMSNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(4))


@pytest.mark.parametrize(
    ("module", "role"),
    [
        (nn.RNN(2, 3), "recurrent"),
        (nn.LSTMCell(2, 3), "recurrent"),
        (nn.GRU(2, 3), "recurrent"),
        (nn.Embedding(10, 3), "embedding"),
        (nn.EmbeddingBag(10, 3), "embedding"),
        (nn.BatchNorm1d(3), "norm"),
        (nn.LayerNorm(3), "norm"),
        (nn.GroupNorm(1, 4), "norm"),
        (nn.MultiheadAttention(4, 2), "attention"),
        (nn.Conv2d(1, 2, 3), "conv"),
        (nn.Linear(2, 3), "linear"),
        (GPT2Attention(), "attention"),
        (LlamaRMSNorm(), "norm"),
        (nn.PReLU(), "other"),
    ],
)
def test_module_role(module, role):
    assert module_role(module) == role and role in ROLES


def test_gradwatch_marks_its_own_recurrent_linear():
    cell = gw.models.rnn(kind="rnn", in_dim=2, hidden=4).cells[0]
    assert module_role(cell.w_rec) == "recurrent" and module_role(cell.w_in) == "linear"


def test_loop_roles_and_architecture():
    roles = {"emb": "embedding", "w": "linear", "head": "linear", "ln": "norm"}
    calls = {"emb": 7, "w": 7, "head": 1, "ln": 7}
    assert loop_roles(roles, calls, forwards=1) == {
        "emb": "embedding",
        "w": "recurrent",
        "head": "linear",
        "ln": "norm",
    }
    assert loop_roles(roles, calls, forwards=0)["w"] == "recurrent"  # the least-called layer is the unit
    assert loop_roles(roles, {"w": 2, "head": 1}, forwards=1)["w"] == "linear"  # twice: shared, not a loop
    assert architecture(["embedding", "recurrent", "linear"]) == "recurrent"
    assert architecture(["attention", "linear", "norm"]) == "transformer"
    assert architecture(["conv", "linear"]) == "convolutional"
    assert architecture(["linear"]) == "feedforward"
    assert architecture(["", ""]) == "unknown"


def test_layers_inside_attention_are_attention():
    model = nn.TransformerDecoderLayer(8, 2, 16)
    names = [n for n, m in model.named_modules() if list(m.parameters(recurse=False))]
    roles = layer_roles(model, names)
    assert roles["self_attn.out_proj"] == roles["multihead_attn.out_proj"] == "attention"
    assert roles["linear1"] == "linear" and roles["norm3"] == "norm"


def test_the_monitor_counts_calls_only_until_the_first_record():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    mon = gw.Monitor(model)
    model(torch.randn(2, 3)).sum().backward()
    mon.step()
    assert mon.history.roles == {"0": "linear", "1": "linear"}
    assert not model[0]._forward_pre_hooks  # the counting hooks are gone
    assert len(model._forward_pre_hooks) == 1  # what stays: the input reference that replays a NaN forward
    mon.close()
