"""Valid records of every record format lmforge reads (`DatasetFormat` in config/schema.py),
in the real schemas of docs/FORMATS: the starting points the fuzzers mutate. The
Open-Assistant tree and the GSM8K and ARC records are the real-schema fixtures of
tests/data/test_real_formats.py."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from tests.data.test_real_formats import ARC, GSM8K, OA_TREE


@dataclass(frozen=True)
class Seed:
    records: list[dict[str, Any]]
    """One JSONL line each."""
    options: dict[str, Any] = field(default_factory=dict)
    """The dataset's format options the records need."""


def flat_messages(tree: dict[str, Any]) -> list[dict[str, Any]]:
    """An Open-Assistant tree as the flat `*.messages.jsonl` rows (depth first)."""

    def walk(node: dict[str, Any], parent: str | None) -> list[dict[str, Any]]:
        row = {k: v for k, v in node.items() if k != "replies"}
        row.update(message_tree_id=tree["message_tree_id"], tree_state=tree["tree_state"])
        if parent:
            row["parent_id"] = parent
        return [row] + [r for child in node.get("replies", []) for r in walk(child, node["message_id"])]

    return walk(tree["prompt"], None)


SEEDS: dict[str, Seed] = {
    "messages": Seed(
        [
            {
                "id": "c1",
                "messages": [
                    {"role": "system", "content": "Be brief and kind."},
                    {"role": "user", "content": "Name a large planet."},
                    {"role": "assistant", "content": "Jupiter is a large planet."},
                ],
            },
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Describe the sea."}]},
                    {"role": "assistant", "content": "The sea is wide and blue."},
                ]
            },
        ]
    ),
    "sharegpt": Seed(
        [
            {
                "id": "s1_0",
                "conversations": [
                    {"from": "human", "value": "Which fruit is yellow?"},
                    {"from": "gpt", "value": "A banana is yellow."},
                    {"from": "human", "value": "And which one is red?"},
                    {"from": "gpt", "value": "A cherry is red."},
                ],
            }
        ]
    ),
    "oasst_trees": Seed([OA_TREE]),
    "oasst_messages": Seed(flat_messages(OA_TREE)),
    "alpaca": Seed(
        [
            {"instruction": "Sum the numbers below.", "input": "3, 4 and 5", "output": "The sum is twelve."},
            {"instruction": "Give a synonym for happy.", "input": "", "output": "Glad, cheerful."},
        ]
    ),
    "dolly": Seed(
        [
            {
                "instruction": "When was the old bridge opened?",
                "context": "The old bridge opened in 1932.[3] It is long.",
                "response": "It opened in 1932.",
                "category": "closed_qa",
            }
        ]
    ),
    "reddit_instruct": Seed(
        [
            {
                "post_title": "How long do I boil an egg?",
                "post_text": "Asking for breakfast.",
                "comment_text": "Ten minutes in boiling water.",
                "comment_score": 41,
                "post_score": 120,
            }
        ]
    ),
    "cot": Seed(
        [
            {
                "question": "Tom has three apples and buys four more. How many now?",
                "rationale": "Three apples plus four apples makes seven apples.",
                "answer": "seven",
            }
        ]
    ),
    "tinycot": Seed(
        [
            {
                "prompt": "Is a whale a fish?",
                "rationale": "Whales breathe air and nurse their young.",
                "target": "no",
                "source": "strategyqa",
            }
        ]
    ),
    "gsm8k": Seed([GSM8K]),
    "arc": Seed([ARC]),
    "translation": Seed(
        [{"translation": {"en": "Good morning, friend.", "zh": "早上好，朋友。"}}], {"direction": "zh-en"}
    ),
    "text": Seed([{"text": "The cat sat on the warm mat.", "url": "http://example.org/cat"}]),
    "pairs": Seed([{"prompt": "Name a warm color.", "chosen": "Red is warm.", "rejected": ["Dogs bark.", "Seven."]}]),
}


def records_of(name: str) -> list[dict[str, Any]]:
    """A private copy of a seed's records, free to mutate."""
    return copy.deepcopy(SEEDS[name].records)
