"""`lmforge eval`: load a checkpoint once, run each task, write one results JSON (plus the
per-item samples) and return the record."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lmforge.errors import LmforgeError
from lmforge.eval import results
from lmforge.eval.checkpoint import LoadedModel, load_checkpoint
from lmforge.eval.evaluate import EvalOptions, check_code_execution, evaluate_task
from lmforge.eval.fewshot import draw_shots
from lmforge.eval.tasks import Task, load_task


def load_tasks(specs: list[str], fewshot: str | None = None, limit: int | None = None, **options: Any) -> list[Task]:
    return [load_task(spec, fewshot=fewshot, limit=limit, **options) for spec in specs]


def evaluate_loaded(
    loaded: LoadedModel, tasks: list[Task], options: EvalOptions, hashes: bool = True
) -> tuple[dict[str, Any], dict[str, list[dict]]]:
    """(results record, samples by task name) for an already loaded model."""
    start = time.perf_counter()
    task_records, samples = [], {}
    for task in tasks:
        task_start = time.perf_counter()
        result = evaluate_task(loaded.model, loaded.tokenizer, loaded.meta, task, options)
        record = results.task_record(task, options, result)
        record["metrics"] = result.metrics
        record["wall_seconds"] = round(time.perf_counter() - task_start, 3)
        task_records.append(record)
        samples[task.name] = result.samples
    return results.build(
        results.model_record(loaded.source, hashes), task_records, time.perf_counter() - start
    ), samples


def check_tasks(tasks: list[Task], options: EvalOptions) -> None:
    """Fail on few-shot problems before a model is loaded."""
    for task in tasks:
        check_code_execution(task, options)
        if task.kind == "perplexity" and options.shots:
            raise LmforgeError(
                f"--shots {options.shots}: {task.source} is a perplexity task, which takes no few-shot examples"
            )
        draw_shots(task, options.shots, options.seed, options.fewshot_sampler)


def run_eval(model_dir: str | Path, tasks: list[Task], options: EvalOptions, output: Path | None) -> dict[str, Any]:
    check_tasks(tasks, options)
    loaded = load_checkpoint(model_dir, allow_pickle=options.allow_pickle)
    record, samples = evaluate_loaded(loaded, tasks, options)
    if output is not None:
        results.write(output, record, samples)
    return record


def default_output(model_dir: str | Path, tasks: list[Task], suffix: str = "") -> Path:
    model = Path(model_dir).resolve()
    name = model.parent.name if model.name == "model" else model.name
    return Path("eval_results") / f"{name}-{'+'.join(t.name for t in tasks)}{suffix}.json"
