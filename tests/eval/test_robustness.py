"""One task under several prompt formats: per-format accuracy and the spread."""

from __future__ import annotations

import json

import pytest

from tests.eval.conftest import cli_error, run_cli


def test_formats_report_per_format_scores_and_spread(trained_run, task_files, tmp_path, capsys):
    output = tmp_path / "formats.json"
    code, out, err = run_cli(
        capsys,
        [
            "eval",
            str(trained_run),
            "--task",
            str(task_files["arc"]),
            "--shots",
            "1",
            "--format",
            "plain,remask,openassistant",
            "--output",
            str(output),
        ],
    )
    assert code == 0, err
    report = json.loads(output.read_text())
    row = report["summary"]["arc"]
    assert row["metric"] == "acc_norm" and set(row["per_format"]) == {"plain", "remask", "openassistant"}
    values = list(row["per_format"].values())
    assert row["spread"] == pytest.approx(max(values) - min(values))
    for name in report["formats"]:  # each format's full results, with its own prompts
        per = json.loads(output.with_name(f"formats.{name}.json").read_text())
        assert per["tasks"][0]["prompt_format"] == name
    contexts = {
        name: json.loads(output.with_name(f"formats.{name}.samples.jsonl").read_text().splitlines()[0])["context"]
        for name in report["formats"]
    }
    assert contexts["plain"].startswith("<s>Question: ") and "<|prompter|>" in contexts["openassistant"]
    assert "| arc | acc_norm |" in out and "spread" in out


def test_formats_errors(random_model_dir, task_files, capsys):
    arc = str(task_files["arc"])
    assert "each format once" in cli_error(
        capsys, ["eval", str(random_model_dir), "--task", arc, "--format", "plain,plain"]
    )
    assert "has no chat_template" in cli_error(
        capsys, ["eval", str(random_model_dir), "--task", arc, "--format", "plain,chat_template"]
    )
