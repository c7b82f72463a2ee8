"""train.eval_tasks: a task evaluated every N steps during `lmforge train`, its scores in
the same metrics.jsonl lines as the training loss."""

from __future__ import annotations

import json

import yaml
from transformers import TrainerCallback

from tests.eval.conftest import cli_error, run_cli, write_config


def _config(tmp_path, user_files, eval_tasks):
    path = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run", max_steps=4)
    config = yaml.safe_load(path.read_text())
    config["defaults"]["train"]["eval_tasks"] = eval_tasks
    path.write_text(yaml.safe_dump(config))
    return path


def test_tasks_are_evaluated_every_n_steps_and_logged_with_the_loss(tmp_path, user_files, task_files, capsys):
    config = _config(
        tmp_path,
        user_files,
        [
            {"task": str(task_files["arc"]), "every": 2, "shots": 1},
            {"task": str(task_files["cot"]), "every": 4, "max_new_tokens": 8, "limit": 3},
        ],
    )
    code, _, err = run_cli(capsys, ["train", str(config)])
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    with_arc = [r for r in rows if "eval_arc_acc_norm" in r]
    assert [r["step"] for r in with_arc] == [2, 4] and all("loss" in r for r in with_arc)
    [with_cot] = [r for r in rows if "eval_cot_exact_match_strict" in r]
    assert with_cot["step"] == 4 and "eval_cot_exact_match_flexible" in with_cot


def test_a_bad_eval_task_fails_before_training(tmp_path, user_files, task_files, capsys):
    config = _config(tmp_path, user_files, [{"task": str(task_files["cot"]), "every": 2, "shots": 9}])
    assert "--shots 9: the few-shot pool" in cli_error(capsys, ["train", str(config)])
    assert not (tmp_path / "run" / "checkpoint-2").exists()
    config = _config(tmp_path, user_files, [{"task": str(task_files["arc"]), "every": 0}])
    assert "train.eval_tasks" in cli_error(capsys, ["train", str(config), "--overwrite"])


class RecordingIntegration(TrainerCallback):
    """Stands in for TensorBoard / wandb / mlflow: the Trainer puts these callbacks first."""

    seen: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        RecordingIntegration.seen.append(dict(logs or {}))


def test_task_scores_reach_the_logging_integrations(tmp_path, user_files, task_files, capsys, monkeypatch):
    import transformers.trainer

    monkeypatch.setattr(
        transformers.trainer, "get_reporting_integration_callbacks", lambda report_to: [RecordingIntegration]
    )
    RecordingIntegration.seen = []
    config = _config(tmp_path, user_files, [{"task": str(task_files["arc"]), "every": 2, "shots": 1}])
    code, _, err = run_cli(capsys, ["train", str(config)])
    assert code == 0, err
    logged = [row for row in RecordingIntegration.seen if "eval_arc_acc_norm" in row]
    assert len(logged) == 2 and all("loss" in row for row in logged)
