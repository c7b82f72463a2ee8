"""A small byte-level BPE tokenizer trained on the demo corpus (lmforge/tokenizer_train.py
trains it). Digits are split one per token so arithmetic is learnable by a tiny model."""

from __future__ import annotations

from collections.abc import Iterable

from transformers import PreTrainedTokenizerFast

from lmforge import tokenizer_train

BASE_SPECIAL_TOKENS = ["<s>", "</s>", "<pad>"]


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int = 512, extra_special_tokens: list[str] = ()
) -> PreTrainedTokenizerFast:
    return tokenizer_train.train_bpe_tokenizer(
        texts,
        vocab_size,
        BASE_SPECIAL_TOKENS + list(extra_special_tokens),
        bos="<s>",
        eos="</s>",
        pad="<pad>",
        split_digits=True,
    )
