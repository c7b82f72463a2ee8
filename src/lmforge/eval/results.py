"""The results record of an evaluation: metrics with everything needed to trust and
reproduce them (model and data hashes, few-shot seed and count, prompt format, library
versions, wall time), written as JSON beside a JSONL of per-item samples."""

from __future__ import annotations

import datetime as dt
import json
import math
from importlib import metadata
from pathlib import Path
from typing import Any

from lmforge.eval.checkpoint import ModelSource, weights_sha256
from lmforge.eval.evaluate import EvalOptions, TaskResult, generation_limit
from lmforge.eval.tasks import Task
from lmforge.rundir import library_versions, write_json_atomic

EVAL_LIBRARIES = ("sacrebleu", "lm_eval")


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name.replace("_", "-"))
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str]:
    """The training libraries' versions (as run.json has them) plus the evaluation ones."""
    extra = {name: _installed_version(name) for name in EVAL_LIBRARIES}
    return {**library_versions(), **{name: v for name, v in extra.items() if v is not None}}


def model_record(source: ModelSource, hashes: bool = True) -> dict[str, Any]:
    return {
        "path": str(source.weights_dir),
        "tokenizer": str(source.tokenizer_dir),
        "step": source.step,
        "prompt_format": source.meta.get("prompt_format"),
        **({"sha256": weights_sha256(source.weights_dir)} if hashes else {}),
    }


GENERATING_KINDS = ("generate", "answer_phrase", "code", "translation", "qa")


def task_record(task: Task, options: EvalOptions, result: TaskResult) -> dict[str, Any]:
    return {
        "name": task.name,
        "kind": task.kind,
        "source": task.source,
        "sha256": task.sha256,
        "items": len(task.items),
        "shots": options.shots,
        "fewshot_seed": options.seed if options.shots else None,
        "fewshot_source": task.pool_source if options.shots else None,
        "fewshot_sha256": task.pool_sha256 if options.shots else None,
        "prompt_format": result.style,
        "primary_metric": task.primary_metric,
        "fewshot_sampler": (options.fewshot_sampler or task.layout.sampler) if options.shots else None,
        "max_new_tokens": generation_limit(task, options) if task.kind in GENERATING_KINDS else None,
        **(
            {"samples_per_item": options.samples, "temperature": options.temperature if options.samples > 1 else 0.0}
            if task.kind == "code"
            else {}
        ),
        "options": task.options,
        **({"groups": result.groups} if result.groups else {}),
    }


def build(model: dict[str, Any], tasks: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    return {
        "lmforge_eval": 1,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model,
        "tasks": tasks,
        "wall_seconds": round(seconds, 3),
        "versions": versions(),
    }


def write(path: Path, record: dict[str, Any], samples: dict[str, list[dict[str, Any]]] | None = None) -> Path:
    """results JSON at `path`; samples (when given) as `<stem>.samples.jsonl` beside it, one
    line per item with its task's name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # NaN (e.g. the stderr of one item) is not JSON: write null
    write_json_atomic(path, json.loads(json.dumps(record, default=str), parse_constant=lambda _: None))
    if samples is None:
        return path
    with path.with_suffix(".samples.jsonl").open("w", encoding="utf-8") as handle:
        for name, rows in samples.items():
            for row in rows:
                handle.write(json.dumps({"task": name, **row}, default=str) + "\n")
    return path


def format_value(name: str, value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return "n/a"
    if name.startswith(("acc", "exact_match", "f1")):
        return f"{100 * value:.2f}%"
    return f"{value:.4g}"


def markdown(record: dict[str, Any]) -> str:
    lines = [
        f"model: {record['model']['path']}",
        "",
        "| task | kind | shots | format | metric | value |",
        "|---|---|---:|---|---|---:|",
    ]
    for task in record["tasks"]:
        for name, value in task["metrics"].items():
            if name.endswith("_stderr") or name in ("n", "tokens"):
                continue
            stderr = task["metrics"].get(f"{name}_stderr")
            shown = format_value(name, value) + (
                f" ± {format_value(name, stderr)}" if isinstance(stderr, float) and math.isfinite(stderr) else ""
            )
            lines.append(
                f"| {task['name']} | {task['kind']} | {task['shots']} | {task['prompt_format']} | {name} | {shown} |"
            )
    return "\n".join(lines) + "\n"
