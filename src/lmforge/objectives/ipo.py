"""IPO (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
Preferences"): a squared loss that keeps the log-ratio margin at 1/(2 tau) instead of
pushing it without bound,

    L = (h - 1/(2 tau))^2,  h = (mean log pi(y_w) - mean log ref(y_w)) - (mean log pi(y_l) - mean log ref(y_l))

with log-probabilities averaged over each response's tokens, as TRL computes IPO (its
authors' recommendation), so tau means the same for short and long responses."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from lmforge.objectives.preference import ReferenceSettings, SequenceScores, preference_objective
from lmforge.objectives.spec import CANDIDATES, ObjectiveSpec


class IPOConfig(ReferenceSettings):
    name: Literal["ipo"]
    tau: float = Field(0.1, gt=0.0)
    """The regularisation strength (the margin's target is 1/(2 tau))."""


def ipo_pair_loss(tau: float):
    def loss(
        policy: SequenceScores, reference: torch.Tensor, better: torch.Tensor, worse: torch.Tensor
    ) -> torch.Tensor:
        ratio = (policy.sums - reference) / policy.counts.clamp_min(1)
        return (ratio[better] - ratio[worse] - 1.0 / (2.0 * tau)) ** 2

    return loss


SPEC = ObjectiveSpec(
    "ipo",
    IPOConfig,
    lambda p, alpha: preference_objective(ipo_pair_loss(p["tau"]), True, neftune_alpha=alpha),
    title="IPO",
    data=CANDIDATES,
    reference=True,
)
