"""Training mixes: per-dataset sampling weights (seed 003's MPT-1B proportions) and
multi-stage schedules, each stage its own mix. Deterministic by seed."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any

from lmforge.errors import LmforgeError

log = logging.getLogger("lmforge.data")

PRIORITY_WEIGHTS = {"high": 4.0, "medium": 2.0, "low": 1.0}
"""A dataset's `priority` as a weight before normalization (seed 003's high / medium / low
data priorities): high is drawn twice as often as medium, four times as often as low."""


@dataclass(frozen=True)
class Stage:
    """A stage's mix: dataset name -> weight (names left out get 0), and its size."""

    name: str
    weights: dict[str, float] = field(default_factory=dict)
    mix_size: int | None = None


def check_mix(names: list[str], weights: list[float | None], stages: list[Stage]) -> None:
    """Config-level checks, with the key path of the offending value."""
    for index, name in enumerate(names):
        if names.index(name) != index:
            raise LmforgeError(
                f"data.datasets[{index}].name: {name!r} is used by data.datasets[{names.index(name)}] "
                "too; give each dataset a distinct name"
            )
    given = [w is not None for w in weights]
    if any(given) and not all(given):
        index = given.index(False)
        raise LmforgeError(f"data.datasets[{index}].weight: missing; give every dataset a weight or none")
    if any(given) and not sum(weights) > 0:
        raise LmforgeError("data.datasets[*].weight: every weight is 0; give some dataset a positive weight")
    for index, stage in enumerate(stages):
        for name, weight in stage.weights.items():
            if name not in names:
                raise LmforgeError(
                    f"data.stages[{index}].weights.{name}: no dataset is named {name!r}; datasets: {', '.join(names)}"
                )
            if weight < 0:
                raise LmforgeError(f"data.stages[{index}].weights.{name}: {weight} is negative")
        if not sum(stage.weights.values()) > 0:
            raise LmforgeError(f"data.stages[{index}].weights: need a positive weight")


def normalized(weights: list[float], key: str) -> list[float]:
    """Weights scaled to sum to 1, with a warning when they did not."""
    total = sum(weights)
    if abs(total - 1.0) > 1e-6:
        log.warning(
            "%s: weights sum to %g, not 1; normalized to %s", key, total, ", ".join(f"{w / total:.4g}" for w in weights)
        )
    return [w / total for w in weights]


def shares(weights: list[float], total: int) -> list[int]:
    """Integer counts proportional to the weights summing exactly to `total` (largest
    remainder). shares([0.5, 0.25, 0.25], 10) == [5, 3, 2]"""
    raw = [w * total for w in weights]
    counts = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def draw(rows: list[Any], count: int, rng: random.Random) -> tuple[list[Any], int]:
    """`count` rows: a sample without replacement when there are enough, otherwise every row
    as many whole times as fit plus a sample of the rest. Returns (rows, repeated rows)."""
    if not rows or count <= 0:
        return [], 0
    whole, rest = divmod(count, len(rows))
    picked = rows * whole + rng.sample(rows, rest)
    return picked, max(0, count - len(rows))


def mix(
    per_dataset: list[list[Any]], weights: list[float] | None, size: int | None, seed: int, key: str
) -> tuple[list[Any], list[int], list[int]]:
    """One training mix, shuffled. Without weights: every row of every dataset (size caps
    nothing). Returns (rows, rows taken per dataset, repeated rows per dataset)."""
    rng = random.Random(seed)
    if weights is None:
        rows = [row for group in per_dataset for row in group]
        rng.shuffle(rows)
        return rows, [len(g) for g in per_dataset], [0] * len(per_dataset)
    weights = normalized(weights, key)
    total = size or sum(len(g) for g, w in zip(per_dataset, weights) if w > 0)
    rows, taken, repeated = [], [], []
    for group, count in zip(per_dataset, shares(weights, total)):
        picked, extra = draw(group, count, rng)
        rows += picked
        taken.append(len(picked))
        repeated.append(extra)
    rng.shuffle(rows)
    return rows, taken, repeated
