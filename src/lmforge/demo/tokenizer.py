"""A small byte-level BPE tokenizer trained on the demo corpus with the `tokenizers`
library. Digits are split one per token so arithmetic is learnable by a tiny model."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

BASE_SPECIAL_TOKENS = ["<s>", "</s>", "<pad>"]


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int = 512, extra_special_tokens: list[str] = ()
) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    backend.decoder = decoders.ByteLevel()
    special = BASE_SPECIAL_TOKENS + list(extra_special_tokens)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    if extra_special_tokens:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": list(extra_special_tokens)}, replace_extra_special_tokens=False
        )
    return tokenizer
