"""Shared test helpers: run the command line in-process and capture its streams."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from gradwatch.cli import main


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def cli(capsys):
    """Call ``gradwatch ARGS...`` in-process; returns exit code, stdout and stderr."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def wandb_run(tmp_path, monkeypatch):
    """An offline W&B run whose ``log`` calls are also kept: yields (run, [(step, data), ...])."""
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(project="gradwatch-test", dir=str(tmp_path), mode="offline")
    logged: list = []
    original = run.log

    def spy(data, step=None, **kw):
        logged.append((step, dict(data)))
        return original(data, step=step, **kw)

    monkeypatch.setattr(run, "log", spy)
    yield run, logged
    run.finish()
