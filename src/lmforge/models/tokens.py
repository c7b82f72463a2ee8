"""Special tokens a prompt format needs: add the missing ones, grow the embeddings, and
remember which rows are new (frozen-embedding training keeps exactly those trainable)."""

from __future__ import annotations

from transformers import PreTrainedModel


def add_tokenizer_tokens(tokenizer, tokens: list[str]) -> list[int]:
    """Add `tokens` not yet in the vocabulary to the tokenizer alone, as special tokens and in
    this order; return the ids of the added ones. Training (add_special_tokens) and the data
    preview (data/inspect.py) both prepare their tokenizer with it."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return list(tokenizer.convert_tokens_to_ids(missing))


def add_special_tokens(model: PreTrainedModel, tokenizer, tokens: list[str]) -> list[int]:
    """Add `tokens` not yet in the vocabulary; return the ids of the added ones."""
    new_ids = add_tokenizer_tokens(tokenizer, tokens)
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        # transformers initialises the new rows from the mean/covariance of the old ones
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return list(new_ids)
