"""`lmforge sweep`: evaluate every checkpoint-N/ of a run on the same tasks and prompts, to
see where under-training turns into over-training (seed 002), and pick the best.

    RUN_DIR/sweep/
      sweep.md, sweep.json      one row per checkpoint, the best marked
      sweep.png                 the chosen metric against step
      checkpoint-N.json         each checkpoint's full results (+ .samples.jsonl)
    RUN_DIR/best/               with --copy-best: the best checkpoint as a model directory
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from lmforge.errors import LmforgeError
from lmforge.eval import results
from lmforge.checkpoints import LMFORGE_STATE, MANIFEST, candidates, checkpoint_step
from lmforge.eval.checkpoint import MODEL_META_FILE, TOKENIZER_FILES, load_checkpoint, resolve
from lmforge.eval.evaluate import EvalOptions
from lmforge.eval.runner import check_tasks, evaluate_loaded
from lmforge.eval.tasks import LOWER_IS_BETTER, Task
from lmforge.models.adapters import BASE_DIR, is_adapter_dir
from lmforge.report.plots import plot_metric_vs_step
from lmforge.rundir import write_json_atomic

SWEEP_DIR = "sweep"
BEST_DIR = "best"
# Trainer state a standalone model directory does not need.
_NOT_COPIED = ("optimizer.pt", "scheduler.pt", "rng_state*.pth", "training_args.bin", MANIFEST, LMFORGE_STATE)


def list_checkpoints(run_dir: Path) -> list[Path]:
    if not run_dir.is_dir():
        raise LmforgeError(f"{run_dir}: run directory does not exist")
    found = candidates(run_dir)[::-1]  # oldest first; only complete saves carry the name
    if not found:
        raise LmforgeError(f"{run_dir}: no checkpoint-N directories to sweep (set train.save_every)")
    return found


def choose_metric(tasks: list[Task], metric: str | None) -> tuple[str, str]:
    """(task name, metric): `--metric acc_norm` means the first task's, `arc:acc_norm` names the task."""
    if metric is None:
        return tasks[0].name, tasks[0].primary_metric
    task_name, _, name = metric.rpartition(":")
    task_name = task_name or tasks[0].name
    if task_name not in {t.name for t in tasks}:
        raise LmforgeError(
            f"--metric {metric}: no task named {task_name!r} (tasks: {', '.join(t.name for t in tasks)})"
        )
    return task_name, name


def _value(row: dict[str, Any], task_name: str, metric: str) -> float | None:
    value = row["metrics"].get(task_name, {}).get(metric)
    return value if isinstance(value, (int, float)) else None


def pick_best(rows: list[dict[str, Any]], task_name: str, metric: str) -> dict[str, Any]:
    """The row with the best value; a tie goes to the earliest step (less training, same score)."""
    scored = [r for r in rows if _value(r, task_name, metric) is not None]
    if not scored:
        available = sorted(rows[0]["metrics"].get(task_name, {}))
        raise LmforgeError(f"--metric {metric}: task {task_name} has no such metric (it has: {', '.join(available)})")
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    return max(scored, key=lambda r: (sign * _value(r, task_name, metric), -r["step"]))


def sweep_markdown(rows: list[dict[str, Any]], best: dict[str, Any], task_name: str, metric: str) -> str:
    columns = [
        (t, m)
        for t, metrics in rows[0]["metrics"].items()
        for m in metrics
        if not m.endswith("_stderr") and m not in ("n", "tokens")
    ]
    header = "| step | " + " | ".join(f"{t} {m}" for t, m in columns) + " |"
    lines = [
        f"Checkpoint sweep; best by {task_name} {metric}: step {best['step']}",
        "",
        header,
        "|---:|" + "---:|" * len(columns),
    ]
    for row in rows:
        cells = [results.format_value(m, row["metrics"][t].get(m)) for t, m in columns]
        mark = " **best**" if row is best else ""
        lines.append(f"| {row['step']}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def copy_best(checkpoint: Path, run_dir: Path) -> Path:
    """The checkpoint as a standalone model directory (weights, tokenizer, lmforge.json),
    written beside and moved into place only when complete."""
    source = resolve(checkpoint)
    target, staging = run_dir / BEST_DIR, run_dir / (BEST_DIR + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(checkpoint, staging, ignore=shutil.ignore_patterns(*_NOT_COPIED))
    if source.tokenizer_dir != checkpoint:
        for path in source.tokenizer_dir.iterdir():
            if path.name in TOKENIZER_FILES or path.name.startswith(("special_tokens", "chat_template")):
                shutil.copy2(path, staging / path.name)
    fresh_base = run_dir / BASE_DIR
    if is_adapter_dir(checkpoint) and fresh_base.is_dir():  # a freshly built base travels with its adapter
        shutil.copytree(fresh_base, staging / BASE_DIR)
    if source.meta and not (staging / MODEL_META_FILE).is_file():
        (staging / MODEL_META_FILE).write_text(json.dumps(source.meta, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target


def run_sweep(
    run_dir: Path, tasks: list[Task], options: EvalOptions, metric: str | None = None, copy: bool = False
) -> dict[str, Any]:
    task_name, metric_name = choose_metric(tasks, metric)
    check_tasks(tasks, options)
    checkpoints = list_checkpoints(run_dir)
    out_dir = run_dir / SWEEP_DIR
    out_dir.mkdir(exist_ok=True)
    rows = []
    for checkpoint in checkpoints:
        record, samples = evaluate_loaded(
            load_checkpoint(checkpoint, allow_pickle=options.allow_pickle), tasks, options
        )
        results.write(out_dir / f"{checkpoint.name}.json", record, samples)
        rows.append(
            {
                "step": checkpoint_step(checkpoint),
                "path": str(checkpoint),
                "metrics": {t["name"]: t["metrics"] for t in record["tasks"]},
                "wall_seconds": record["wall_seconds"],
            }
        )
        print(
            f"[lmforge] {checkpoint.name}: {task_name} {metric_name} "
            f"{results.format_value(metric_name, _value(rows[-1], task_name, metric_name))}"
        )
    best = pick_best(rows, task_name, metric_name)
    table = sweep_markdown(rows, best, task_name, metric_name)
    points = [
        (r["step"], _value(r, task_name, metric_name)) for r in rows if _value(r, task_name, metric_name) is not None
    ]
    png = plot_metric_vs_step(
        {f"{task_name} {metric_name}": points},
        metric_name,
        out_dir / "sweep.png",
        best=(best["step"], _value(best, task_name, metric_name)),
        title=f"checkpoint sweep of {run_dir.name}",
    )
    report = {
        "run_dir": str(run_dir),
        "task": task_name,
        "metric": metric_name,
        "rows": rows,
        "best": {"step": best["step"], "path": best["path"], "value": _value(best, task_name, metric_name)},
        "tasks": [{"name": t.name, "source": t.source, "sha256": t.sha256} for t in tasks],
        "shots": options.shots,
        "fewshot_seed": options.seed,
        "prompt_format": options.style,
        "versions": results.versions(),
    }
    if copy:
        report["best"]["copied_to"] = str(copy_best(Path(best["path"]), run_dir))
    (out_dir / "sweep.md").write_text(table, encoding="utf-8")
    write_json_atomic(out_dir / "sweep.json", report)
    report["markdown"] = table
    report["paths"] = {"json": str(out_dir / "sweep.json"), "markdown": str(out_dir / "sweep.md"), "png": str(png)}
    return report
