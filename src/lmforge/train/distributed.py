"""Who does what when a run has several processes (torchrun / accelerate launch).

Every process trains; only the main process touches the run directory (creates or clears
it, writes run.json, config.yaml, plots and the final model) and prepares the data, while
the others wait for it. Work done on the main process alone shares its outcome — a value
or a user error — with every process, so a bad input stops all of them with the same
one-line message instead of leaving the others blocked at a barrier.

accelerate's `PartialState` owns the process group; transformers' TrainingArguments later
reuses the same group.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list

from lmforge.errors import LmforgeError

T = TypeVar("T")


def world_size() -> int:
    """Processes of this run as the launcher set them (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def has_accelerator() -> bool:
    """A device the Trainer trains on instead of the CPU: CUDA (or ROCm), Apple MPS, Intel XPU."""
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or torch.backends.mps.is_available() or bool(xpu and xpu.is_available())


def check_devices(precision: str) -> None:
    """Refuse device setups the run cannot handle correctly, before any work."""
    if precision == "fp16" and not has_accelerator():
        raise LmforgeError(
            "train.precision: fp16 needs a GPU (fp16 autocast with loss scaling); use bf16 or fp32 on CPU"
        )
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus > 1 and world_size() == 1:
        # The Trainer would wrap the model in DataParallel, whose per-GPU losses our
        # label-token normalisation does not account for.
        raise LmforgeError(
            f"this process sees {gpus} GPUs; launch one process per GPU with "
            f"`torchrun --nproc_per_node {gpus} -m lmforge train ...`, or use one GPU (CUDA_VISIBLE_DEVICES=0)"
        )


# The other processes wait while the main one prepares the data, which can take long.
PREPARATION_TIMEOUT = timedelta(hours=3)


def process_state() -> PartialState:
    """The launcher's process group (created on first use; a no-op state for one process)."""
    return PartialState(cpu=not has_accelerator(), timeout=PREPARATION_TIMEOUT)


def on_main(state: PartialState, work: Callable[[], T]) -> T:
    """Run `work` on the main process only and return its result on every process.

    A user error raised on the main process is raised again, with the same message, on
    every other process. The result must be picklable (it is broadcast).
    """
    if state.num_processes == 1:
        return work()
    outcome: list = [None, None]
    if state.is_main_process:
        try:
            outcome = [work(), None]
        except Exception as exc:
            message = (
                str(exc) if isinstance(exc, LmforgeError) else f"the main process failed: {type(exc).__name__}: {exc}"
            )
            broadcast_object_list([None, message])
            raise
    broadcast_object_list(outcome)
    result, error = outcome
    if error is not None:
        raise LmforgeError(error)
    return result


def all_processes_agree(flag: bool) -> bool:
    """True on every process when `flag` is true on any of them (for decisions that must
    be the same everywhere, such as skipping an update)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=PartialState().device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())
