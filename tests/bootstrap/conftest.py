"""Shared by the bootstrap row tests: the remask prompt format's tokens on the tokenizer, and
one CoT question."""

from __future__ import annotations

import pytest

from lmforge.data.conversation import Conversation, Segment
from lmforge.data.formats import get_format


@pytest.fixture
def remask_question(tokenizer):
    """(prompt format, question) with the format's special tokens and a pad token added."""
    prompt_format = get_format("remask")
    tokenizer.add_special_tokens({"additional_special_tokens": prompt_format.special_tokens(tokenizer)})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    question = Conversation(
        (
            Segment("user", "Tom has 3 apples and gets 4. How many?"),
            Segment("rationale", "3 + 4 = 7."),
            Segment("answer", "7"),
        ),
        "q.jsonl:1",
    )
    return prompt_format, question
