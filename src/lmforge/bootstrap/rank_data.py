"""Bootstrap finetuning data. Rank finetuning: one row per question with its gold response
and (chosen, rejected) generations, each rendered in the prompt format with the response
as labels; the collator flattens a micro-batch of rows into sequences with
group/order/is_gold. Rejection-sampling SFT: one row per correct generation, padded by the
SFT data's PadCollator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset

from lmforge.data.collate import candidate_batch
from lmforge.data.conversation import Conversation
from lmforge.data.formats import PromptFormat
from lmforge.data.tokenize import encode_pieces, wants_bos


def sampling_prompt(conversation: Conversation, prompt_format: PromptFormat, tokenizer) -> str:
    """The prompt a question's responses are sampled from, rationale first, and the one
    they are trained after: one function, so a response is never trained under a prompt
    it was not sampled with."""
    return prompt_format.generation_prompt(conversation.prompt_segments(), tokenizer, cot=True)


def encode_response(
    conversation: Conversation, response: str | None, prompt_format: PromptFormat, tokenizer, max_length: int
) -> dict[str, list[int]]:
    """The question with `response` (generated text) or, when None, the gold response.
    Generated responses already carry the answer tag; they are trained as written, eos included."""
    if response is None:
        pieces = prompt_format.render(conversation, tokenizer)
    else:
        pieces = [
            (sampling_prompt(conversation, prompt_format, tokenizer), "prompt"),
            (response + tokenizer.eos_token, "assistant"),
        ]
    encoded = encode_pieces(pieces, tokenizer, add_bos=wants_bos(tokenizer, prompt_format))
    return {
        "input_ids": encoded.input_ids[:max_length],
        "labels": encoded.labels[:max_length],
        "token_roles": encoded.token_roles[:max_length],
    }


def rank_rows(
    questions: list[Conversation], pairs: list[dict], prompt_format: PromptFormat, tokenizer, max_length: int
) -> list[dict[str, Any]]:
    """One row per pair (gold, chosen at order 0, rejected at order 1) or per group (gold,
    every correct response at order 0, every incorrect one at order 1)."""
    rows = []
    for entry in pairs:
        question = questions[entry["question_id"]]
        better, worse = (
            (entry["correct"], entry["incorrect"]) if "correct" in entry else ([entry["chosen"]], [entry["rejected"]])
        )
        texts = [None, *better, *worse]
        sequences = [encode_response(question, text, prompt_format, tokenizer, max_length) for text in texts]
        rows.append(
            {
                "input_ids": [s["input_ids"] for s in sequences],
                "labels": [s["labels"] for s in sequences],
                "order": [0] * (1 + len(better)) + [1] * len(worse),
                "is_gold": [True] + [False] * (len(better) + len(worse)),
            }
        )
    return rows


def correct_rows(
    questions: list[Conversation], correct: list[dict], prompt_format: PromptFormat, tokenizer, max_length: int
) -> list[dict[str, Any]]:
    """Rejection sampling: one row per (question_id, response) of `correct`, the response
    trained after the prompt it was sampled from (no gold response, no incorrect one)."""
    return [
        encode_response(questions[entry["question_id"]], entry["response"], prompt_format, tokenizer, max_length)
        for entry in correct
    ]


def rank_dataset(rows: list[dict[str, Any]]) -> Dataset:
    return Dataset.from_list(rows)


@dataclass
class RankCollator:
    pad_token_id: int

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ranked = [list(zip(row["input_ids"], row["labels"], row["order"], row["is_gold"])) for row in rows]
        return candidate_batch(self.pad_token_id, rows, ranked)
