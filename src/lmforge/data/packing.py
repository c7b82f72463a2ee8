"""Packing: several tokenized examples per row of at most max_length tokens, so no slot is
spent on padding.

Each packed row carries `position_ids` that restart at 0 for every example. With no
`attention_mask` in the batch and no KV cache, transformers (5.x `masking_utils`) reads
the restarts as packed sequences and confines attention to each example (for sdpa, eager
and flex attention; flash-attention takes the same position ids as "padding-free" input).
The first label of every packed example is -100: unpacked, position 0 is never a target.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import torch

from lmforge.data.tokenize import IGNORE_INDEX

PACKED_COLUMNS = ("input_ids", "labels", "token_roles")


@dataclass(frozen=True)
class PackingReport:
    examples: int
    rows: int
    tokens: int
    slots: int

    @property
    def efficiency(self) -> float:
        """Real tokens / slots (rows x max_length)."""
        return self.tokens / self.slots if self.slots else 0.0


def plan_bins(lengths: list[int], max_length: int) -> list[list[int]]:
    """Best-fit decreasing: longest first, each into the fullest row it still fits.
    Returns example indices per row, in their original order within the row."""
    bins: list[list[int]] = []
    room: list[tuple[int, int]] = []  # sorted (free slots, bin index)
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        length = lengths[index]
        if length > max_length:
            raise ValueError(f"example {index} has {length} tokens, more than max_length {max_length}")
        at = bisect.bisect_left(room, (length, -1))
        if at < len(room):
            free, target = room.pop(at)
            bins[target].append(index)
            if free - length > 0:
                bisect.insort(room, (free - length, target))
        else:
            bins.append([index])
            if max_length - length > 0:
                bisect.insort(room, (max_length - length, len(bins) - 1))
    return [sorted(b) for b in bins]


def pack_rows(rows: list[dict[str, Any]], max_length: int) -> tuple[list[dict[str, Any]], PackingReport]:
    lengths = [len(row["input_ids"]) for row in rows]
    packed = []
    for members in plan_bins(lengths, max_length):
        row: dict[str, list[int]] = {key: [] for key in (*PACKED_COLUMNS, "position_ids")}
        for index in members:
            example = rows[index]
            row["input_ids"] += example["input_ids"]
            row["labels"] += [IGNORE_INDEX, *example["labels"][1:]]
            row["token_roles"] += example["token_roles"]
            row["position_ids"] += list(range(len(example["input_ids"])))
            if "example_id" in example:  # per token: which example it belongs to
                row.setdefault("token_example_ids", []).extend([example["example_id"]] * len(example["input_ids"]))
        packed.append(row)
    tokens = sum(lengths)
    return packed, PackingReport(len(rows), len(packed), tokens, len(packed) * max_length)


@dataclass
class PackedCollator:
    """Right-pads packed rows to the longest in the batch. The padding is a segment of its
    own (positions restart at 0; label -100, role -1) and there is deliberately no
    attention_mask: that is how transformers recognizes packed rows."""

    pad_token_id: int

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(row["input_ids"]) for row in rows)
        batch = {
            "input_ids": torch.full((len(rows), longest), self.pad_token_id, dtype=torch.long),
            "labels": torch.full((len(rows), longest), IGNORE_INDEX, dtype=torch.long),
            "token_roles": torch.full((len(rows), longest), -1, dtype=torch.long),
            "position_ids": torch.zeros((len(rows), longest), dtype=torch.long),
        }
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            for key in ("input_ids", "labels", "token_roles", "position_ids"):
                batch[key][i, :n] = torch.as_tensor(row[key])
            batch["position_ids"][i, n:] = torch.arange(longest - n)
        if "example_id" in rows[0]:
            batch["example_id"] = torch.tensor([row["example_id"] for row in rows], dtype=torch.long)
        if "token_example_ids" in rows[0]:  # -1 on padding
            batch["token_example_ids"] = torch.full((len(rows), longest), -1, dtype=torch.long)
            for i, row in enumerate(rows):
                batch["token_example_ids"][i, : len(row["token_example_ids"])] = torch.as_tensor(
                    row["token_example_ids"]
                )
        return batch
