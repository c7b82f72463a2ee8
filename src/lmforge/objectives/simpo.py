"""SimPO (Meng et al. 2024, "SimPO: Simple Preference Optimization with a Reference-Free
Reward"): the length-normalised log-probability is the reward, with a target margin gamma,
no reference model,

    L = -log sigmoid(beta * (mean log pi(y_w) - mean log pi(y_l)) - gamma)"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from lmforge.objectives.preference import SequenceScores, preference_objective
from lmforge.objectives.spec import CANDIDATES, ObjectiveSpec
from lmforge.strict import Strict


class SimPOConfig(Strict):
    name: Literal["simpo"]
    beta: float = Field(2.0, gt=0.0)
    """Reward scale (2.0, the paper's and TRL's default)."""
    gamma: float | None = Field(None, ge=0.0)
    """Target reward margin; default 0.5 x beta (the paper's gamma/beta ratio of about 0.5)."""


def simpo_pair_loss(beta: float, gamma: float):
    def loss(policy: SequenceScores, reference, better: torch.Tensor, worse: torch.Tensor) -> torch.Tensor:
        means = policy.means
        return -F.logsigmoid(beta * (means[better] - means[worse]) - gamma)

    return loss


SPEC = ObjectiveSpec(
    "simpo",
    SimPOConfig,
    lambda p, alpha: preference_objective(
        simpo_pair_loss(p["beta"], 0.5 * p["beta"] if p.get("gamma") is None else p["gamma"]),
        False,
        neftune_alpha=alpha,
    ),
    title="SimPO",
    data=CANDIDATES,
)
