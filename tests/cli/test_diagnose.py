"""`gradwatch diagnose`: the example scripts reach the right verdict and recommendation; faults exit cleanly."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradwatch.cli import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "diagnose"
runner = CliRunner()


def _diagnose(tmp_path: Path, *args: str) -> tuple[int, dict, str]:
    out = tmp_path / "diag"
    result = runner.invoke(app, ["diagnose", *args[:1], "--out", str(out), *args[1:]])
    doc = json.loads((out / "diagnosis.json").read_text()) if (out / "diagnosis.json").exists() else {}
    return result.exit_code, doc, result.output


def test_rnn_language_model_exploding_recommends_clipping_or_a_lower_lr(tmp_path: Path) -> None:
    code, doc, output = _diagnose(tmp_path, str(EXAMPLES / "rnn_lm.py"), "--steps", "40", "--try", "--", "--lr", "5")
    assert code == 0, output
    assert doc["verdict"]["status"] == "exploding" and "rnn" in doc["verdict"]["where"]
    labels = [t["label"] for t in doc["trials"]]
    assert labels[:2] == ["as written", "as written (repeat)"]
    assert any(t["remedy"] == "clip_grad_norm" for t in doc["trials"]) and "lr×0.1" in labels
    assert doc["deterministic"] is True and doc["repeat_difference"] == 0.0
    rec = doc["recommendation"]
    assert rec["remedy"] in ("clip_grad_norm", "agc", "lr:lower")
    plain = doc["trials"][0]
    chosen = next(t for t in doc["trials"] if t["label"] == rec["label"])
    assert rec["improvement"] == pytest.approx(plain["final_loss"] - chosen["final_loss"])
    assert rec["improvement"] > 2 * rec["uncertainty"] > 0 and chosen["status"] == "healthy"
    assert "recommendation:" in output and "needs a code change: spectral_radius<1" in output
    html = (tmp_path / "diag" / "index.html").read_text()
    assert "Recommendation" in html and "data:image/png;base64," in html and "http" not in html.split("<body", 1)[1]


def test_forward_nan_names_the_module_and_tries_nothing(tmp_path: Path) -> None:
    code, doc, output = _diagnose(tmp_path, str(EXAMPLES / "forward_nan.py"), "--steps", "20", "--try")
    assert code == 0, output
    assert doc["verdict"]["status"] == "nonfinite" and doc["verdict"]["where"] == ["logscale"]
    assert doc["trials"] == [] and doc["recommendation"] is None
    guard = next(c for c in doc["code_changes"] if c["remedy"] == "numerics:guard")
    assert guard["location"].startswith("forward_nan.py:") and guard["line"] == "return torch.log(x)"


def test_healthy_script_with_its_own_arguments_and_dataloader_workers(tmp_path: Path) -> None:
    code, doc, output = _diagnose(
        tmp_path, str(EXAMPLES / "healthy.py"), "--steps", "30", "--try", "--", "--batch-size", "32", "--workers", "2"
    )
    assert code == 0, output
    assert doc["verdict"]["status"] == "healthy" and doc["trials"] == [] and doc["steps"] == 30
    assert doc["args"] == ["--batch-size", "32", "--workers", "2"]
    assert "healthy: no remedy to try." in output


def test_manual_sgd_without_optimizer_vanishing(tmp_path: Path) -> None:
    code, doc, output = _diagnose(tmp_path, str(EXAMPLES / "manual_sgd.py"), "--steps", "60", "--try")
    assert code == 0, output
    assert doc["models"][0]["optimizer"] is None and doc["verdict"]["status"] == "vanishing"
    remedies = {t["remedy"] for t in doc["trials"][2:]}
    assert {"relu", "init:kumar", "init:yilmaz_poli", "sign_sgd"} <= remedies
    assert {c["remedy"] for c in doc["code_changes"]} == {"batchnorm", "residual"}


def test_lightning_script_closure_steps_and_remedies(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    code, doc, output = _diagnose(tmp_path, str(EXAMPLES / "lightning_train.py"), "--steps", "30", "--try")
    assert code == 0, output
    (model,) = doc["models"]
    assert model["name"] == "AddingRNN" and model["optimizer"] == "SGD" and model["steps"] == 30
    assert doc["verdict"]["status"] in ("exploding", "nonfinite")
    assert "clip_grad_norm" in [a["remedy"] for a in doc["verdict"]["advice"]]
    plain, repeat, *tried = doc["trials"]
    assert plain["diverged_at"] is not None and repeat["losses"] == plain["losses"]  # Lightning runs are repeatable
    rec = doc["recommendation"]
    chosen = next(t for t in tried if t["label"] == rec["label"])
    assert rec["remedy"] in ("lr:lower", "agc", "clip_grad_norm")
    assert chosen["diverged_at"] is None and chosen["status"] == "healthy"


def test_hugging_face_trainer_script(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    code, doc, output = _diagnose(tmp_path, str(EXAMPLES / "hf_trainer.py"), "--steps", "15")
    assert code == 0, output
    (model,) = doc["models"]
    assert model["name"] == "GPT2LMHeadModel" and model["optimizer"] == "AdamW" and model["steps"] == 15
    assert doc["verdict"]["status"] == "healthy"


def _write(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn
            model = nn.Linear(4, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            x, y = torch.randn(16, 4), torch.randn(16, 1)
            """
        )
        + textwrap.dedent(body)
    )
    return script


