"""`lmforge eval compare A.json B.json ...`: several results files (of `lmforge eval`, its
`--harness` mode or a sweep's checkpoints) as one table of tasks × models with standard
errors, and a grouped bar chart of the primary metrics — the seed cards' tables, made from
results files."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.errors import LmforgeError
from lmforge.eval.results import format_value

HIDDEN_METRICS = ("n", "tokens")


@dataclass(frozen=True)
class Row:
    """One (task, shots, format, metric) line of the table; a model that lacks it is None."""

    task: str
    shots: int
    prompt_format: str
    metric: str
    primary: bool
    cells: tuple[tuple[float, float | None] | None, ...]


def load_records(paths: list[str]) -> list[dict[str, Any]]:
    if len(paths) < 2:
        raise LmforgeError("eval compare: give at least two results files")
    records = []
    for path in map(Path, paths):
        if not path.is_file():
            raise LmforgeError(f"{path}: no such results file")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LmforgeError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(record, dict) or "lmforge_eval" not in record or not isinstance(record.get("tasks"), list):
            raise LmforgeError(f"{path}: not an lmforge eval results file (no lmforge_eval / tasks keys)")
        records.append(record)
    return records


def model_labels(paths: list[str], records: list[dict[str, Any]]) -> list[str]:
    """Each column's name: the model directory's name (with its step for a checkpoint), or
    the results file's name when two models would share one.

    >>> model_labels(["a.json", "b.json"], [{"model": {"path": "runs/x/model"}}, {"model": {"path": "runs/y/model"}}])
    ['x', 'y']
    """

    def name(record: dict[str, Any]) -> str:
        model = Path(record.get("model", {}).get("path", "?"))
        return model.parent.name if model.name == "model" else model.name

    labels = [name(record) for record in records]
    if len(set(labels)) < len(labels):
        labels = [Path(path).stem for path in paths]
    return labels


def comparison_rows(records: list[dict[str, Any]]) -> list[Row]:
    """Every metric any file reports, in first-seen order; a missing cell is None."""
    keys: list[tuple[str, int, str, str]] = []
    values: list[dict[tuple[str, int, str, str], tuple[float, float | None]]] = []
    primary: set[tuple[str, int, str, str]] = set()
    for record in records:
        cells = {}
        for task in record["tasks"]:
            for metric, value in task.get("metrics", {}).items():
                if metric.endswith("_stderr") or metric in HIDDEN_METRICS or not isinstance(value, (int, float)):
                    continue
                key = (task["name"], task.get("shots", 0), task.get("prompt_format") or "", metric)
                if key not in keys:
                    keys.append(key)
                if metric == task.get("primary_metric"):
                    primary.add(key)
                stderr = task["metrics"].get(f"{metric}_stderr")
                cells[key] = (float(value), float(stderr) if isinstance(stderr, (int, float)) else None)
        values.append(cells)
    return [Row(*key, key in primary, tuple(cells.get(key) for cells in values)) for key in keys]


def _cell(metric: str, cell: tuple[float, float | None] | None) -> str:
    if cell is None:
        return "—"
    value, stderr = cell
    shown = format_value(metric, value)
    return shown + (f" ± {format_value(metric, stderr)}" if stderr is not None and math.isfinite(stderr) else "")


def compare_markdown(labels: list[str], rows: list[Row]) -> str:
    lines = [
        "| task | shots | format | metric | " + " | ".join(labels) + " |",
        "|---|---:|---|---|" + "---:|" * len(labels),
    ]
    for row in rows:
        cells = " | ".join(_cell(row.metric, cell) for cell in row.cells)
        lines.append(f"| {row.task} | {row.shots} | {row.prompt_format} | {row.metric} | {cells} |")
    return "\n".join(lines) + "\n"


def run_compare(paths: list[str], output: Path) -> tuple[str, Path]:
    """The table (also written as `<output stem>.md`) and the PNG of primary metrics."""
    from lmforge.report.plots import plot_grouped_bars

    records = load_records(paths)
    labels, rows = model_labels(paths, records), comparison_rows(records)
    if not rows:
        raise LmforgeError(f"eval compare: none of {', '.join(paths)} holds a metric")
    table = compare_markdown(labels, rows)
    output.parent.mkdir(parents=True, exist_ok=True)
    shown = [row for row in rows if row.primary] or rows
    groups = [f"{row.task}\n{row.metric} ({row.shots}-shot)" for row in shown]
    bars = {label: [(row.cells[i] or (math.nan, None)) for row in shown] for i, label in enumerate(labels)}
    plot_grouped_bars(groups, bars, output)
    output.with_suffix(".md").write_text(table, encoding="utf-8")
    return table, output
