"""Batched log-likelihood scoring: of a continuation given a context (multiple choice), of
a whole text in rolling windows (perplexity), and of the label tokens of an encoded
conversation (chat perplexity). Tokenization follows lm-evaluation-harness 0.4.x so that
scores agree with it: the pair is encoded whole and split at the context's length, with
the context's trailing spaces moved to the continuation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lmforge.eval.generate import progress_bar


@dataclass(frozen=True)
class Scored:
    loglik: float
    """Sum of log p over the scored tokens (natural log)."""
    is_greedy: bool
    """Every scored token is the argmax of its distribution."""
    tokens: int


@dataclass(frozen=True)
class Row:
    """Token ids and which of them are scored: position i > 0 is scored when
    `scored[i]`; it is predicted from ids[:i]."""

    ids: list[int]
    scored: list[bool]


def encode(tokenizer, text: str) -> list[int]:
    # Prompts carry any BOS as text, so nothing is added here.
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as the harness splits them (`_encode_pair`)."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = encode(tokenizer, context + continuation)
    context_ids = encode(tokenizer, context)
    return context_ids, whole[len(context_ids) :]


def prefix_token_id(tokenizer) -> int:
    """What an empty context is conditioned on (the harness: bos, else eos)."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def pair_row(context_ids: list[int], continuation_ids: list[int], max_length: int) -> Row:
    """Context + continuation, left-truncated to max_length + 1 ids (the last is never an input)."""
    ids = (context_ids + continuation_ids)[-(max_length + 1) :]
    n = min(len(continuation_ids), len(ids) - 1)
    return Row(ids, [False] * (len(ids) - n) + [True] * n)


def rolling_rows(token_ids: list[int], prefix_id: int, max_length: int) -> list[Row]:
    """Disjoint windows that score every token exactly once, each with as much context as
    fits (the harness's `get_rolling_token_windows` with context_len 1)."""
    rows = []
    first = min(max_length, len(token_ids))
    if first:
        rows.append(Row([prefix_id] + token_ids[:first], [False] + [True] * first))
    predicted = first
    while predicted < len(token_ids):
        n = min(len(token_ids) - predicted, max_length)
        end = predicted + n
        window = token_ids[max(0, end - max_length - 1) : end]
        rows.append(Row(window, [False] * (len(window) - n) + [True] * n))
        predicted = end
    return rows


def config_max_length(config, default: int = 2048) -> int:
    """The longest sequence a model config allows (the harness's lookup order)."""
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


def model_max_length(model) -> int:
    return config_max_length(model.config)


@torch.no_grad()
def score_rows(
    model, rows: Sequence[Row], pad_id: int, batch_size: int = 16, show_progress: bool = False, label: str = "scoring"
) -> list[Scored]:
    """Log-likelihood of the scored tokens of every row. Rows are batched longest first
    (right-padded, so positions need no correction) and returned in input order."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].ids))
    results: list[Scored | None] = [None] * len(rows)
    try:
        with progress_bar(label, len(rows), show_progress) as advance:
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                width = len(rows[chunk[0]].ids) - 1
                inputs = torch.full((len(chunk), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for b, i in enumerate(chunk):
                    ids = rows[i].ids[:-1]
                    inputs[b, : len(ids)] = torch.tensor(ids)
                    mask[b, : len(ids)] = 1
                logits = model(input_ids=inputs.to(model.device), attention_mask=mask.to(model.device)).logits
                for b, i in enumerate(chunk):
                    row = rows[i]
                    scored_at = [p for p, s in enumerate(row.scored) if s and p > 0]
                    positions = torch.tensor([p - 1 for p in scored_at], dtype=torch.long)  # logits[p-1] predict ids[p]
                    targets = torch.tensor([row.ids[p] for p in scored_at], dtype=torch.long)
                    # log-softmax only where scored: vocab x sequence would not fit for big vocabularies
                    logprobs = torch.log_softmax(logits[b, positions.to(logits.device)].float(), dim=-1).cpu()
                    picked = logprobs.gather(-1, targets[:, None])[:, 0]
                    results[i] = Scored(float(picked.sum()), bool((logprobs.argmax(-1) == targets).all()), len(targets))
                advance(len(chunk))
    finally:
        model.train(was_training)
    return results
