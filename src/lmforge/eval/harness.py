"""Bridge to lm-evaluation-harness (0.4.x): write task YAMLs over local data files and run
`lm_eval` on a checkpoint, offline.

lmforge renders every prompt itself (few-shot examples, prompt format, BOS) and writes one
JSONL row per item with the finished context, so the harness scores exactly the prompts
lmforge's own evaluator scores; the YAML then asks for 0 shots. What the harness adds is
its own tokenization, batching, log-likelihoods, generation, filters and metrics: the
independent implementation people quote. Layout under the output's folder:

    <results>.harness/
      tasks/<task>.yaml, tasks/<task>.jsonl     what the harness reads
      output/                                   the harness's own results and samples
      hf_datasets/                              a private datasets cache (no network)
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from lmforge.errors import LmforgeError
from lmforge.eval import results
from lmforge.eval.checkpoint import resolve
from lmforge.eval.evaluate import EvalOptions, generation_limit
from lmforge.eval.fewshot import default_style, draw_shots, make_style
from lmforge.eval.tasks import Task

# The harness's GSM8K scoring (tasks/gsm8k/gsm8k.yaml, 0.4.x), applied to our answers.
GSM8K_METRIC = {
    "metric": "exact_match",
    "aggregation": "mean",
    "higher_is_better": True,
    "ignore_case": True,
    "ignore_punctuation": False,
    "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"],
}
GSM8K_FILTERS = [
    {
        "name": "strict-match",
        "filter": [{"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"}, {"function": "take_first"}],
    },
    {
        "name": "flexible-extract",
        "filter": [
            {"function": "regex", "group_select": -1, "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)"},
            {"function": "take_first"},
        ],
    },
]
# harness metric key -> lmforge metric name
METRIC_NAMES = {
    "acc,none": "acc",
    "acc_norm,none": "acc_norm",
    "acc_bytes,none": "acc_bytes",
    "exact_match,strict-match": "exact_match_strict",
    "exact_match,flexible-extract": "exact_match_flexible",
    "bleu,none": "bleu",
    "chrf,none": "chrf",
    "word_perplexity,none": "word_perplexity",
    "byte_perplexity,none": "byte_perplexity",
    "bits_per_byte,none": "bits_per_byte",
}
OFFLINE_ENV = {
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_EVALUATE_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def _rows_and_config(
    task: Task, contexts: list[str], delimiter: str, stops: list[str], options: EvalOptions
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The materialized rows and the kind-specific part of the YAML."""
    if task.kind == "multiple_choice":
        rows = [{"query": c, "choices": list(i.choices), "gold": i.gold} for i, c in zip(task.items, contexts)]
        return rows, {
            "output_type": "multiple_choice",
            "doc_to_text": "query",
            "doc_to_choice": "choices",
            "doc_to_target": "gold",
            "target_delimiter": delimiter,
            "metric_list": [
                {"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm", "acc_bytes")
            ],
        }
    generation = {"until": stops, "do_sample": False, "max_gen_toks": generation_limit(task, options)}
    if task.kind == "generate":
        rows = [{"query": c, "gold": i.gold} for i, c in zip(task.items, contexts)]
        return rows, {
            "output_type": "generate_until",
            "doc_to_text": "query",
            "doc_to_target": "gold",
            "generation_kwargs": generation,
            "metric_list": [GSM8K_METRIC],
            "filter_list": GSM8K_FILTERS,
        }
    if task.kind == "translation":
        rows = [{"query": c, "gold": i.gold} for i, c in zip(task.items, contexts)]
        return rows, {
            "output_type": "generate_until",
            "doc_to_text": "query",
            "doc_to_target": "gold",
            "generation_kwargs": generation,
            "metric_list": [{"metric": m, "aggregation": m, "higher_is_better": True} for m in ("bleu", "chrf")],
        }
    if task.kind == "perplexity" and all(i.text is not None for i in task.items):
        rows = [{"text": i.text} for i in task.items]
        return rows, {
            "output_type": "loglikelihood_rolling",
            "doc_to_text": "",
            "doc_to_target": "text",
            "metric_list": [{"metric": m} for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")],
        }
    raise LmforgeError(
        f"{task.source}: the harness bridge covers multiple_choice, generate, translation and text "
        f"perplexity tasks, not {task.kind}{' on chat records' if task.kind == 'perplexity' else ''}"
    )


def write_task(task: Task, tokenizer, meta: dict, options: EvalOptions, directory: Path) -> str:
    """Write `<task>.jsonl` and `<task>.yaml` into `directory`; returns the harness task name."""
    style = make_style(options.style or default_style(meta), tokenizer, meta)
    shots = draw_shots(task, options.shots, options.seed, options.fewshot_sampler) if task.kind != "perplexity" else []
    contexts = [style.context(s, item, task.layout) for s, item in zip(shots, task.items)]
    stops = style.stop_strings(task.layout)
    rows, kind_config = _rows_and_config(task, contexts, style.target_delimiter(task.layout), stops, options)
    name = f"lmforge_{task.name}".replace("-", "_").replace(".", "_")
    data = directory / f"{name}.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "test_split": "test",
        "num_fewshot": 0,
        **kind_config,
        "metadata": {"version": 1.0},
    }
    (directory / f"{name}.yaml").write_text(
        yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    return name


def _error_line(stderr: str) -> str:
    """The most telling line of a failed harness run: its last exception line, else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line.split(":")[0] or line.startswith("error")]
    return (errors or lines or ["no output"])[-1][:500]


def harness_command(
    source, task_names: list[str], tasks_dir: Path, output_dir: Path, options: EvalOptions, max_length: int
) -> list[str]:
    model_args = (
        f"pretrained={source.weights_dir.resolve()},tokenizer={source.tokenizer_dir.resolve()},"
        f"dtype=float32,max_length={max_length}"
    )
    device = "cuda" if _cuda() else "cpu"
    return [
        sys.executable,
        "-m",
        "lm_eval",
        "run",
        "--model",
        "hf",
        "--model_args",
        model_args,
        "--tasks",
        ",".join(task_names),
        "--include_path",
        str(tasks_dir.resolve()),
        "--batch_size",
        str(options.batch_size),
        "--device",
        device,
        "--output_path",
        str(output_dir.resolve()),
        "--log_samples",
    ]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run_harness(
    model_dir: str | Path, tasks: list[Task], options: EvalOptions, output: Path, timeout: float | None = None
) -> dict[str, Any]:
    """Run the harness on `tasks`; results JSON at `output` (metrics under lmforge's names,
    plus the harness's own file), the harness's samples beside it."""
    if importlib.util.find_spec("lm_eval") is None:
        raise LmforgeError("--harness needs lm-evaluation-harness: pip install 'lmforge[eval]'")
    from transformers import AutoConfig

    from lmforge.eval.loglik import config_max_length
    from lmforge.models.loading import load_tokenizer

    source = resolve(model_dir)
    tokenizer = load_tokenizer(str(source.tokenizer_dir), key=str(source.tokenizer_dir))
    max_length = config_max_length(AutoConfig.from_pretrained(source.weights_dir))
    work = output.with_suffix(".harness")
    tasks_dir, out_dir = work / "tasks", work / "output"
    tasks_dir.mkdir(parents=True, exist_ok=True)
    names = [write_task(task, tokenizer, source.meta, options, tasks_dir) for task in tasks]
    env = {**os.environ, **OFFLINE_ENV, "HF_DATASETS_CACHE": str((work / "hf_datasets").resolve())}
    start = time.perf_counter()
    try:
        done = subprocess.run(
            harness_command(source, names, tasks_dir, out_dir, options, max_length),
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise LmforgeError(f"lm-evaluation-harness did not finish within {timeout:.0f} s") from None
    (work / "harness.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    if done.returncode != 0:
        raise LmforgeError(
            f"lm-evaluation-harness failed (exit {done.returncode}): {_error_line(done.stderr)} "
            f"(full log: {work / 'harness.log'})"
        )
    seconds = time.perf_counter() - start
    found = sorted(out_dir.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise LmforgeError(f"lm-evaluation-harness wrote no results under {out_dir} (log: {work / 'harness.log'})")
    harness = json.loads(found[-1].read_text(encoding="utf-8"))
    task_records, samples = [], {}
    for task, name in zip(tasks, names):
        raw = harness["results"].get(name, {})
        found_metrics = {}
        for key, value in raw.items():  # "acc,none", "acc_stderr,none", "exact_match,strict-match", ...
            base = METRIC_NAMES.get(key.replace("_stderr", ""))
            if base is not None:
                name_out = base + ("_stderr" if "_stderr" in key else "")
                found_metrics[name_out] = value if isinstance(value, (int, float)) else None
        found_metrics["n"] = len(task.items)
        style = options.style or default_style(source.meta)
        task_records.append({**_task_fields(task, options, style), "metrics": found_metrics, "harness_task": name})
        samples[task.name] = _harness_samples(found[-1].parent, name)
    record = results.build(results.model_record(source), task_records, seconds)
    record["harness"] = {
        "results_file": str(found[-1]),
        "tasks_dir": str(tasks_dir),
        "command": " ".join(harness_command(source, names, tasks_dir, out_dir, options, max_length)),
    }
    results.write(output, record, samples)
    return record


def _task_fields(task: Task, options: EvalOptions, style: str) -> dict[str, Any]:
    from lmforge.eval.evaluate import TaskResult

    return results.task_record(task, options, TaskResult({}, [], style))


def _harness_samples(directory: Path, name: str) -> list[dict[str, Any]]:
    files = sorted(directory.glob(f"samples_{name}_*.jsonl"), key=lambda p: p.stat().st_mtime)
    if not files:
        return []
    rows = [json.loads(line) for line in files[-1].read_text(encoding="utf-8").splitlines() if line.strip()]
    return sorted(
        (
            {
                k: r.get(k)
                for k in (
                    "doc_id",
                    "arguments",
                    "resps",
                    "filtered_resps",
                    "filter",
                    "acc",
                    "acc_norm",
                    "acc_bytes",
                    "exact_match",
                    "target",
                )
                if k in r
            }
            for r in rows
        ),
        key=lambda r: (r.get("doc_id", 0), str(r.get("filter"))),
    )
