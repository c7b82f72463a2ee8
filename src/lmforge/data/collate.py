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


@dataclass
class CandidateCollator:
    """Preference batches: each row's chosen response (order 0) and its rejected ones
    (order 1, 2, ... in the record's ranking), flattened into sequences that carry `group`
    (the row), `order` and `is_gold` (always False: pairs data has no separate gold
    answer), plus `reference_logps` when the rows have them (train/reference.py)."""

    pad_token_id: int

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ranked = []
        for row in rows:
            sequences = [
                (row["input_ids"], row["labels"]),
                *zip(row.get("rejected_input_ids", []), row.get("rejected_labels", [])),
            ]
            ranked.append([(ids, labels, rank, False) for rank, (ids, labels) in enumerate(sequences)])
        return candidate_batch(self.pad_token_id, rows, ranked)


def candidate_batch(
    pad_token_id: int, rows: list[dict[str, Any]], ranked: list[list[tuple]]
) -> dict[str, torch.Tensor]:
    """One padded sequence per (input ids, labels, order, is_gold) of each row's `ranked`
    list, with `group` (the row), `order`, `is_gold`, and the rows' `reference_logps` when
    they have them (train/reference.py), in the same order."""
    flat, group, order, is_gold = [], [], [], []
    for index, sequences in enumerate(ranked):
        for ids, labels, rank, gold in sequences:
            flat.append({"input_ids": ids, "labels": labels})
            group.append(index)
            order.append(rank)
            is_gold.append(gold)
    batch = PadCollator(pad_token_id)(flat)
    batch.pop("token_roles")
    batch.update(group=torch.tensor(group), order=torch.tensor(order), is_gold=torch.tensor(is_gold, dtype=torch.bool))
    if "reference_logps" in rows[0]:
        batch["reference_logps"] = torch.tensor(
            [v for row in rows for v in row["reference_logps"]], dtype=torch.float64
        )
    return batch
