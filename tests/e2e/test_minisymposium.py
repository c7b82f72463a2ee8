"""Seed 002's recipe end to end on CPU: the minisymposium preset's tiny section trains a LoRA
adapter on a 4-bit base over the hand-written chats in several prompt formats, saving a
checkpoint every two epochs, and `lmforge sweep` then scores every checkpoint on the
held-out chats and picks one."""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.cli import main

REPO = Path(__file__).resolve().parents[2]
PRESET = "presets/minisymposium.yaml"


def test_tiny_qlora_run_then_sweep_over_its_checkpoints(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the preset names example files relative to the repository
    run = tmp_path / "run"
    assert main(["train", PRESET, "defaults", "tiny", "--set", f"run.output_dir={run}"]) == 0

    # 32 chats / 8 per step = 4 steps per epoch; 6 epochs, a checkpoint every 2, all kept
    checkpoints = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.rpartition("-")[2]))
    assert [p.name for p in checkpoints] == ["checkpoint-8", "checkpoint-16", "checkpoint-24"]
    for checkpoint in checkpoints:  # the adapter, not a full copy of the model
        assert (checkpoint / "adapter_config.json").is_file()
        assert not (checkpoint / "model.safetensors").exists()
    finished = json.loads((run / "run.json").read_text())
    assert finished["status"] == "finished" and finished["global_step"] == 24
    losses = [row["loss"] for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in row]
    assert losses[-1] < losses[0] - 1.0  # the tiny lr and trained head learn something in six epochs (6.2 -> 3.9)

    capsys.readouterr()
    assert main(["sweep", str(run), "--task", "examples/data/socratic-test.jsonl"]) == 0
    assert "best: step" in capsys.readouterr().out
    report = json.loads((run / "sweep" / "sweep.json").read_text())
    assert [row["step"] for row in report["rows"]] == [8, 16, 24]
    assert report["metric"] == "perplexity"  # lower is better
    scored = json.loads((run / "sweep" / "checkpoint-8.json").read_text())["tasks"][0]
    assert scored["prompt_format"] == "instruction"  # the run's own format, not an augmentation one
    perplexities = {row["step"]: row["metrics"]["socratic-test"]["perplexity"] for row in report["rows"]}
    assert perplexities[24] < perplexities[8]  # six epochs of this tiny run stay on the under-trained side
    assert report["best"]["step"] == min(perplexities, key=perplexities.get)
