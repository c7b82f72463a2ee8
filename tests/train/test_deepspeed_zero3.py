"""DeepSpeed ZeRO-3 is exact: `torchrun --nproc_per_node 2` (gloo, CPU) with train.deepspeed
set to a stage-3 config ends with the same weights (1e-5) as one process without DeepSpeed
on the same data order (micro batch 1 x accumulation 2 per process vs 1 x 4), and its
checkpoints are DeepSpeed's own (so DeepSpeed really ran, not a DDP fallback).

The config has no `optimizer` or `scheduler` block: lmforge's optimizer and schedule then
run under DeepSpeed (with seed 001's scheduler block the schedule is one step behind; see
lmforge.train.deepspeed). Skipped where deepspeed is not installed; the first run in a
fresh environment JIT-compiles a small DeepSpeed op (g++/ninja, about 45 s).
"""

from __future__ import annotations

import pytest

pytest.importorskip("deepspeed")

from lmforge import rundir
from tests.train.distributed_cases import MAX_STEPS, SAVE_EVERY, run_case
from tests.train.test_distributed import assert_same_weights, torchrun

ZERO3 = {
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True},
}
CASE = {"objective": {"name": "ce"}}
# no LoRA dropout: its masks are drawn per process, so two processes would draw other ones
LORA_CASE = {"objective": {"name": "ce"}, "adapter": {"r": 4, "alpha": 8, "dropout": 0.0}}


@pytest.fixture(scope="module")
def zero3_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("zero3")
    # one launch per run, as in real use: once a ZeRO-3 Trainer existed in a process,
    # transformers builds later models under zero.Init, and peft sets up trainable tokens
    # by its ZeRO-3 path, which is written for CUDA only
    for case in (
        {"name": "zero3", "output_dir": str(root / "zero3"), **CASE, "deepspeed": ZERO3},
        {"name": "zero3-lora", "output_dir": str(root / "zero3-lora"), **LORA_CASE, "deepspeed": ZERO3},
    ):
        launch = torchrun([case], root, case["name"])
        assert launch.returncode == 0, launch.stderr[-3000:]
    return root / "zero3"


def test_zero3_lora_matches_one_process(zero3_run, tmp_path):
    """A LoRA adapter (and the added tokens' rows) under ZeRO-3: the saved adapter equals
    the single-process one."""
    single = run_case({"name": "single", "output_dir": str(tmp_path / "single"), **LORA_CASE})
    assert (zero3_run.parent / "zero3-lora" / "model" / "adapter_model.safetensors").is_file()
    assert_same_weights(zero3_run.parent / "zero3-lora" / "model", single)


def test_zero3_two_processes_match_one_without_deepspeed(zero3_run, tmp_path):
    single = run_case({"name": "single", "output_dir": str(tmp_path / "single"), **CASE})
    assert_same_weights(zero3_run / "model", single)
    record = rundir.read_run(zero3_run)
    assert record["status"] == "finished" and record["processes"] == 2 and record["global_step"] == MAX_STEPS


def test_zero3_checkpoint_is_deepspeeds(zero3_run):
    """DeepSpeed writes its partitioned states under global_step*/: one model-state and one
    optimizer-state file per rank."""
    checkpoint = zero3_run / f"checkpoint-{SAVE_EVERY}"
    step_dirs = list(checkpoint.glob("global_step*"))
    assert len(step_dirs) == 1, sorted(p.name for p in checkpoint.iterdir())
    names = sorted(p.name for p in step_dirs[0].iterdir())
    for rank in (0, 1):
        assert f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt" in names, names
        assert any(n.startswith(f"zero_pp_rank_{rank}_") and n.endswith("optim_states.pt") for n in names), names
