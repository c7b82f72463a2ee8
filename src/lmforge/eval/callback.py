"""Evaluation during training: any task every N optimizer steps, as a `TrainerCallback`.
The scores join that step's training log (loss, learning rate ...) as
`eval_<task>_<metric>`, so metrics.jsonl and the progress output hold them side by side.

The task files are read, and few-shot draws checked, when the callback is built: a bad
file fails the run before training starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback

from lmforge.errors import LmforgeError
from lmforge.eval.evaluate import EvalOptions, evaluate_task
from lmforge.eval.fewshot import check_style
from lmforge.eval.runner import check_tasks
from lmforge.eval.tasks import Task, load_task


@dataclass
class ScheduledTask:
    task: Task
    options: EvalOptions
    every: int


def log_keys(task_name: str, metrics: dict[str, float]) -> dict[str, float]:
    """Training-log entries of one evaluation (standard errors and counts left out).

    >>> log_keys("arc", {"acc": 0.5, "acc_stderr": 0.1, "n": 10})
    {'eval_arc_acc': 0.5}
    """
    return {
        f"eval_{task_name}_{k}": v for k, v in metrics.items() if not k.endswith("_stderr") and k not in ("n", "tokens")
    }


class TaskEvalCallback(TrainerCallback):
    def __init__(self, scheduled: list[ScheduledTask], tokenizer, meta: dict[str, Any]):
        self.scheduled = scheduled
        self.tokenizer = tokenizer
        self.meta = meta
        self.pending: dict[str, float] = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        for entry in self.scheduled:
            if state.global_step % entry.every == 0:
                result = evaluate_task(model, self.tokenizer, self.meta, entry.task, entry.options)
                self.pending.update(log_keys(entry.task.name, result.metrics))
        if self.pending:
            control.should_log = True  # log now, with this step's training loss
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self.pending and "loss" in logs:
            logs.update(self.pending)
            self.pending = {}


def build_task_eval_callback(entries: list[dict[str, Any]], tokenizer, meta: dict[str, Any]) -> TaskEvalCallback | None:
    """From `train.eval_tasks` entries ({task, every, shots, format, ...}); None when empty."""
    scheduled = []
    for index, entry in enumerate(entries):
        if entry["format"] is not None:
            try:
                check_style(entry["format"])
            except LmforgeError as exc:
                raise LmforgeError(f"train.eval_tasks[{index}].format: {exc}") from None
        options = EvalOptions(
            shots=entry["shots"],
            seed=entry["fewshot_seed"],
            style=entry["format"],
            fewshot_sampler=entry.get("fewshot_sampler"),
            batch_size=entry["batch_size"],
            max_new_tokens=entry.get("max_new_tokens"),
        )
        task = load_task(
            entry["task"],
            fewshot=entry["fewshot_file"],
            limit=entry["limit"],
            **({"langs": entry["langs"]} if entry.get("langs") else {}),
        )
        try:
            check_tasks([task], options)
        except LmforgeError as exc:
            raise LmforgeError(f"train.eval_tasks[{index}]: {exc}") from None
        scheduled.append(ScheduledTask(task, options, entry["every"]))
    return TaskEvalCallback(scheduled, tokenizer, meta) if scheduled else None
