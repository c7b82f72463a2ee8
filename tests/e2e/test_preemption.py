"""SIGTERM / SIGINT during training: the current step finishes, a checkpoint is saved, the
run is marked interrupted and the command exits 0; --resume continues exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from lmforge.config import load_config
from lmforge.rundir import read_run
from lmforge.train.pipeline import Interrupted, run_training
from tests.e2e.conftest import write_config


class SignalAt(TrainerCallback):
    """Sends this process `signum` at the end of step `at_step`, as a scheduler would."""

    def __init__(self, at_step: int, signum: int):
        self.at_step, self.signum = at_step, signum

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at_step:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_a_checkpoint_and_resume_is_exact(tmp_path, user_files, signum):
    overrides = {"max_steps": 8, "save_every": 100, "objective": {"name": "remask_cot"}, "neftune_alpha": 10.0}
    straight = load_config(write_config(tmp_path / "a.yaml", user_files, tmp_path / "straight", **overrides))
    run_training(straight)

    stopped = load_config(write_config(tmp_path / "b.yaml", user_files, tmp_path / "stopped", **overrides))
    before = signal.getsignal(signum)  # not always the default: a library (Ray) may have set one
    result = run_training(stopped, extra_callbacks=[SignalAt(3, signum)])
    # the signal came during step 3's end; the step after it is the last one, checkpointed
    assert result.interrupted_at == 4 and result.model_dir is None
    run = read_run(tmp_path / "stopped")
    assert run["status"] == "interrupted" and run["global_step"] == 4
    assert (tmp_path / "stopped" / "checkpoint-4").is_dir() and not (tmp_path / "stopped" / "model").exists()
    assert signal.getsignal(signum) is before  # the handler there before is restored
    with pytest.raises(Interrupted, match="continue with --resume"):
        result.require_finished()

    run_training(stopped, resume=True)
    assert read_run(tmp_path / "stopped")["status"] == "finished"
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(tmp_path / "stopped" / "model" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=1e-6, msg=name)


def test_sigterm_to_the_cli_exits_zero_with_a_checkpoint(tmp_path, user_files):
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run", max_steps=100000, save_every=100000)
    process = subprocess.Popen(
        [sys.executable, "-m", "lmforge", "train", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.is_file() and sum('"loss"' in line for line in metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()[1][-2000:]
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-2000:]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "interrupted"
    assert (tmp_path / "run" / f"checkpoint-{run['global_step']}").is_dir()
    assert f"interrupted after step {run['global_step']}" in out and "SIGTERM: finishing this step" in err
