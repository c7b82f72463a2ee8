"""What a model card is made of: the run directory's files, read once (run.json,
config.yaml, metrics.jsonl, model/lmforge.json, eval/*.json) — or, for a model directory
without its run (copied out, exported), the same facts from its lmforge.json, which
report/provenance.py fills — and the facts derived from them that the front matter and
the body share: dataset ids, the title, every evaluation score and the model-index entry.
Rendering is report/model_card.py."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lmforge.errors import LmforgeError
from lmforge.eval.tasks import NAMED
from lmforge.models.loading import looks_local
from lmforge.report.plots import read_metrics
from lmforge.report.provenance import EVAL_DIR, METRICS_FILE, MODEL_META_FILE
from lmforge import rundir

META_FILE = MODEL_META_FILE  # written by train.pipeline.save_final_model, completed by report/provenance.py
HUB_DATASET = "not a local file"  # run.json's data_sha256 of a dataset read from the hub
TASK = {"type": "text-generation", "name": "Text Generation"}


@dataclass
class RunFiles:
    """What a card is made of, read once from the run directory."""

    run_dir: Path
    """The run directory, or the model directory when the card comes from its lmforge.json."""
    run: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    evals: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    eos_token: str | None = None
    name: str | None = None
    """The run's name (its directory's); None: `run_dir`'s own name."""
    config_text: str | None = None
    """config.yaml as written; None: no config."""

    def section(self, *keys: str) -> dict[str, Any]:
        """config.yaml's mapping at a key path ({} when absent or null)."""
        node: Any = self.config
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else {}


@dataclass
class EvalRow:
    source: str
    task: str
    shots: int | None
    metric: str
    value: float
    stderr: float | None = None
    dataset: dict[str, Any] | None = None
    """model-index dataset entry; None: a row for the table only (not this model's weights)."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LmforgeError(f"{path}: not valid JSON ({exc})") from None


def _eos_token(model_dir: Path) -> str | None:
    if not (model_dir / "tokenizer_config.json").is_file():
        return None
    eos = _read_json(model_dir / "tokenizer_config.json").get("eos_token")
    return eos.get("content") if isinstance(eos, dict) else eos


def _results_records(records: list[tuple[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The results records (not e.g. a robustness report) among eval/*.json, by file name."""
    return [
        (name, record) for name, record in records if isinstance(record, dict) and isinstance(record.get("tasks"), list)
    ]


def read_run_files(run_dir: Path, run: dict[str, Any] | None = None) -> RunFiles:
    """The card's inputs; a one-line error unless `run_dir` holds a finished run. `run`:
    the run's finished record before it is written (a finishing run writes run.json last)."""
    if run is not None and run.get("status") != "finished":
        raise LmforgeError(f"{run_dir}: the run is {run.get('status')}; a model card needs a finished run")
    files = RunFiles(run_dir, run if run is not None else rundir.read_finished_run(run_dir, "a model card"))
    files.config = rundir.read_config(run_dir)
    config = run_dir / rundir.CONFIG_FILE
    files.config_text = config.read_text(encoding="utf-8") if config.is_file() else None
    model_dir = run_dir / rundir.MODEL_DIR
    if (model_dir / META_FILE).is_file():
        files.meta = _read_json(model_dir / META_FILE)
    files.eos_token = _eos_token(model_dir)
    files.metrics = read_metrics(run_dir / METRICS_FILE)
    files.evals = _results_records(
        [(path.name, _read_json(path)) for path in sorted((run_dir / EVAL_DIR).glob("*.json"))]
    )
    return files


def is_described_model(directory: Path) -> bool:
    """A model directory whose lmforge.json carries its run (report/provenance.py)."""
    path = Path(directory) / META_FILE
    return (
        path.is_file()
        and not (Path(directory) / rundir.RUN_FILE).is_file()
        and isinstance(_read_json(path).get("run"), dict)
    )


def read_model_files(model_dir: Path) -> RunFiles:
    """The card's inputs from a model directory alone (its run directory gone): the run's
    record, config, evaluation scores and name as its lmforge.json carries them."""
    model_dir = Path(model_dir)
    meta = _read_json(model_dir / META_FILE) if (model_dir / META_FILE).is_file() else {}
    run = meta.get("run")
    if not isinstance(run, dict):
        raise LmforgeError(
            f"{model_dir}: {META_FILE} does not say which run made the model (no 'run' record: "
            "an older lmforge wrote it); make the card from its run directory"
        )
    if run.get("status") != "finished":
        raise LmforgeError(f"{model_dir}: the run is {run.get('status')}; a model card needs a finished run")
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    evals = meta.get("evals") if isinstance(meta.get("evals"), dict) else {}
    return RunFiles(
        model_dir,
        run,
        config=config,
        meta=meta,
        metrics=list(meta.get("training_evals") or []),
        evals=_results_records(sorted(evals.items())),
        eos_token=_eos_token(model_dir),
        name=meta.get("run_name"),
        config_text=yaml.safe_dump(config, sort_keys=False) if config else None,
    )


def read_card_files(directory: Path, run: dict[str, Any] | None = None) -> RunFiles:
    """A run directory's card inputs (`run`: its record, when not yet written), or a
    self-describing model directory's."""
    directory = Path(directory)
    return read_model_files(directory) if is_described_model(directory) else read_run_files(directory, run)


