"""Format robustness (seed 002's aim): the same tasks, model and few-shot examples under
several prompt formats; per-format scores and their spread (max - min) and sd."""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from lmforge.errors import LmforgeError
from lmforge.eval import results
from lmforge.eval.checkpoint import load_checkpoint
from lmforge.eval.evaluate import EvalOptions
from lmforge.eval.fewshot import check_style
from lmforge.eval.runner import check_tasks, evaluate_loaded
from lmforge.eval.tasks import Task


def spread(values: dict[str, float]) -> dict[str, float]:
    """Summary of one metric over formats.

    >>> spread({"plain": 0.5, "remask": 0.75, "openassistant": 0.25})
    {'mean': 0.5, 'sd': 0.25, 'min': 0.25, 'max': 0.75, 'spread': 0.5}
    """
    vals = list(values.values())
    return {
        "mean": statistics.fmean(vals),
        "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        "min": min(vals),
        "max": max(vals),
        "spread": max(vals) - min(vals),
    }


def run_robustness(
    model_dir: str | Path, tasks: list[Task], options: EvalOptions, formats: list[str], output: Path
) -> dict[str, Any]:
    if len(formats) < 2:
        raise LmforgeError(f"--format {','.join(formats)}: give at least two prompt formats to compare")
    for name in formats:
        check_style(name)
    check_tasks(tasks, options)
    loaded = load_checkpoint(model_dir, allow_pickle=options.allow_pickle)
    if "chat_template" in formats and not getattr(loaded.tokenizer, "chat_template", None):
        raise LmforgeError(
            f"--format chat_template: the tokenizer in {loaded.source.tokenizer_dir} has no chat_template"
        )
    start = time.perf_counter()
    per_format: dict[str, dict[str, Any]] = {}
    for name in formats:
        record, samples = evaluate_loaded(loaded, tasks, replace(options, style=name))
        per_format[name] = {t["name"]: t["metrics"] for t in record["tasks"]}
        results.write(output.with_name(f"{output.stem}.{name}.json"), record, samples)
    summary = {}
    for task in tasks:
        scores = {name: per_format[name][task.name][task.primary_metric] for name in formats}
        summary[task.name] = {"metric": task.primary_metric, "per_format": scores, **spread(scores)}
    report = {
        "model": results.model_record(loaded.source),
        "formats": formats,
        "shots": options.shots,
        "fewshot_seed": options.seed,
        "tasks": [{"name": t.name, "source": t.source, "sha256": t.sha256} for t in tasks],
        "summary": summary,
        "metrics": per_format,
        "wall_seconds": round(time.perf_counter() - start, 3),
        "versions": results.versions(),
    }
    results.write(output, report)  # each format's own file holds its samples
    return report


def robustness_markdown(report: dict[str, Any]) -> str:
    formats = report["formats"]
    lines = [
        "| task | metric | " + " | ".join(formats) + " | mean | spread | sd |",
        "|---|---|" + "---:|" * (len(formats) + 3),
    ]
    for name, row in report["summary"].items():
        metric = row["metric"]
        cells = [results.format_value(metric, row["per_format"][f]) for f in formats]
        cells += [results.format_value(metric, row[k]) for k in ("mean", "spread", "sd")]
        lines.append(f"| {name} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
