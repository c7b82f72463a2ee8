"""PNG plots of run metrics (matplotlib, headless)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_loss_curve(metrics_path: Path, png_path: Path) -> Path | None:
    """Training loss (and validation loss when logged) against optimizer step."""
    rows = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in rows if isinstance(r.get("loss"), (int, float))]
    val = [(r["step"], r["eval_loss"]) for r in rows if isinstance(r.get("eval_loss"), (int, float))]
    if not train and not val:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue")
    if val:
        ax.plot(*zip(*val), label="validation loss", color="tab:orange", marker="o", markersize=3)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats / label token)")
    return _save_with_legend(fig, ax, png_path)


def plot_ablation(table: list[dict], png_path: Path, on_test: bool = True) -> Path:
    """Bar chart of exact-match accuracy (mean ± sd over seeds) per variant: on the test
    problems, or (`on_test` False) the validation score of each run's chosen checkpoint."""
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(table)), 4), dpi=120)
    labels = [row["label"] for row in table]
    key = "accuracy" if on_test else "val_accuracy"
    means = [100 * row[f"{key}_mean"] for row in table]
    sds = [100 * row[f"{key}_sd"] for row in table]
    bars = ax.bar(
        labels,
        means,
        yerr=sds,
        capsize=6,
        color=["tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"][: len(table)],
    )
    for bar, mean in zip(bars, means):
        ax.annotate(
            f"{mean:.1f}%",
            (bar.get_x() + bar.get_width() / 2, mean),
            ha="center",
            va="bottom",
            xytext=(0, 3),
            textcoords="offset points",
        )
    ax.set_ylabel("strict exact match (%)")
    ax.set_title(f"{'test' if on_test else 'validation'} accuracy, mean ± sd over seeds")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path


def plot_selection_curves(curves: dict[str, list[list[list[float]]]], png_path: Path, task_name: str) -> Path:
    """Validation exact match per checkpoint, one line per variant: the mean over its seeds
    at each step all seeds reached, with a ± sd band (`curves`: label -> per seed
    [[step, score], ...])."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for label, runs in curves.items():
        by_step: dict[float, list[float]] = {}
        for run in runs:
            for step, score in run:
                by_step.setdefault(step, []).append(100 * score)
        steps = sorted(step for step, scores in by_step.items() if len(scores) == len(runs))
        means = [sum(by_step[s]) / len(by_step[s]) for s in steps]
        sds = [
            math.sqrt(sum((x - m) ** 2 for x in by_step[s]) / (len(by_step[s]) - 1)) if len(by_step[s]) > 1 else 0.0
            for s, m in zip(steps, means)
        ]
        (line,) = ax.plot(steps, means, marker="o", markersize=3, label=label)
        ax.fill_between(
            steps,
            [m - d for m, d in zip(means, sds)],
            [m + d for m, d in zip(means, sds)],
            color=line.get_color(),
            alpha=0.15,
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"{task_name} strict exact match (%)")
    ax.set_title("validation accuracy per checkpoint, mean ± sd over seeds")
    return _save_with_legend(fig, ax, png_path)


def plot_schedule(rates: list[float], title: str, png_path: Path) -> Path:
    """Learning rate against optimizer step."""
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=120)
    ax.plot(range(len(rates)), rates, color="tab:blue")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path


def plot_metric_vs_step(
    series: dict[str, list[tuple[int, float]]],
    ylabel: str,
    png_path: Path,
    best: tuple[int, float] | None = None,
    title: str | None = None,
) -> Path:
    """One line per series (e.g. per task) of a metric against optimizer step; the best
    point, when given, is ringed and labelled."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for label, points in series.items():
        if points:
            ax.plot(*zip(*points), marker="o", markersize=4, label=label)
    if best is not None:
        ax.scatter(
            [best[0]],
            [best[1]],
            s=160,
            facecolors="none",
            edgecolors="tab:red",
            linewidths=2,
            zorder=5,
            label=f"best: step {best[0]}",
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return _save_with_legend(fig, ax, png_path)


def _save_with_legend(fig, ax, png_path: Path) -> Path:
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path


def plot_grouped_bars(groups: list[str], bars: dict[str, list[tuple[float, float | None]]], png_path: Path) -> Path:
    """One panel per group (a task's metric, each on its own scale), one bar per series (a
    model) with its standard error; a missing value (NaN) leaves its bar out."""
    fig, axes = plt.subplots(
        1, len(groups), figsize=(max(4.0, 2.2 + 1.1 * len(bars)) * len(groups) ** 0.8, 4), dpi=120, squeeze=False
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (ax, group) in enumerate(zip(axes[0], groups)):
        for position, (label, cells) in enumerate(bars.items()):
            value, stderr = cells[index]
            if math.isnan(value):
                continue
            error = stderr if stderr is not None and math.isfinite(stderr) else 0.0
            ax.bar(position, value, yerr=error or None, capsize=5, color=colors[position % len(colors)], label=label)
            ax.annotate(
                f"{value:.3g}",
                (position, value + error),
                ha="center",
                va="bottom",
                xytext=(0, 3),
                textcoords="offset points",
                fontsize=8,
            )  # above the error bar
        ax.set_xticks(range(len(bars)), list(bars), rotation=30, ha="right", fontsize=8)
        ax.set_title(group, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path