# ------------------------------------------------------------------------ derived facts


def hub_base_model(name_or_path: str | None) -> str | None:
    """The base model as a hub id (owner/name), or None for a fresh model or a local one."""
    if not name_or_path or looks_local(name_or_path) or name_or_path.endswith(".gguf"):
        return None
    return name_or_path


def dataset_entries(files: RunFiles) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(config entry, run.json report) per dataset, matched by name (a report's name
    defaults to the file name, as data.pipeline names it); either may be {}."""
    entries = files.section("data").get("datasets") or []
    reports = {r.get("name") or Path(r.get("path", "")).name: r for r in files.run.get("data") or []}
    pairs = [(entry, reports.pop(entry.get("name") or Path(entry.get("path", "")).name, {})) for entry in entries]
    return pairs + [({}, report) for report in reports.values()]


def dataset_id(entry: dict[str, Any], report: dict[str, Any], hashes: dict[str, str]) -> str:
    """A hub dataset's id; a local file's name (its path says nothing on the hub)."""
    path = entry.get("path") or report.get("path") or ""
    if hashes.get(path) == HUB_DATASET:
        return path
    return entry.get("name") or report.get("name") or Path(path).name


def dataset_ids(files: RunFiles) -> list[str]:
    """The front matter's `datasets`: hub ids, or the names of local files."""
    hashes = files.run.get("data_sha256") or {}
    return [dataset_id(entry, report, hashes) for entry, report in dataset_entries(files)]


def quantize_bits(value: Any) -> int | None:
    digits = "".join(ch for ch in str(value) if ch.isdigit())
    return int(digits) if digits in ("4", "8") else None


def is_adapter_artifact(files: RunFiles, export: dict[str, Any] | None) -> bool:
    """The artifact is a peft adapter (not merged into its base)."""
    return bool(files.section("model", "adapter")) and not (export or {}).get("merged")


def title(files: RunFiles) -> str:
    """run.card.model_name, else the run directory's name."""
    return files.section("run", "card").get("model_name") or files.name or files.run_dir.resolve().name


# ------------------------------------------------------------------------ evaluation


def evaluation_rows(files: RunFiles) -> list[EvalRow]:
    """Every score the run holds: the final validation loss, the tasks evaluated during
    training (their last scores), and each `lmforge eval` record in RUN_DIR/eval/."""
    rows: list[EvalRow] = []
    final = files.run.get("final_metrics") or {}
    validation = {
        "name": "validation split of the training data",
        "type": "+".join(dataset_ids(files)) or "data",
        "split": "validation",
    }
    for key, metric in (("eval_loss", "loss"), ("eval_perplexity", "perplexity")):
        if isinstance(final.get(key), (int, float)):
            rows.append(
                EvalRow("validation split, end of training", "validation", None, metric, final[key], dataset=validation)
            )
    for entry in files.section("train").get("eval_tasks") or []:
        name = Path(str(entry.get("task", ""))).stem
        prefix = f"eval_{name}_"
        logged = [row for row in files.metrics if any(k.startswith(prefix) for k in row)]
        if logged:
            last = logged[-1]
            rows += [
                EvalRow(
                    f"during training, step {last.get('step')}", name, entry.get("shots"), key[len(prefix) :], value
                )
                for key, value in last.items()
                if key.startswith(prefix) and isinstance(value, (int, float))
            ]
    for file_name, record in files.evals:
        step = (record.get("model") or {}).get("step")
        source = f"lmforge eval ({file_name}" + (f", checkpoint step {step})" if step is not None else ")")
        for task in record["tasks"]:
            dataset = None if step is not None else _task_dataset(task)
            metrics = task.get("metrics") or {}
            for metric, value in metrics.items():
                if metric.endswith("_stderr") or metric in ("n", "tokens"):  # shown beside / not scores
                    continue
                stderr = metrics.get(f"{metric}_stderr")
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    rows.append(
                        EvalRow(
                            source,
                            task.get("name", "?"),
                            task.get("shots"),
                            metric,
                            value,
                            stderr if isinstance(stderr, float) and math.isfinite(stderr) else None,
                            dataset,
                        )
                    )
    return rows


def _task_dataset(task: dict[str, Any]) -> dict[str, Any]:
    name = task.get("name", "?")
    known = NAMED.get(task.get("source", ""))
    dataset: dict[str, Any] = {"name": name, "type": known[0] if known else name}
    if known:
        dataset.update({"config": known[1], "split": known[2]} if known[1] else {"split": known[2]})
    if task.get("shots"):
        dataset["args"] = {"num_few_shot": task["shots"]}
    return dataset


def model_index(files: RunFiles, rows: list[EvalRow]) -> list[dict[str, Any]]:
    """The official `model-index` entry: one result per (evaluation, task) of this model."""
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        if row.dataset is None:
            continue
        result = results.setdefault((row.source, row.task), {"task": dict(TASK), "dataset": row.dataset, "metrics": []})
        shots = f", {row.shots}-shot" if row.shots else ""
        result["metrics"].append(
            {"type": row.metric, "value": round(float(row.value), 4), "name": f"{row.metric} ({row.task}{shots})"}
        )
    return [{"name": title(files), "results": list(results.values())}] if results else []
