"""The demo's whole pipeline on a reduced size."""

from __future__ import annotations

import json

from lmforge.cli import main


def test_demo_pipeline_smoke(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--size", "smoke", "--output-dir", str(out)]) == 0
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
