"""Tokenization with label masks: the rendered text is tokenized once, as a whole (so BPE
merges across piece boundaries come out exactly as at inference), and each token takes the
role of the character it starts at. Labels are the input ids on trained roles, -100
elsewhere ("no training on inputs")."""

from __future__ import annotations

import bisect
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
    return encode_pieces_batch([pieces], tokenizer, [add_bos])[0]


def encode_pieces_batch(batch: list[list[Piece]], tokenizer, add_bos: list[bool]) -> list[Encoded]:
    """Tokenize many rendered texts in one tokenizer call (the Rust side batches them);
    each token takes the role of the piece holding its first character."""
    texts = ["".join(piece for piece, _ in pieces) for pieces in batch]
    encodings = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for pieces, ids, offsets, bos in zip(batch, encodings["input_ids"], encodings["offset_mapping"], add_bos):
        ends, roles, end = [], [], 0  # piece i covers characters [ends[i-1], ends[i])
        for piece, role in pieces:
            if piece:
                end += len(piece)
                ends.append(end)
                roles.append(ROLE_IDS[role])
        last = len(roles) - 1
        # byte-level tokenizers may report a leading space inside the span; any char works
        token_roles = [roles[min(bisect.bisect_right(ends, start), last)] if roles else 0 for start, _ in offsets]
        input_ids = list(ids)
        if bos:
            input_ids.insert(0, tokenizer.bos_token_id)
            token_roles.insert(0, ROLE_IDS["prompt"])
        prompt = ROLE_IDS["prompt"]
        labels = [tok if role != prompt else IGNORE_INDEX for tok, role in zip(input_ids, token_roles)]
        out.append(Encoded(input_ids, labels, token_roles))
    return out


def wants_bos(tokenizer, prompt_format: PromptFormat) -> bool:
    """Prepend bos for our own formats when the tokenizer has one; chat templates write
    their own (adding another would double it)."""
    return prompt_format.name != "chat_template" and tokenizer.bos_token_id is not None


def render_pieces(conversation: Conversation, prompt_format: PromptFormat, tokenizer) -> list[Piece]:
    """Plain text (pretraining) is the same in every prompt format: the text and eos, all
    trained; conversations go through the format."""
    if conversation.is_plain_text:
        text = "".join(s.text for s in conversation.segments)
        return [(text, "text")] + ([(tokenizer.eos_token, "text")] if tokenizer.eos_token else [])
    return prompt_format.render(conversation, tokenizer)


def encode_conversation(conversation: Conversation, prompt_format: PromptFormat, tokenizer) -> Encoded:
    return encode_conversations([conversation], prompt_format, tokenizer)[0]


def encode_conversations(conversations: list[Conversation], prompt_format: PromptFormat, tokenizer) -> list[Encoded]:
    fmt_bos = wants_bos(tokenizer, prompt_format)
    has_bos = tokenizer.bos_token_id is not None
    return encode_pieces_batch(
        [render_pieces(c, prompt_format, tokenizer) for c in conversations],
        tokenizer,
        [fmt_bos or (c.is_plain_text and has_bos) for c in conversations],
    )


def fit_length(encoded: Encoded, max_length: int | None, overlength: str) -> tuple[Encoded | None, str | None]:
    """Apply the over-length policy (`max_length` None: no limit). Returns (example or None,
    drop reason or None)."""
    if max_length is not None and len(encoded.input_ids) > max_length:
        if overlength == "drop":
            return None, "too_long"
        encoded = Encoded(encoded.input_ids[:max_length], encoded.labels[:max_length], encoded.token_roles[:max_length])
    # position 0's label is never predicted (labels are shifted), so it does not count
    if all(label == IGNORE_INDEX for label in encoded.labels[1:]):
        return None, "no_trained_tokens"
    return encoded, None
