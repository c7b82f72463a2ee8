"""DPO (Rafailov et al. 2023, "Direct Preference Optimization"), the sigmoid loss: per
(better, worse) pair of responses to one prompt,

    L = -log sigmoid(beta * h),  h = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))

with summed response log-probabilities and the frozen reference (the starting model; with
an adapter, the base with the adapter disabled), whose log-probabilities are computed once
before training."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from lmforge.objectives.preference import ReferenceSettings, SequenceScores, log_ratio_margin, preference_objective
from lmforge.objectives.spec import CANDIDATES, ObjectiveSpec


class DPOConfig(ReferenceSettings):
    name: Literal["dpo"]
    beta: float = Field(0.1, gt=0.0)
    """Strength of the pull towards the reference (the paper's beta; 0.1 as TRL's default)."""


def dpo_pair_loss(beta: float):
    def loss(
        policy: SequenceScores, reference: torch.Tensor, better: torch.Tensor, worse: torch.Tensor
    ) -> torch.Tensor:
        return -F.logsigmoid(beta * log_ratio_margin(policy, reference, better, worse))

    return loss


SPEC = ObjectiveSpec(
    "dpo",
    DPOConfig,
    lambda p, alpha: preference_objective(dpo_pair_loss(p["beta"]), True, neftune_alpha=alpha),
    title="DPO",
    data=CANDIDATES,
    reference=True,
)
