"""The Trainer side of a streaming mixture (data.streaming): the stream's position saved in
every checkpoint and restored on resume, each stage's learning-rate scale, and the token
accounting of each training log line and of the run summary, and the plot of each
source's validation perplexity.

Rows per optimizer step: the stream always produces train.global_batch_size rows per step.
With one process that is micro batch x accumulation; with several, accelerate gives an
IterableDataset to process 0 alone (dispatch_batches, its default for iterable datasets),
which reads micro batch x processes rows per micro step and sends each process its slice,
so every process trains on different rows and only process 0's stream moves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from lmforge.data.mixture import MixturePlan, accounting, log_keys
from lmforge.data.streaming import PackedTextStream
from lmforge.errors import LmforgeError


class StreamPosition(TrainerCallback, ExportableState):
    """The stream's state after the rows of the steps trained so far, stored in the
    checkpoint's trainer_state.json: `Trainer._save_checkpoint` asks every ExportableState
    callback for its state while it writes the checkpoint, so the position is inside the
    checkpoint, atomic with it. A resumed Trainer loads trainer_state.json before training
    starts; on_train_begin reads the position back from it. (Not through the Trainer's own
    restore_callback_states_from_checkpoint: that would also restore TrainerControl, whose
    saved should_training_stop ends a run resumed after a preemption at once.)"""

    def __init__(self, stream: PackedTextStream, rows_per_step: int):
        self.stream, self.rows_per_step = stream, rows_per_step
        self.step = 0

    def state(self) -> dict[str, Any]:
        # None on a process that does not read the stream (see the module docstring); only
        # the main process writes trainer_state.json
        return {"args": {}, "attributes": {"saved": self.stream.state_at(self.step * self.rows_per_step)}}

    def on_train_begin(self, args, state, control, **kwargs):
        self.step = state.global_step
        if state.global_step == 0:
            self.stream.resume(None)
            return
        stored = state.stateful_callbacks.get(type(self).__name__)
        saved = stored.get("attributes", {}).get("saved") if isinstance(stored, dict) else None
        if saved is None:
            raise LmforgeError(
                f"data.streaming: the checkpoint of step {state.global_step} holds no stream position "
                "(was it trained without data.streaming?)"
            )
        if saved["rows"] != state.global_step * self.rows_per_step:
            raise LmforgeError(
                f"data.streaming: the checkpoint's stream stopped after {saved['rows']} rows, but step "
                f"{state.global_step} x {self.rows_per_step} rows per step is another count; resume with the "
                "batch size it was trained with"
            )
        self.stream.resume(saved)

    def on_step_end(self, args, state, control, **kwargs):
        self.step = state.global_step


class StreamAccounting(TrainerCallback):
    """Each stage's lr_scale on train.schedule's learning rate, and per source the tokens
    drawn, their share against the target weight and the epochs over the source, on every
    training log line (as mix/<source>/tokens, share, target, epochs; mix/stage is the
    stage's index). Must come before MetricsJsonl, which writes the line."""

    def __init__(self, stream: PackedTextStream, plan: MixturePlan):
        self.stream, self.plan = stream, plan
        self.scaled = any(stage.lr_scale != 1.0 for stage in plan.stages)

    def scale_at(self, step: int) -> float:
        return self.plan.stages[self.plan.stage_at_step(step)].lr_scale

    def on_step_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        # the scheduler sets each group's lr at every step; the stage scales what it set
        if self.scaled and optimizer is not None and lr_scheduler is not None:
            scale = self.scale_at(state.global_step)
            for group, lr in zip(optimizer.param_groups, lr_scheduler.get_last_lr()):
                group["lr"] = lr * scale

    def report(self, step: int) -> dict[str, Any] | None:
        saved = self.stream.state_at(step * self.plan.global_batch)
        return accounting(self.plan, saved, step) if saved is not None else None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        if self.scaled and "learning_rate" in logs:  # the Trainer logs the schedule's value
            logs["learning_rate"] *= self.scale_at(state.global_step - 1)
        report = self.report(state.global_step)
        if report is not None:
            report["stage"] = self.plan.stage_at_step(max(state.global_step - 1, 0))
            logs.update(log_keys(report))

    def final_metrics(self, step: int) -> dict[str, Any]:
        """The run summary's data_mix: the accounting after the last step."""
        report = self.report(step)
        return {"data_mix": report} if report is not None else {}


VAL_PLOT = "val_perplexity.png"


class ValidationPlot(TrainerCallback):
    """After each evaluation, RUN_DIR/val_perplexity.png: every source's validation perplexity
    (eval/<source>/perplexity in metrics.jsonl, which the evaluation's log line has just been
    written to) against the optimizer step, one line per source."""

    def on_evaluate(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            run_dir = Path(args.output_dir)
            plot_val_perplexity(run_dir / "metrics.jsonl", run_dir / VAL_PLOT)


def source_perplexities(rows: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Per source, (step, validation perplexity) of every evaluation row."""
    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith("eval/") and key.endswith("/perplexity"):
                series.setdefault(key[len("eval/") : -len("/perplexity")], []).append((row["step"], value))
    return series


def plot_val_perplexity(metrics_path: Path, png_path: Path) -> Path | None:
    from lmforge.report.plots import plt, read_metrics

    series = source_perplexities(read_metrics(metrics_path))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for name, points in series.items():
        ax.plot(*zip(*points), label=name, marker="o", markersize=3)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation perplexity (held-out documents)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path
