"""The demo's whole pipeline on a reduced size."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lmforge.cli import main


@pytest.fixture(scope="module")
def smoke_demo(tmp_path_factory) -> Path:
    """`lmforge demo --size smoke`: its output directory (inputs/, run/)."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    assert main(["demo", "--size", "smoke", "--output-dir", str(out)]) == 0
    return out


def test_demo_pipeline_smoke(smoke_demo):
    out = smoke_demo
    run = out / "run"
    summary = (run / "summary.md").read_text()
    assert "| untrained | 0.0% (0/16) |" in summary  # random init never writes '<|answer|>\nN'
    assert "| after SFT |" in summary
    assert (run / "loss_curve.png").stat().st_size > 1000
    predictions = [json.loads(line) for line in (run / "test_predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 16 and all(p["gold"].isdigit() for p in predictions)
    train = (out / "inputs" / "train.jsonl").read_text().splitlines()
    test = {json.loads(line)["question"] for line in (out / "inputs" / "test.jsonl").read_text().splitlines()}
    assert not test & {json.loads(line)["question"] for line in train}  # held out
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_demo_accuracy_is_lmforge_evals(smoke_demo, tmp_path, capsys):
    """The demo scores with `lmforge eval`'s evaluator: its after-SFT accuracy and each
    item's correctness are what `lmforge eval MODEL --task TEST --max-new-tokens 96` reports."""
    run, test = smoke_demo / "run", smoke_demo / "inputs" / "test.jsonl"
    output = tmp_path / "eval.json"
    capsys.readouterr()
    code = main(
        [
            "eval",
            str(run / "model"),
            "--task",
            str(test),
            "--max-new-tokens",
            "96",
            "--batch-size",
            "64",
            "--output",
            str(output),
        ]
    )
    assert code == 0, capsys.readouterr().err
    (task,) = json.loads(output.read_text())["tasks"]
    assert task["prompt_format"] == "remask" and task["shots"] == 0
    evaluated = [json.loads(line) for line in output.with_suffix(".samples.jsonl").read_text().splitlines()]

    summary = (run / "summary.md").read_text()
    percent, correct, total = re.search(r"\| after SFT \| ([0-9.]+)% \((\d+)/(\d+)\) \|", summary).groups()
    assert int(total) == len(evaluated) == 16
    assert int(correct) / int(total) == task["metrics"]["exact_match_strict"]
    assert float(percent) == round(100 * task["metrics"]["exact_match_strict"], 1)

    demo = [json.loads(line) for line in (run / "test_predictions.jsonl").read_text().splitlines()]
    keys = ("where", "context", "gold", "output", "strict", "correct_strict")
    assert [{k: d[k] for k in keys} for d in demo] == [{k: e[k] for k in keys} for e in evaluated]
    assert sum(d["correct_strict"] for d in demo) == int(correct)


def test_demo_refuses_a_non_empty_output_dir(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file").write_text("mine")
    assert main(["demo", "--size", "smoke", "--output-dir", str(tmp_path / "x")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_demo_bootstrap_smoke(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--size", "smoke", "--bootstrap", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "after bootstrap round 1" in printed
    stats = json.loads((out / "bootstrap" / "round-1" / "stats.json").read_text())
    assert stats["questions"] == 16 and stats["samples"] == 64
    # the per-round table: held-out accuracy, the round's pass@1 / pass@4, pairs, optimizer steps
    assert "bootstrap rounds: strict exact match on 16 held-out problems" in printed
    for column in ("held-out", "train pass@1", "train pass@4", "pairs", "steps"):
        assert column in printed
    row = next(line for line in printed.splitlines() if line.strip("│ ").startswith("1 "))
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells[2] == f"{stats['pass@1']:.1%}" and cells[3] == f"{stats['pass@4']:.1%}"
    assert cells[4:] == [str(stats["pairs"]), str(stats["optimizer_steps"])]
    # a bootstrap demo (its SFT differs) is never resumed as a plain one
    assert json.loads((out / "demo.json").read_text())["size"] == "smoke --bootstrap"
    assert main(["demo", "--size", "smoke", "--output-dir", str(out), "--resume"]) == 2
    assert "ran with --size smoke --bootstrap" in capsys.readouterr().err
