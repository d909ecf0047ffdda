"""Every code block in README.md and docs/*.md runs here, so a doc example cannot rot.

- ```python blocks run in order, one namespace per file, in a temporary working folder.
  Where a block uses the reader's own ``model``/``loader``/``loss_fn``… from context, the
  file's entry in ``FILE_CONTEXT`` provides small ones; a block whose context differs from
  the rest of its file (a LightningModule, a Hugging Face model) names one of ``CONTEXTS``
  with ``<!-- test-context: NAME -->`` right above its fence.
- ```bash blocks: each ``gradwatch ...`` / ``python -m gradwatch ...`` command runs in-process
  and must exit 0; any other command in a block that is not skipped is an error here.
- ```toml and ```json blocks must parse (a sweep file must also load as a sweep).
- Plain ``` blocks are output or synopsis, not code.

A block opts out only with ``<!-- skip-test: reason -->`` among the HTML comment lines right
above its fence — for what cannot run here (CUDA, multi-process DDP) or is a long run that
other tests cover at toy size.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\s*$")
_SKIP = re.compile(r"<!--\s*skip-test:\s*(.+?)\s*-->")
_CONTEXT = re.compile(r"<!--\s*test-context:\s*([\w-]+)\s*-->")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # the reason given in a skip-test marker
    context: str | None  # the name given in a test-context marker

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with the skip-test/test-context markers right above each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"{path.name}:{start + 1}: unclosed code fence"
        skip = context = None
        k = start - 1
        while k >= 0 and lines[k].strip().startswith("<!--"):
            if found := _SKIP.search(lines[k]):
                skip = found.group(1)
            if found := _CONTEXT.search(lines[k]):
                context = found.group(1)
            k -= 1
        out.append(Block(path, start + 1, lang, "\n".join(lines[start + 1 : end]) + "\n", skip, context))
        i = end + 1
    return out


# --- what the docs' examples take from context ----------------------------------------------------


def _training_loop() -> dict[str, Any]:
    """A reader's model, optimizer, loader and loss: a small sigmoid MLP on random data."""
    import torch

    from gradwatch import models

    g = torch.Generator().manual_seed(0)
    model = models.mlp(in_dim=8, out_dim=3, hidden=16, layers=4, activation="sigmoid", seed=0)
    loader = [(torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(8)]
    return {
        "model": model,
        "opt": torch.optim.SGD(model.parameters(), lr=0.1),
        "loader": loader,
        "loss_fn": torch.nn.functional.cross_entropy,
    }


def _integrations() -> dict[str, Any]:
    """The snippets of docs/integrations.md assume ``import torch`` and ``import gradwatch as gw``."""
    import torch

    import gradwatch as gw

    return {**_training_loop(), "torch": torch, "gw": gw}


def _remedies() -> dict[str, Any]:
    """The reader's model with gradients, a norm measured elsewhere, its body, and recurrent models."""
    import torch

    from gradwatch import models

    ns = _training_loop()
    model, (x, y) = ns["model"], ns["loader"][0]
    ns["loss_fn"](model(x), y).backward()
    return {
        **ns,
        "norm": torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None]),
        "body": model.blocks,
        "rnn": models.rnn(kind="rnn", hidden=8, seed=0),
        "lstm_model": models.rnn(kind="lstm", hidden=8, seed=0),
    }


def _lightning() -> dict[str, Any]:
    """``L``, a LightningModule and a datamodule: 8 batches, and the module stops after one epoch."""
    L = pytest.importorskip("lightning")
    import torch
    from torch import nn

    class Classifier(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def on_train_epoch_end(self) -> None:
            self.trainer.should_stop = True  # the doc's Trainer has no max_epochs: one epoch is enough here

    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g))
    return {
        "L": L,
        "model": Classifier(),
        "datamodule": L.LightningDataModule.from_datasets(train_dataset=data, batch_size=8),
    }


