"""Multi-process training is exact: `torchrun --nproc_per_node 2` (gloo, CPU) with
micro batch 1 x accumulation 2 ends with the same weights (1e-5) as one process with
micro batch 1 x accumulation 4 on the same data order — for CE, MixCE, ReMask with its
noise, rank (PRO + CE), NEFTune's per-example noise and FSDP2 — and a DDP run killed by
SIGKILL after a checkpoint and resumed ends where an uninterrupted one does; a
preference objective's logged rewards and accuracy are the mean over both processes.

Label-token normalisation over the global batch is exercised by the data: examples of
different lengths, so the two processes see different token counts in every step.

All two-process runs share one torchrun launch (plus one for the resume) to pay the
start-up once; the cases live in distributed_cases.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmforge import rundir
from lmforge.objectives.preference import LOGGED_METRICS
from tests.train.distributed_cases import MAX_STEPS, SAVE_EVERY, run_case

CASES_SCRIPT = Path(__file__).with_name("distributed_cases.py")
REPO = CASES_SCRIPT.parents[2]

OBJECTIVES = {
    "ce": {"objective": {"name": "ce"}},
    "mixce": {"objective": {"name": "mixce", "ratio": 0.5}},
    "remask": {"objective": {"name": "remask_cot", "p_in": 0.4, "p_label": 0.1, "p_answer_only": 0.1}},
    "rank": {"objective": {"name": "rank", "weight": 5.0}, "builder": "rank"},
    "neftune": {"objective": {"name": "ce"}, "neftune_alpha": 5.0},
    "lora": {
        "objective": {"name": "remask_cot"},
        "neftune_alpha": 5.0,
        "adapter": {"r": 4, "alpha": 8, "dropout": 0.0},
    },  # dropout draws differ per process
}


def torchrun(cases: list[dict], tmp_path: Path, name: str) -> subprocess.CompletedProcess:
    spec = tmp_path / f"{name}.json"
    spec.write_text(json.dumps(cases))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(CASES_SCRIPT),
        str(spec),
    ]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    adapter = Path(model_dir) / "adapter_model.safetensors"
    return load_file(str(adapter if adapter.is_file() else Path(model_dir) / "model.safetensors"))


def assert_same_weights(actual_dir: Path, expected_dir: Path) -> None:
    actual, expected = weights(actual_dir), weights(expected_dir)
    if "lm_head.weight" in actual.keys() - expected.keys():  # FSDP's full state dict spells out tied weights
        torch.testing.assert_close(actual.pop("lm_head.weight"), actual["model.embed_tokens.weight"])
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=1e-5, rtol=0, msg=name)


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """One launch: every objective under DDP, CE under FSDP2, and a CE run killed after
    its first checkpoint; then a second launch that resumes the killed run."""
    root = tmp_path_factory.mktemp("ddp")
    cases = [{"name": name, "output_dir": str(root / name), **case} for name, case in OBJECTIVES.items()]
    cases.append({"name": "fsdp", "output_dir": str(root / "fsdp"), "objective": {"name": "ce"}, "fsdp": {}})
    killed = {
        "name": "killed",
        "output_dir": str(root / "killed"),
        "objective": {"name": "ce"},
        "kill_after_step": SAVE_EVERY,
    }
    launch = torchrun([*cases, killed], root, "first")
    assert launch.returncode != 0, "the last case kills its processes"
    for case in cases:
        model_dir = root / case["name"] / "model"
        assert any((model_dir / name).is_file() for name in ("model.safetensors", "adapter_model.safetensors")), (
            launch.stderr[-3000:]
        )
    interrupted = rundir.read_run(root / "killed")
    assert interrupted["status"] == "running" and not (root / "killed" / "model").exists()
    assert rundir.latest_checkpoint(root / "killed").name == f"checkpoint-{SAVE_EVERY}"
    resumed = torchrun([{**killed, "kill_after_step": None, "resume": True}], root, "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return root


@pytest.mark.parametrize("name", [*OBJECTIVES, "fsdp"])
def test_two_processes_match_one_with_twice_the_accumulation(name, two_process_runs, tmp_path):
    case = OBJECTIVES.get(name, {"objective": {"name": "ce"}})
    single = run_case({"name": name, "output_dir": str(tmp_path / "single"), **case})
    assert_same_weights(two_process_runs / name / "model", single)
    record = rundir.read_run(two_process_runs / name)
    assert record["status"] == "finished" and record["processes"] == 2 and record["global_step"] == MAX_STEPS


def test_fsdp_really_sharded(two_process_runs):
    """accelerate alone would fall back to DDP on CPU; FSDP writes its own checkpoint files."""
    checkpoint = two_process_runs / "fsdp" / f"checkpoint-{SAVE_EVERY}"
    assert (checkpoint / "pytorch_model_fsdp.bin").is_file() and (checkpoint / "optimizer.bin").is_file()
    assert not (two_process_runs / "ce" / f"checkpoint-{SAVE_EVERY}" / "pytorch_model_fsdp.bin").exists()


def test_killed_ddp_run_resumes_to_the_uninterrupted_weights(two_process_runs):
    record = rundir.read_run(two_process_runs / "killed")
    assert record["status"] == "finished" and record["resumed_from"].endswith(f"checkpoint-{SAVE_EVERY}")
    assert_same_weights(two_process_runs / "killed" / "model", two_process_runs / "ce" / "model")


def test_only_the_main_process_writes_and_the_data_cache_is_gone(two_process_runs):
    run = two_process_runs / "ce"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines if "loss" in json.loads(line)] == list(range(1, MAX_STEPS + 1))
    assert not (run / "data-cache").exists() and not (run / "model.tmp").exists()


def test_neftune_noise_differs_from_no_noise(two_process_runs):
    """The NEFTune case above is only meaningful if the noise changes training."""
    noisy, plain = weights(two_process_runs / "neftune" / "model"), weights(two_process_runs / "ce" / "model")
    assert any(not torch.allclose(noisy[k], plain[k], atol=1e-5) for k in plain)


def test_main_process_error_stops_every_process(tmp_path):
    """A user error found by the main process alone (here: the run directory is not an
    lmforge run) reaches the other process too; nobody hangs at a barrier."""
    target = tmp_path / "not-a-run"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    launch = torchrun([{"name": "bad", "output_dir": str(target), "objective": {"name": "ce"}}], tmp_path, "bad")
    assert launch.returncode != 0
    assert launch.stderr.count("is not an lmforge run") >= 2  # both processes report it
    assert (target / "precious.txt").read_text() == "keep me"
    shutil.rmtree(target)


def test_preference_metrics_are_averaged_over_every_process(tmp_path):
    """SimPO's rewards and accuracy on the training log are the mean over both processes'
    micro-batches: 2 processes x micro batch 2 log what one process x accumulation 2 logs
    on the same examples (the main process alone writes the log)."""
    pairs = REPO / "examples" / "data" / "arithmetic-pairs.jsonl"
    case = {
        "objective": {"name": "simpo"},
        "data": {"datasets": [{"path": str(pairs), "val_split": 0.0, "max_train_set": 16}], "max_length": 128},
        "train": {"micro_batch_size": 2, "max_steps": 2, "save_every": None},
    }
    launch = torchrun([{"name": "simpo", "output_dir": str(tmp_path / "ddp"), **case}], tmp_path, "simpo")
    assert launch.returncode == 0, launch.stderr[-3000:]
    run_case({"name": "simpo", "output_dir": str(tmp_path / "single"), **case})

    def logged(run: Path) -> list[dict[str, float]]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{name: row[name] for name in LOGGED_METRICS} for row in rows if "loss" in row]

    two, one = logged(tmp_path / "ddp"), logged(tmp_path / "single")
    assert len(two) == len(one) == 2
    for actual, expected in zip(two, one):
        assert actual == pytest.approx(expected, abs=1e-5)
