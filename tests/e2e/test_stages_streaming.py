"""data.stages with data.streaming: each stage draws its own sources for its step budget,
scales train.schedule's learning rate by its lr_scale (applied to the optimizer, and
logged), and a run killed mid-stage resumes exactly."""

from __future__ import annotations

import pytest
from transformers import TrainerCallback

from lmforge.rundir import read_run
from lmforge.train.pipeline import run_training
from tests.e2e.test_streaming_train import Interrupt, assert_same_weights, corpora, metric_lines, streaming_config  # noqa: F401

STAGES = {
    "stages": [
        {"name": "web", "weights": {"web": 1.0}, "tokens": 2 * 8 * 32 + 1, "lr_scale": 1.0},  # rounds up to 3 steps
        {"name": "rest", "weights": {"books": 1.0, "code": 1.0}, "lr_scale": 0.5},
    ]
}


class LrProbe(TrainerCallback):
    """The learning rate each optimizer update used."""

    def __init__(self):
        self.used = []

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.used.append(optimizer.param_groups[0]["lr"])


def test_stages_budgets_lr_scale_and_resume_mid_stage(tmp_path, user_files, corpora):  # noqa: F811
    overrides = {"max_steps": 8, "save_every": 4, "schedule": {"name": "constant"}, "optimizer": {"lr": 3e-3}}
    probe = LrProbe()
    straight = streaming_config(tmp_path, user_files, corpora, "straight", data=STAGES, **overrides)
    run_training(straight, extra_callbacks=[probe])
    assert probe.used == pytest.approx([3e-3] * 3 + [1.5e-3] * 5)

    lines = [r for r in metric_lines(tmp_path / "straight") if "loss" in r]
    assert [r["mix/stage"] for r in lines] == [0, 0, 0, 1, 1, 1, 1, 1]
    assert [r["learning_rate"] for r in lines] == pytest.approx([3e-3] * 3 + [1.5e-3] * 5)
    web = [r["mix/web/tokens"] for r in lines]
    assert web == [256, 512, 768] + [768] * 5  # stage 1 draws web alone, stage 2 never
    assert lines[-1]["mix/books/tokens"] + lines[-1]["mix/code/tokens"] == 5 * 256
    assert lines[-1]["mix/web/target"] == pytest.approx(3 / 8, abs=1e-4)
    forecast = read_run(tmp_path / "straight")["streaming"]
    assert [(s["name"], s["steps"]) for s in forecast["stages"]] == [("web", 3), ("rest", 5)]

    resumed = streaming_config(tmp_path, user_files, corpora, "resumed", data=STAGES, **overrides)
    with pytest.raises(KeyboardInterrupt):
        run_training(resumed, extra_callbacks=[Interrupt(at_step=4)])  # step 4: inside stage 2
    run_training(resumed, resume=True)
    assert_same_weights(tmp_path / "straight", tmp_path / "resumed")
    tail = [r for r in metric_lines(tmp_path / "resumed") if "loss" in r][-4:]
    for a, b in zip(lines[-4:], tail):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert {k: v for k, v in a.items() if k.startswith("mix/")} == {
            k: v for k, v in b.items() if k.startswith("mix/")
        }