def _hugging_face() -> dict[str, Any]:
    """``Trainer``, a 2-layer GPT-2 from a config (nothing downloaded), 2 steps of arguments, a token dataset."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    import torch

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2)
    ids = torch.randint(0, 64, (8, 16), generator=torch.Generator().manual_seed(0))
    args = transformers.TrainingArguments(
        output_dir="hf-out", max_steps=2, per_device_train_batch_size=4, report_to=[], save_strategy="no", use_cpu=True
    )
    return {
        "Trainer": transformers.Trainer,
        "model": transformers.GPT2LMHeadModel(config),
        "args": args,
        "ds": [{"input_ids": row, "labels": row} for row in ids],
    }


FILE_CONTEXT: dict[str, Callable[[], dict[str, Any]]] = {
    "README.md": _training_loop,
    "docs/monitor.md": _training_loop,
    "docs/integrations.md": _integrations,
    "docs/remedies.md": _remedies,
}
CONTEXTS: dict[str, Callable[[], dict[str, Any]]] = {"lightning": _lightning, "hugging-face": _hugging_face}

# --- the tests -------------------------------------------------------------------------------------

_ALL = [b for p in DOCS for b in blocks(p)]
_PYTHON_FILES = sorted({b.path for b in _ALL if b.lang == "python"})
_COMMAND = re.compile(r"^(?:python -m )?gradwatch\s")


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_collector_finds_the_docs_and_their_blocks():
    assert {"README.md", "docs/remedies.md", "docs/monitor.md"} <= {_id(p) for p in _PYTHON_FILES}
    langs = {b.lang for b in _ALL}
    assert {"python", "bash"} <= langs
    assert langs <= {"python", "bash", "toml", "json", ""}, langs  # a new language needs a runner here
    for b in _ALL:
        if b.skip is not None:
            assert len(b.skip) > 10, f"{b.where}: say why the block is skipped"


@pytest.mark.parametrize("path", _PYTHON_FILES, ids=_id)
def test_python_blocks_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    context = FILE_CONTEXT.get(_id(path))
    ns: dict[str, Any] = {"__name__": "__doc_example__", **(context() if context else {})}
    ran = 0
    for block in blocks(path):
        if block.lang != "python" or block.skip is not None:
            continue
        if block.context is not None:
            assert block.context in CONTEXTS, f"{block.where}: unknown test-context {block.context!r}"
            ns.update(CONTEXTS[block.context]())
        try:
            exec(compile(block.code, block.where, "exec"), ns)
        except Exception as exc:
            raise AssertionError(f"the code block at {block.where} raised {type(exc).__name__}: {exc}") from exc
        ran += 1
    assert ran, f"every python block of {_id(path)} is skipped"


_COMMAND_BLOCKS = [b for b in _ALL if b.lang == "bash"]


@pytest.mark.parametrize("block", _COMMAND_BLOCKS, ids=lambda b: b.where)
def test_command_blocks_run(block: Block, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if block.skip is not None:
        pytest.skip(block.skip)
    monkeypatch.chdir(tmp_path)
    for line in block.code.splitlines():
        if not line.strip():
            continue
        assert _COMMAND.match(line), f"{block.where}: not a gradwatch command ({line!r}); run it or mark the block"
        args = shlex.split(line, comments=True)
        args = args[3:] if args[0] == "python" else args[1:]
        r = cli(*args)
        assert r.code == 0, f"{block.where}: {line!r} exited {r.code}: {r.err[-1000:]}"
        if "--json" in args:
            json.loads(r.out)


@pytest.mark.parametrize("block", [b for b in _ALL if b.lang in ("toml", "json")], ids=lambda b: b.where)
def test_data_blocks_parse(block: Block, tmp_path: Path) -> None:
    if block.skip is not None:
        pytest.skip(block.skip)
    if block.lang == "json":
        json.loads(block.code)
        return
    doc = tomllib.loads(block.code)
    if "base" in doc or "grid" in doc:  # a sweep file
        from gradwatch.experiments import load_sweep

        path = tmp_path / "sweep.toml"
        path.write_text(block.code, encoding="utf-8")
        assert load_sweep(path)
