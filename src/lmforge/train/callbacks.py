"""Trainer callbacks: skipping non-finite updates, and metrics.jsonl logging."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from transformers import TrainerCallback

from lmforge.errors import LmforgeError
from lmforge.rundir import write_text_atomic
from lmforge.train.distributed import all_processes_agree


class NonFiniteLossError(LmforgeError):
    pass


class NonFiniteGuard(TrainerCallback):
    """Skip an optimizer update whose loss (or gradient) is NaN/inf.

    The trainer reports each micro-batch loss through `observe_loss`. Before the optimizer
    step, if anything in the accumulation window was non-finite, every gradient is
    dropped (set to None): torch and pytorch-optimizer optimizers skip parameters without
    a gradient, so no weight, moment or step count changes. More than `max_consecutive`
    skipped updates in a row stop the run; checkpoints already saved are kept.
    """

    def __init__(self, max_consecutive: int = 3):
        self.max_consecutive = max_consecutive
        self.window_bad = False
        self.skipped = 0
        self.consecutive = 0

    def state_dict(self) -> dict[str, int]:
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.skipped, self.consecutive = state["skipped"], state["consecutive"]

    def observe_loss(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss.detach()).all():
            self.window_bad = True

    @staticmethod
    def _gradients_finite(model: torch.nn.Module) -> bool:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        return not grads or bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        # every process must take the same decision (sharded gradients differ per process)
        bad = all_processes_agree(self.window_bad or not self._gradients_finite(model))
        if not bad:
            self.consecutive = 0
            return
        self.window_bad = False
        for param in model.parameters():
            param.grad = None
        self.skipped += 1
        self.consecutive += 1
        print(
            f"[lmforge] step {state.global_step + 1}: non-finite loss, update skipped "
            f"({self.skipped} skipped so far, {self.consecutive} in a row)"
        )
        if self.consecutive > self.max_consecutive:
            raise NonFiniteLossError(
                f"training stopped at step {state.global_step + 1}: {self.consecutive} updates in a row had a "
                f"non-finite loss (train.max_consecutive_nonfinite = {self.max_consecutive}); "
                "checkpoints saved so far are kept; lower train.optimizer.lr or check the data"
            )

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and "loss" in logs:
            logs["skipped_updates"] = self.skipped


class MetricsJsonl(TrainerCallback):
    """Append every log event (train and eval) to metrics.jsonl, one JSON object a line.

    A resumed run first cuts the file back to the rows it held when its checkpoint was
    saved (the count is saved in the checkpoint: `state_dict`), dropping a last line cut off
    by a kill, so the file ends up with each row once, as an uninterrupted run writes it.
    Counting rows, not comparing steps, also drops what was logged at the checkpoint's own
    step after the save (the final evaluation, the run summary). A checkpoint without the
    count (an older lmforge) falls back to the rows logged at or before its step."""

    def __init__(self, path: Path):
        self.path = path
        self.rows_at_checkpoint: int | None = None

    def state_dict(self) -> dict[str, int]:
        return {"rows": len(_complete_rows(self.path)) if self.path.is_file() else 0}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.rows_at_checkpoint = state["rows"]

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and state.global_step > 0 and self.path.is_file():
            truncate_log(self.path, state.global_step, self.rows_at_checkpoint)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "epoch": state.epoch}
        row.update({k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in logs.items()})
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


def _complete_rows(path: Path) -> list[str]:
    """The lines of `path` that are whole JSON rows (a kill can cut the last one off)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # the write a kill interrupted
        if isinstance(row, dict):
            rows.append(line)
    return rows


def truncate_log(path: Path, last_step: int, rows: int | None = None) -> None:
    """Keep the first `rows` whole rows of `path` or, without a count, the rows logged at or
    before `last_step`; a torn line is dropped either way."""
    kept = _complete_rows(path)
    if rows is not None:
        kept = kept[:rows]
    else:
        kept = [line for line in kept if isinstance(step := json.loads(line).get("step"), int) and step <= last_step]
    write_text_atomic(path, "".join(line + "\n" for line in kept))
