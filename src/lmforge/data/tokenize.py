"""Tokenization with label masks: the rendered text is tokenized once, as a whole (so BPE
merges across piece boundaries come out exactly as at inference), and each token takes the
role of the character it starts at. Labels are the input ids on trained roles, -100
elsewhere ("no training on inputs")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmforge.data.conversation import ROLE_IDS, Conversation
from lmforge.data.formats import Piece, PromptFormat

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]
    token_roles: list[int]

    def as_row(self) -> dict[str, Any]:
        return {"input_ids": self.input_ids, "labels": self.labels, "token_roles": self.token_roles}


def encode_pieces(pieces: list[Piece], tokenizer, add_bos: bool) -> Encoded:
    text = "".join(piece for piece, _ in pieces)
    # role of every character, then of every token by its first character
    char_roles: list[int] = []
    for piece, role in pieces:
        char_roles.extend([ROLE_IDS[role]] * len(piece))
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = list(encoding["input_ids"])
    token_roles = []
    for start, end in encoding["offset_mapping"]:
        # byte-level tokenizers may report a leading space inside the span; any char works
        position = min(start, len(char_roles) - 1) if char_roles else 0
        token_roles.append(char_roles[position] if char_roles else 0)
    if add_bos:
        input_ids.insert(0, tokenizer.bos_token_id)
        token_roles.insert(0, ROLE_IDS["prompt"])
    labels = [tok if role != ROLE_IDS["prompt"] else IGNORE_INDEX for tok, role in zip(input_ids, token_roles)]
    return Encoded(input_ids, labels, token_roles)


def wants_bos(tokenizer, prompt_format: PromptFormat) -> bool:
    """Prepend bos for our own formats when the tokenizer has one; chat templates write
    their own (adding another would double it)."""
    return prompt_format.name != "chat_template" and tokenizer.bos_token_id is not None


def encode_conversation(conversation: Conversation, prompt_format: PromptFormat, tokenizer) -> Encoded:
    pieces = prompt_format.render(conversation, tokenizer)
    return encode_pieces(pieces, tokenizer, add_bos=wants_bos(tokenizer, prompt_format))


def fit_length(encoded: Encoded, max_length: int, overlength: str) -> tuple[Encoded | None, str | None]:
    """Apply the over-length policy. Returns (example or None, drop reason or None)."""
    if len(encoded.input_ids) > max_length:
        if overlength == "drop":
            return None, "too_long"
        encoded = Encoded(
            encoded.input_ids[:max_length], encoded.labels[:max_length], encoded.token_roles[:max_length]
        )
    # position 0's label is never predicted (labels are shifted), so it does not count
    if all(label == IGNORE_INDEX for label in encoded.labels[1:]):
        return None, "no_trained_tokens"
    return encoded, None
