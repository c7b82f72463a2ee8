"""SPIN (Chen et al. 2024, "Self-Play Fine-Tuning Converts Weak Language Models to Strong
Language Models"): each iteration, the model from the previous iteration (the model this
run starts from) answers every training prompt; the new model learns to prefer the data's
response over that generation, with the DPO-style logistic loss against the previous
iteration as the reference:

    L = -log sigmoid(beta * ((log pi(y_data) - log prev(y_data)) - (log pi(y_gen) - log prev(y_gen))))

It trains on SFT data (prompt + response); the generations are made before training by
the starting model (train/reference.py) and cached in the run directory. A next
iteration is a new run from this run's model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lmforge.objectives.dpo import dpo_pair_loss
from lmforge.objectives.preference import preference_objective
from lmforge.objectives.spec import CANDIDATES, ObjectiveSpec
from lmforge.strict import Strict


class SPINConfig(Strict):
    name: Literal["spin"]
    beta: float = Field(0.1, gt=0.0)
    """As DPO's beta (0.1 in the paper)."""
    max_new_tokens: int = Field(256, gt=0)
    """Length limit of the previous iteration's answers."""
    temperature: float = Field(1.0, ge=0.0)
    """Sampling temperature of those answers (0: greedy)."""


SPEC = ObjectiveSpec(
    "spin",
    SPINConfig,
    lambda p, alpha: preference_objective(dpo_pair_loss(p["beta"]), True, neftune_alpha=alpha),
    title="SPIN (self-play against the previous iteration)",
    data=CANDIDATES,
    reference=True,
    self_generated=True,
)
