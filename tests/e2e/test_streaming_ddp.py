"""data.streaming under torchrun with 2 processes (gloo, CPU): each process trains on
different rows — accelerate hands the stream to process 0, which sends each its slice — so
micro batch 1 x accumulation 2 x 2 processes ends with the weights of one process with micro
batch 1 x accumulation 4 over the same stream (1e-5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmforge.rundir import read_run
from lmforge.train.pipeline import run_training
from tests.e2e.test_streaming_train import assert_same_weights, corpora, streaming_config  # noqa: F401

REPO = Path(__file__).parents[2]
SCRIPT = """
import sys
from lmforge.config import load_config
from lmforge.train.pipeline import run_training
run_training(load_config(sys.argv[1]))
"""


@pytest.mark.timeout(600)
def test_two_processes_train_on_different_rows_like_one(tmp_path, user_files, corpora):  # noqa: F811
    overrides = {"max_steps": 4, "global_batch_size": 4, "micro_batch_size": 1, "measure_roof": False}
    single = streaming_config(tmp_path, user_files, corpora, "single", **overrides)
    run_training(single)
    streaming_config(tmp_path, user_files, corpora, "ddp", **overrides)
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*command, str(script), str(tmp_path / "ddp.yaml")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_weights(tmp_path / "single", tmp_path / "ddp")
    for run in ("single", "ddp"):  # process 0 drew every row of the global batch
        mix = read_run(tmp_path / run)["final_metrics"]["data_mix"]["sources"]
        assert sum(source["tokens"] for source in mix.values()) == 4 * 4 * 32
