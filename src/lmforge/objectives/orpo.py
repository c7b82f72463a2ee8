"""ORPO (Hong et al. 2024, "ORPO: Monolithic Preference Optimization without Reference
Model"): cross-entropy on the chosen response plus lambda x an odds-ratio term, no
reference model,

    L = CE(y_w) + lambda * -log sigmoid(log odds(y_w) - log odds(y_l)),
    log odds(y) = m - log(1 - exp(m)),  m = mean log pi(y) over the response's tokens."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from lmforge.objectives.preference import SequenceScores, preference_objective
from lmforge.objectives.spec import CANDIDATES, ObjectiveSpec
from lmforge.strict import Strict


class ORPOConfig(Strict):
    name: Literal["orpo"]
    weight: float = Field(0.1, gt=0.0)
    """lambda, the odds-ratio term's weight (0.1 in the paper and TRL)."""


def log_odds(mean_logp: torch.Tensor) -> torch.Tensor:
    """log(p / (1 - p)) of a mean log-probability m < 0, computed stably as m - log(-expm1(m))."""
    return mean_logp - torch.log(-torch.expm1(mean_logp))


def orpo_pair_loss(weight: float):
    def loss(policy: SequenceScores, reference, better: torch.Tensor, worse: torch.Tensor) -> torch.Tensor:
        odds = log_odds(policy.means)
        return -weight * F.logsigmoid(odds[better] - odds[worse])

    return loss


SPEC = ObjectiveSpec(
    "orpo",
    ORPOConfig,
    lambda p, alpha: preference_objective(
        orpo_pair_loss(p["weight"]), False, chosen_ce_weight=1.0, neftune_alpha=alpha
    ),
    title="ORPO (cross-entropy + odds-ratio preference)",
    data=CANDIDATES,
)
