"""One batch per objective on the tiny model of conftest.py, with the collate-time noise
each objective trains on (ReMask masks, rank groups), for tests that run every objective."""

from __future__ import annotations

import torch

from lmforge.data.collate import PadCollator
from lmforge.data.conversation import ROLE_IDS
from lmforge.objectives import build_objective
from lmforge.objectives.remask import RegularizationNoise
from tests.train.conftest import PAD, VOCAB, token_rows

MASK_ID = VOCAB - 1
OBJECTIVE_PARAMS = {
    "ce": {},
    "mixce": {"ratio": 0.75},
    "masked_thought": {},
    "remask": {"weight": 0.1},
    "remask_cot": {"weight": 0.1},
    "rank": {"weight": 5.0},
    "dpo": {"beta": 0.1},
    "ipo": {"tau": 0.1},
    "spin": {"beta": 0.1},
    "orpo": {"weight": 0.1},
    "simpo": {"beta": 2.0, "gamma": 0.5},
}
PREFERENCE = ("dpo", "ipo", "spin", "orpo", "simpo")


def objective_batch(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    rows = token_rows(6, seed=seed)
    for index, row in enumerate(rows):
        row["example_id"] = index
        if name == "remask_cot":  # a rationale then an answer after the prompt
            prompt = row["token_roles"].count(0)
            length = len(row["input_ids"])
            row["token_roles"] = [0] * prompt + [ROLE_IDS["rationale"]] * (length - prompt - 1) + [ROLE_IDS["answer"]]
    batch = PadCollator(PAD)(rows)
    if name in ("remask", "remask_cot", "masked_thought"):
        noise = RegularizationNoise(
            MASK_ID, p_in=0.4, p_label=0.1, p_answer_only=0.1, cot_rules=name != "remask", seed=seed
        )
        batch = noise(batch)
    if name == "rank":  # three groups of two: gold + chosen, ..., rejected last
        batch["group"] = torch.tensor([0, 0, 1, 1, 2, 2])
        batch["order"] = torch.tensor([0, 1, 0, 1, 0, 1])
        batch["is_gold"] = torch.tensor([True, False, True, False, False, False])
    if name in PREFERENCE:  # two prompts: chosen + two ranked rejected; one of three with a tie
        batch["group"] = torch.tensor([0, 0, 0, 1, 1, 1])
        batch["order"] = torch.tensor([0, 1, 2, 0, 1, 1])
        batch["is_gold"] = torch.zeros(6, dtype=torch.bool)
        batch["reference_logps"] = -torch.linspace(20.0, 30.0, 6, dtype=torch.float64)
    return batch


def objective_and_count(name: str, batch: dict[str, torch.Tensor], neftune_alpha: float | None = None):
    objective = build_objective(name, OBJECTIVE_PARAMS[name], neftune_alpha)
    counter = getattr(objective, "count_items", None)
    count = counter([batch]) if counter else batch["labels"][:, 1:].ne(-100).sum()
    return objective, count
