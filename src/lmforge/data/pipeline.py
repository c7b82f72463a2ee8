"""Data pipeline, first slice: read each dataset, convert records to conversations, split
deterministically into train/val/test, cap, render + tokenize with label masks, and report
what happened to every record."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset

from lmforge.data.conversation import ROLE_IDS, Conversation
from lmforge.data.formats import PromptFormat
from lmforge.data.records import TRANSFORMS, detect_format
from lmforge.data.sources import read_records
from lmforge.data.tokenize import encode_conversation, fit_length
from lmforge.errors import LmforgeError


@dataclass
class DatasetSpec:
    """Plain arguments for one dataset (the builder does not see the config object)."""

    path: str
    format: str = "auto"
    val_split: float = 0.05
    test_split: float = 0.0
    max_train_set: int | None = None
    max_val_set: int | None = None


@dataclass
class DatasetReport:
    path: str
    format: str = ""
    records: int = 0
    dropped: Counter = field(default_factory=Counter)
    truncated: int = 0
    train: int = 0
    val: int = 0
    test: int = 0
    train_tokens: int = 0
    trained_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "dropped": dict(self.dropped)}


@dataclass
class Splits:
    train: list[Conversation] = field(default_factory=list)
    val: list[Conversation] = field(default_factory=list)
    test: list[Conversation] = field(default_factory=list)


@dataclass
class TokenizedData:
    train: Dataset
    val: Dataset | None
    test_conversations: list[Conversation]
    val_conversations: list[Conversation]
    reports: list[DatasetReport]
    cot_fraction: float


def load_conversations(spec: DatasetSpec, report: DatasetReport) -> list[Conversation]:
    conversations = []
    for record, where in read_records(spec.path):
        fmt = spec.format if spec.format != "auto" else detect_format(record, where)
        if not report.format:
            report.format = fmt
        conversations.append(TRANSFORMS[fmt](record, where))
        report.records += 1
    return conversations


def split_conversations(conversations: list[Conversation], spec: DatasetSpec, seed: int) -> Splits:
    """Shuffle with the seed, then carve test and val off the front: deterministic."""
    order = list(range(len(conversations)))
    random.Random(seed).shuffle(order)
    n = len(order)
    n_test = int(round(n * spec.test_split))
    n_val = int(round(n * spec.val_split))
    if spec.max_val_set is not None:
        n_val = min(n_val, spec.max_val_set)
    test = [conversations[i] for i in order[:n_test]]
    val = [conversations[i] for i in order[n_test: n_test + n_val]]
    train = [conversations[i] for i in order[n_test + n_val:]]
    if spec.max_train_set is not None:
        train = train[: spec.max_train_set]
    return Splits(train, val, test)


def tokenize_conversations(
    conversations: list[Conversation],
    prompt_format: PromptFormat,
    tokenizer,
    max_length: int,
    overlength: str,
    report: DatasetReport,
) -> list[dict[str, Any]]:
    rows = []
    for conversation in conversations:
        if not any(s.text.strip() for s in conversation.segments if s.role in ("assistant", "rationale", "answer")):
            report.dropped["empty_response"] += 1
            continue
        encoded = encode_conversation(conversation, prompt_format, tokenizer)
        was_long = len(encoded.input_ids) > max_length
        fitted, reason = fit_length(encoded, max_length, overlength)
        if fitted is None:
            report.dropped[reason] += 1
            continue
        report.truncated += int(was_long)
        rows.append(fitted.as_row())
    return rows


def build_datasets(
    specs: list[DatasetSpec],
    prompt_format: PromptFormat,
    tokenizer,
    max_length: int,
    overlength: str,
    seed: int,
) -> TokenizedData:
    if not specs:
        raise LmforgeError("data.datasets: no datasets given")
    train_rows: list[dict[str, Any]] = []
    val_rows: list[dict[str, Any]] = []
    test_conversations: list[Conversation] = []
    val_conversations: list[Conversation] = []
    reports = []
    cot = total = 0
    for index, spec in enumerate(specs):
        report = DatasetReport(spec.path)
        splits = split_conversations(load_conversations(spec, report), spec, seed + index)
        rows = tokenize_conversations(splits.train, prompt_format, tokenizer, max_length, overlength, report)
        val = tokenize_conversations(splits.val, prompt_format, tokenizer, max_length, overlength, report)
        report.train, report.val, report.test = len(rows), len(val), len(splits.test)
        report.train_tokens = sum(len(r["input_ids"]) for r in rows)
        report.trained_tokens = sum(sum(1 for label in r["labels"][1:] if label != -100) for r in rows)
        reports.append(report)
        train_rows += rows
        val_rows += val
        test_conversations += splits.test
        val_conversations += splits.val
        cot += sum(ROLE_IDS["rationale"] in r["token_roles"] for r in rows)
        total += len(rows)
        if not rows:
            dropped = ", ".join(f"{k}: {v}" for k, v in report.dropped.items()) or "none"
            raise LmforgeError(
                f"data.datasets[{index}] ({spec.path}): no training examples left after filtering "
                f"({report.records} records read; dropped {dropped}; max_length {max_length})"
            )
    random.Random(seed).shuffle(train_rows)
    for example_id, row in enumerate(train_rows):
        row["example_id"] = example_id
    return TokenizedData(
        train=Dataset.from_list(train_rows),
        val=Dataset.from_list(val_rows) if val_rows else None,
        test_conversations=test_conversations,
        val_conversations=val_conversations,
        reports=reports,
        cot_fraction=cot / total if total else 0.0,
    )
