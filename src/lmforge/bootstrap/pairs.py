"""(correct, incorrect) pairs from verified generations (docs/commands/bootstrap.md): deduplicated, every
correct and every incorrect response used at most once, extras discarded; or, for
rejection-sampling SFT, the deduplicated correct responses alone."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Pair:
    question_id: int
    chosen: str
    rejected: str


def _normalised(text: str) -> str:
    return " ".join(text.split())


def _unique_valid(samples: list[dict]) -> tuple[list[str], list[str]]:
    """(correct, incorrect) texts of the valid samples, whitespace-duplicates removed."""
    seen: set[str] = set()
    correct, incorrect = [], []
    for sample in samples:
        key = _normalised(sample["text"])
        if not sample["valid"] or key in seen:
            continue
        seen.add(key)
        (correct if sample["correct"] else incorrect).append(sample["text"])
    return correct, incorrect


def unique_correct(samples: list[dict]) -> list[str]:
    """The valid correct responses, whitespace-duplicates removed (rejection sampling's data).

    >>> unique_correct([{"text": t, "valid": v, "correct": c} for t, v, c in
    ...                 [("a", True, True), ("a ", True, True), ("b", False, True), ("x", True, False)]])
    ['a']
    """
    return _unique_valid(samples)[0]


def build_group(question_id: int, samples: list[dict]) -> dict | None:
    """Every unique correct response ranked above every unique incorrect one (ties within
    each side); None unless both sides are there.

    >>> s = [{"text": t, "valid": True, "correct": c} for t, c in [("a", True), ("a ", True), ("b", True), ("x", False)]]
    >>> build_group(3, s)
    {'question_id': 3, 'correct': ['a', 'b'], 'incorrect': ['x']}
    """
    correct, incorrect = _unique_valid(samples)
    if not correct or not incorrect:
        return None
    return {"question_id": question_id, "correct": correct, "incorrect": incorrect}


def build_pairs(question_id: int, samples: list[dict], seed: int) -> list[Pair]:
    """`samples`: dicts with `text`, `valid`, `correct`. Invalid ones never pair.

    >>> s = [{"text": t, "valid": True, "correct": c} for t, c in
    ...      [("a", True), ("a ", True), ("b", True), ("x", False), ("y", False), ("z", False)]]
    >>> len(build_pairs(0, s, seed=0))  # 2 unique correct, 3 incorrect -> 2 pairs
    2
    """
    correct, incorrect = _unique_valid(samples)
    rng = random.Random(seed * 1_000_003 + question_id)
    rng.shuffle(correct)
    rng.shuffle(incorrect)
    return [Pair(question_id, c, r) for c, r in zip(correct, incorrect)]
