"""2k steps straight == k steps, interruption, --resume, k more steps: same final loss and
weights on CPU."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from lmforge.config import load_config
from lmforge.errors import LmforgeError
from lmforge.train.pipeline import run_training
from lmforge.rundir import read_run
from tests.e2e.conftest import write_config


class Interrupt(TrainerCallback):
    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.at_step:
            raise KeyboardInterrupt("simulated kill")


def _train_losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows if "loss" in row}


@pytest.mark.parametrize(
    "objective",
    [
        {"objective": {"name": "mixce", "ratio": 0.75}},
        # random masks drawn at collate time and NEFTune noise must replay identically
        {"objective": {"name": "remask_cot"}, "neftune_alpha": 10.0},
    ],
    ids=["mixce", "remask_cot+neftune"],
)
def test_resume_is_exact(tmp_path, user_files, objective):
    overrides = {"max_steps": 8, "save_every": 4, "schedule": {"name": "cosine", "warmup_ratio": 0.25}, **objective}
    straight = load_config(write_config(tmp_path / "a.yaml", user_files, tmp_path / "straight", **overrides))
    run_training(straight)

    resumed = load_config(write_config(tmp_path / "b.yaml", user_files, tmp_path / "resumed", **overrides))
    with pytest.raises(KeyboardInterrupt):
        run_training(resumed, extra_callbacks=[Interrupt(at_step=4)])
    assert read_run(tmp_path / "resumed")["status"] == "failed"
    assert not (tmp_path / "resumed" / "model").exists()
    with pytest.raises(LmforgeError, match="--resume"):
        run_training(resumed)  # an unfinished run is not silently replaced
    run_training(resumed, resume=True)
    assert read_run(tmp_path / "resumed")["status"] == "finished"

    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=1e-6, msg=name)
    losses_a, losses_b = _train_losses(tmp_path / "straight"), _train_losses(tmp_path / "resumed")
    assert losses_a[8] == pytest.approx(losses_b[8], abs=1e-6)
    assert losses_a[5] == pytest.approx(losses_b[5], abs=1e-6)


class KillAfterFinalEvaluation(TrainerCallback):
    """A kill right after the run's final evaluation was logged: past the last checkpoint,
    at the same step."""

    def __init__(self):
        self.evaluations_at_end = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "eval_loss" in logs and state.global_step == state.max_steps:
            self.evaluations_at_end += 1
            if self.evaluations_at_end == 2:  # the eval_every one, then the final one
                raise KeyboardInterrupt("simulated kill")


def _log_rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r.get("loss"), r.get("eval_loss")) for r in rows if "loss" in r or "eval_loss" in r]


def test_a_resumed_log_drops_what_was_logged_after_the_checkpoint_at_its_own_step(tmp_path, user_files):
    """The final evaluation is logged at the last checkpoint's step but after its save: a run
    killed there and resumed logs it once, as the uninterrupted run does."""
    overrides = {"max_steps": 4, "save_every": 4, "eval_every": 4}
    straight = load_config(write_config(tmp_path / "a.yaml", user_files, tmp_path / "straight", **overrides))
    run_training(straight)
    resumed = load_config(write_config(tmp_path / "b.yaml", user_files, tmp_path / "resumed", **overrides))
    with pytest.raises(KeyboardInterrupt):
        run_training(resumed, extra_callbacks=[KillAfterFinalEvaluation()])
    assert [row[0] for row in _log_rows(tmp_path / "resumed")].count(4) == 3  # loss, eval, final eval
    run_training(resumed, resume=True)
    assert _log_rows(tmp_path / "resumed") == _log_rows(tmp_path / "straight")
