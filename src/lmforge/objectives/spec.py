"""What an objective declares about itself, so that the pipeline, `ablate`, `bootstrap`,
`estimate` and the model card ask it instead of testing its name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from lmforge.strict import Strict

SEQUENCES, CANDIDATES = "sequences", "candidates"


@dataclass(frozen=True)
class ObjectiveSpec:
    name: str
    config: type[Strict]
    """Its settings (`train.objective`), a model whose `name` literal is `name`."""
    build: Callable[[dict[str, Any], float | None], Callable]
    """(settings as a dict, NEFTune alpha or None) -> the objective the trainer calls."""
    title: str
    """How the model card names it."""
    data: Literal["sequences", "candidates"] = SEQUENCES
    """sequences: one trained sequence per example (SFT data); candidates: a prompt with
    its ranked responses (`pairs` records: chosen first, then the rejected ones)."""
    masking: bool = False
    """Needs a mask token and the collate-time masking noise (ReMask family)."""
    reference: bool = False
    """Compares the policy with a frozen reference: log-probabilities of every candidate
    under the reference are computed once before training (train/reference.py)."""
    self_generated: bool = False
    """Its rejected responses are the reference model's own generations (SPIN): made
    before training from the prompts of SFT data."""
    passes: int = 1
    """Forward passes per training step (the memory estimate)."""
