"""Batch padding. Right padding for training: padded positions get label -100, attention
mask 0 and token role -1, so they never count in a loss or a token count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lmforge.data.tokenize import IGNORE_INDEX


@dataclass
class PadCollator:
    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(row["input_ids"]) for row in rows)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {
            "input_ids": torch.full((len(rows), longest), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(rows), longest), dtype=torch.long),
            "labels": torch.full((len(rows), longest), IGNORE_INDEX, dtype=torch.long),
            "token_roles": torch.full((len(rows), longest), -1, dtype=torch.long),
        }
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            batch["input_ids"][i, :n] = torch.as_tensor(row["input_ids"])
            batch["attention_mask"][i, :n] = 1
            batch["labels"][i, :n] = torch.as_tensor(row["labels"])
            if "token_roles" in row:
                batch["token_roles"][i, :n] = torch.as_tensor(row["token_roles"])
        if "example_id" in rows[0]:  # lets objectives draw per-example noise reproducibly
            batch["example_id"] = torch.tensor([row["example_id"] for row in rows], dtype=torch.long)
        return batch
