"""The record formats lmforge reads, by name, and their detection from a record's fields."""

from __future__ import annotations

from typing import Any

from lmforge.data import oasst, records
from lmforge.data.records import RecordTransform
from lmforge.errors import LmforgeError

TRANSFORMS: dict[str, RecordTransform] = {
    "messages": records.from_messages,
    "sharegpt": records.from_sharegpt,
    "oasst_trees": oasst.from_oasst_tree,
    "oasst_messages": oasst.from_oasst_tree,  # after `oasst.group_messages` built the trees
    "alpaca": records.from_alpaca,
    "dolly": records.from_dolly,
    "reddit_instruct": records.from_reddit_instruct,
    "cot": records.from_cot,
    "tinycot": records.from_tinycot,
    "gsm8k": records.from_gsm8k,
    "arc": records.from_arc,
    "mmlu": records.from_mmlu,
    "bbh": records.from_bbh,
    "humaneval": records.from_humaneval,
    "squad": records.from_squad,
    "translation": records.from_translation,
    "text": records.from_text,
    "pairs": records.from_pairs,
}

# Formats whose records are not one example each: a grouping pass turns the whole record
# stream into the records the transform takes (flat Open-Assistant messages -> trees).
GROUPERS = {"oasst_messages": oasst.group_messages}

# Fields whose presence identifies a format, checked in this order (more specific first).
SIGNATURES: tuple[tuple[str, frozenset[str]], ...] = (
    ("messages", frozenset({"messages"})),
    ("sharegpt", frozenset({"conversations"})),
    ("oasst_trees", frozenset({"message_tree_id", "prompt"})),
    ("oasst_messages", frozenset({"message_id", "role", "text"})),
    ("humaneval", frozenset({"task_id", "prompt", "canonical_solution", "test", "entry_point"})),
    ("pairs", frozenset({"prompt", "chosen", "rejected"})),
    ("tinycot", frozenset({"prompt", "rationale", "target"})),
    ("cot", frozenset({"question", "rationale"})),
    ("arc", frozenset({"question", "choices", "answerKey"})),
    ("mmlu", frozenset({"question", "choices", "answer"})),
    ("squad", frozenset({"context", "question", "answers"})),
    ("gsm8k", frozenset({"question", "answer"})),
    ("dolly", frozenset({"instruction", "response"})),
    ("alpaca", frozenset({"instruction", "output"})),
    ("reddit_instruct", frozenset({"post_title", "comment_text"})),
    ("bbh", frozenset({"input", "target"})),
    ("translation", frozenset({"translation"})),
    ("text", frozenset({"text"})),  # last: several formats carry a text field
)


def detect_format(record: dict[str, Any], where: str) -> str:
    for name, fields in SIGNATURES:
        if fields <= record.keys():
            return name
    raise LmforgeError(
        f"{where}: cannot tell the record format from its fields ({', '.join(sorted(record)) or 'none'}); "
        f"set the dataset's 'format' to one of: {', '.join(TRANSFORMS)}"
    )


def check_format(name: str, key: str) -> None:
    if name != "auto" and name not in TRANSFORMS:
        raise LmforgeError(f"{key}: unknown format '{name}'; known formats: auto, {', '.join(TRANSFORMS)}")
