"""`lmforge sweep` over a run's checkpoints: table, JSON, plot, best, --copy-best."""

from __future__ import annotations

import json
import shutil

from lmforge.eval.sweep import pick_best
from tests.eval.conftest import cli_error, run_cli


def test_sweep_evaluates_every_checkpoint_and_copies_the_best(trained_run, task_files, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    code, out, err = run_cli(
        capsys,
        [
            "sweep",
            str(run),
            "--task",
            str(task_files["arc"]),
            "--task",
            str(task_files["text"]),
            "--metric",
            "text:perplexity",
            "--copy-best",
        ],
    )
    assert code == 0, err
    report = json.loads((run / "sweep" / "sweep.json").read_text())
    assert [r["step"] for r in report["rows"]] == [2, 4]
    perplexities = {r["step"]: r["metrics"]["text"]["perplexity"] for r in report["rows"]}
    best_step = min(perplexities, key=perplexities.get)  # lower is better for perplexity
    assert report["best"]["step"] == best_step and report["metric"] == "perplexity"
    assert (run / "sweep" / "sweep.png").stat().st_size > 1000
    table = (run / "sweep" / "sweep.md").read_text()
    assert f"| {best_step} **best** |" in table and "arc acc_norm" in table
    assert {"checkpoint-2.json", "checkpoint-4.json"} <= {p.name for p in (run / "sweep").iterdir()}
    best = run / "best"
    assert (best / "model.safetensors").read_bytes() == (
        run / f"checkpoint-{best_step}" / "model.safetensors"
    ).read_bytes()
    assert not (best / "optimizer.pt").exists() and (best / "tokenizer.json").is_file()
    assert json.loads((best / "lmforge.json").read_text())["prompt_format"] == "remask"
    # the copy is a model directory lmforge evaluates like any other
    code, _, err = run_cli(
        capsys, ["eval", str(best), "--task", str(task_files["arc"]), "--output", str(tmp_path / "best.json")]
    )
    assert code == 0, err


def test_best_prefers_higher_accuracy_and_the_earlier_step_on_ties():
    rows = [{"step": s, "metrics": {"t": {"acc": a}}} for s, a in ((2, 0.5), (4, 0.75), (6, 0.75))]
    assert pick_best(rows, "t", "acc")["step"] == 4


def test_sweep_errors(tmp_path, task_files, capsys):
    (tmp_path / "empty").mkdir()
    assert "no checkpoint-N directories" in cli_error(
        capsys, ["sweep", str(tmp_path / "empty"), "--task", str(task_files["arc"])]
    )
    assert "no task named 'x'" in cli_error(
        capsys, ["sweep", str(tmp_path / "empty"), "--task", str(task_files["arc"]), "--metric", "x:acc"]
    )
