"""Packing: several tokenized examples per row, so no slot is spent on padding. Two modes
(`data.packing`):

  - true (`pack_rows`): whole examples, best-fit decreasing into rows of at most
    max_length tokens;
  - "split" (`split_rows`, for plain text only): the examples concatenated in their data
    order and cut into rows of exactly max_length tokens (the last may be shorter); an
    example cut at a row's end continues at the start of the next row, so a document
    longer than max_length spans rows instead of being dropped or truncated. Every piece
    of an example keeps the example's id in `token_example_ids`. The validation examples
    are cut the same way, into rows of their own (pipeline.py), and so are the streaming
    packer's documents (streaming.py, with the same `PieceRow`).

Each packed row carries `position_ids` that restart at 0 for every example, and for every
piece of one that starts a row (it cannot see what came before it). With no
`attention_mask` in the batch and no KV cache, transformers (5.x `masking_utils`) reads
the restarts as packed sequences and confines attention to each piece (for sdpa, eager
and flex attention; flash-attention takes the same position ids as "padding-free" input).
The first label of every piece is -100: unpacked, position 0 is never a target.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from lmforge.data.conversation import ROLE_IDS
from lmforge.data.tokenize import IGNORE_INDEX
from lmforge.errors import LmforgeError

PACKED_COLUMNS = ("input_ids", "labels", "token_roles")
TEXT = ROLE_IDS["text"]


@dataclass(frozen=True)
class PackingReport:
    examples: int
    rows: int
    tokens: int
    slots: int
    split: bool = False
    """data.packing: split (examples cut across full rows)."""

    @property
    def efficiency(self) -> float:
        """Real tokens / slots (rows x max_length)."""
        return self.tokens / self.slots if self.slots else 0.0

    def describe(self) -> str:
        """The run log's and `data inspect`'s line."""
        mode = " (split)" if self.split else ""
        return f"packing{mode}: {self.examples} examples in {self.rows} rows, efficiency {self.efficiency:.1%}"


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
    return packed, _report(rows, packed, max_length)


def split_rows(examples: Iterable[dict[str, Any]], max_length: int, isolate: bool = True) -> list[dict[str, Any]]:
    """`data.packing: split`: the examples' tokens in order, cut into rows of `max_length`
    tokens (the last may be shorter); an example cut at a row's end continues in the next
    row. Examples are mappings with `input_ids` and, optionally, `token_roles` (default:
    plain text) and `example_id` (then each row has `token_example_ids`: a piece carries
    its example's id, so one example's pieces in different rows share it). Labels are the
    tokens, -100 at each piece's first token under `isolate` (see `PieceRow`)."""
    rows, row = [], PieceRow(isolate)
    for example in examples:
        ids, roles, at = example["input_ids"], example.get("token_roles"), 0
        while at < len(ids):
            end = at + max_length - len(row)
            row.add(ids[at:end], roles[at:end] if roles is not None else None, example.get("example_id"))
            at = end
            if len(row) == max_length:
                rows.append(row.emit())
                row = PieceRow(isolate)
    if len(row):
        rows.append(row.emit())
    return rows


def pack_split(rows: list[dict[str, Any]], max_length: int) -> tuple[list[dict[str, Any]], PackingReport]:
    packed = split_rows(rows, max_length)
    return packed, _report(rows, packed, max_length, split=True)


def _report(rows: list[dict[str, Any]], packed: list[dict[str, Any]], max_length: int, split: bool = False):
    tokens = sum(len(row["input_ids"]) for row in rows)
    return PackingReport(len(rows), len(packed), tokens, len(packed) * max_length, split)


def check_plain_text(rows: list[dict[str, Any]], where: str) -> None:
    """`data.packing: split` is for plain text: a chat or instruction example cut across
    rows would leave a response piece that cannot see its prompt. (A plain-text example's
    tokens are all text, but for a leading bos, which has the prompt role.)"""
    if any(role != TEXT for row in rows for role in row["token_roles"][1:]):
        raise LmforgeError(
            f"data.packing: split cuts examples across rows, for plain text only, but {where} holds "
            "prompt/response examples (a response cut from its prompt would be trained without it); "
            "use data.packing: true, which packs whole examples"
        )


class PieceRow:
    """One packed row, built piece by piece (a piece: a whole example or document, or the
    part of one that fits)."""

    def __init__(self, isolate: bool = True):
        self.isolate = isolate
        self.ids: list[int] = []
        self.positions: list[int] = []
        self.labels: list[int] = []
        self.roles: list[int] = []
        self.example_ids: list[int] = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, tokens: list[int], roles: list[int] | None = None, example_id: int | None = None) -> None:
        """One piece, trained on every token: with isolation its positions restart at 0 and
        its first token is no target (it cannot see what came before it); without, the row
        is one causal sequence. `roles` default to plain text."""
        if not tokens:
            return
        start = 0 if self.isolate else len(self.ids)
        self.positions += range(start, start + len(tokens))
        self.labels += [IGNORE_INDEX, *tokens[1:]] if start == 0 else tokens
        self.roles += roles if roles is not None else [TEXT] * len(tokens)
        if example_id is not None:
            self.example_ids += [example_id] * len(tokens)
        self.ids += tokens

    def emit(self) -> dict[str, Any]:
        row = {"input_ids": self.ids, "labels": self.labels, "token_roles": self.roles, "position_ids": self.positions}
        if self.example_ids:
            row["token_example_ids"] = self.example_ids
        return row


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