def test_a_script_that_raises_exits_1_with_its_own_traceback_and_a_verdict(tmp_path: Path) -> None:
    script = _write(
        tmp_path,
        """
        for i in range(10):
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
            if i == 4:
                raise RuntimeError("out of data")
        """,
    )
    code, doc, output = _diagnose(tmp_path, str(script))
    assert code == 1
    assert "Traceback (most recent call last):" in output and f'File "{script}"' in output
    assert "RuntimeError: out of data" in output and "runpy" not in output
    assert doc["steps"] == 5 and doc["error"] == "RuntimeError: out of data" and doc["verdict"]["status"]


def test_a_script_that_never_calls_backward_exits_2_with_one_line(tmp_path: Path) -> None:
    script = _write(tmp_path, "print(model(x).sum().item())\n")
    code, _doc, output = _diagnose(tmp_path, str(script))
    assert code == 2
    assert "never trained a model" in output and "Traceback" not in output


def test_interrupt_writes_the_partial_diagnosis(tmp_path: Path) -> None:
    script = _write(
        tmp_path,
        """
        for i in range(100):
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
            if i == 6:
                raise KeyboardInterrupt
        """,
    )
    code, doc, _output = _diagnose(tmp_path, str(script), "--try")
    assert code == 130
    assert doc["ended"] == "interrupted" and doc["steps"] == 7 and doc["verdict"] is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.py"], "no such script: missing.py"),
        (["{script}", "--steps", "0"], "--steps must be a positive integer, got 0"),
        (["{script}", "--steps", "5", "--seconds", "2"], "give --steps or --seconds, not both"),
        (["{script}", "--seconds", "-1"], "--seconds must be a positive number of seconds, got -1.0"),
    ],
)
def test_bad_usage_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    script = _write(tmp_path, "")
    result = runner.invoke(app, ["diagnose", *[a.format(script=script) for a in args], "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_script_argument_errors_are_the_scripts(tmp_path: Path) -> None:
    script = tmp_path / "cli.py"
    script.write_text("import argparse\nargparse.ArgumentParser().parse_args()\n")
    code, _, output = _diagnose(tmp_path, str(script), "--", "--nope")
    assert code == 2 and "unrecognized arguments: --nope" in output and "exited with status 2" in output


def test_json_output_is_one_document_even_when_the_script_prints(tmp_path: Path) -> None:
    script = _write(
        tmp_path,
        """
        for i in range(5):
            print("step", i)
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
        """,
    )
    result = runner.invoke(app, ["diagnose", str(script), "--json", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["steps"] == 5 and doc["ended"] == "finished"


def test_a_script_seeded_from_the_clock_is_reported_not_deterministic(tmp_path: Path) -> None:
    script = tmp_path / "nondet.py"
    script.write_text(
        textwrap.dedent(
            """
            import time
            import torch
            from torch import nn
            g = torch.Generator().manual_seed(time.perf_counter_ns())  # not reproducible on purpose
            model = nn.Sequential(nn.Linear(8, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
            opt = torch.optim.SGD(model.parameters(), lr=0.05)
            for i in range(200):
                x = torch.randn(32, 8, generator=g)
                loss = ((model(x) - x.sum(1, keepdim=True) * 30) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            """
        )
    )
    code, doc, output = _diagnose(tmp_path, str(script), "--steps", "40", "--try")
    assert code == 0, output
    assert doc["verdict"]["status"] != "healthy" and len(doc["trials"]) > 2
    assert doc["deterministic"] is False and doc["repeat_difference"] > 0
    assert "not deterministic under fixed seeds" in output
    rec = doc["recommendation"]
    assert rec["uncertainty"] >= doc["repeat_difference"]  # the run-to-run noise is part of it


@pytest.mark.slow
def test_dataloader_workers_started_by_spawn(tmp_path: Path) -> None:
    # spawned workers re-import the script as __mp_main__: it must be the script, not gradwatch
    source = (EXAMPLES / "healthy.py").read_text()
    script = tmp_path / "spawn_train.py"
    script.write_text(
        source.replace("num_workers=args.workers)", 'num_workers=args.workers, multiprocessing_context="spawn")')
    )
    assert "spawn" in script.read_text()
    code, doc, output = _diagnose(tmp_path, str(script), "--steps", "10", "--", "--workers", "2")
    assert code == 0, output
    assert doc["steps"] == 10 and doc["verdict"]["status"] == "healthy"


def test_a_syntax_error_is_shown_without_gradwatch_or_runpy_frames(tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text("for i in range(3)\n    pass\n")
    code, doc, output = _diagnose(tmp_path, str(script))
    assert code == 1 and "SyntaxError" in output and "runpy" not in output and "Traceback" not in output
    assert doc["error"].startswith("SyntaxError")


def test_a_bad_seed_is_one_line(tmp_path: Path) -> None:
    script = _write(tmp_path, "")
    result = runner.invoke(app, ["diagnose", str(script), "--seed", "-1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--seed must be an integer in [0, 2**32), got -1" in result.output
