"""Objectives. A loss function is pure: (logits, labels, ..., num_items) -> (loss, metrics).
An `Objective` runs the forward pass(es) a loss needs and calls it; the trainer only calls
the objective. Every objective is listed in `registry.py` with what it declares about
itself (`spec.py`: settings, data, reference, masking); a new one is a module and a line there.

Every objective falls back to plain cross-entropy on evaluation batches (no noise, no
masked inputs), so validation loss and perplexity mean the same thing for all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from lmforge.objectives.ce import cross_entropy_loss, mixce_loss
from lmforge.objectives.forward import forward_outputs, pass_seeds
from lmforge.objectives import shared_prefix
from lmforge.objectives.head import HiddenStates, model_outputs, select_rows
from lmforge.objectives.preference import candidate_scores
from lmforge.objectives.rank import count_rank_items, rank_loss_from_scores
from lmforge.objectives.remask import SHARED_PROMPT, masked_thought_loss, remask_loss, remask_loss_from_selected

logger = logging.getLogger(__name__)

Metrics = dict[str, torch.Tensor]
Objective = Callable[[torch.nn.Module, dict[str, torch.Tensor], Any], tuple[torch.Tensor, Metrics]]


def _is_noisy(batch) -> bool:
    return "masked_input_ids" in batch


def ce_objective(neftune_alpha: float | None = None) -> Objective:
    def objective(model, batch, num_items=None):
        return cross_entropy_loss(
            forward_outputs(model, batch, neftune_alpha=neftune_alpha), batch["labels"], num_items
        )

    return objective


def mixce_objective(ratio: float, neftune_alpha: float | None = None) -> Objective:
    def objective(model, batch, num_items=None):
        logits = forward_outputs(model, batch, neftune_alpha=neftune_alpha)
        if not model.training:
            return cross_entropy_loss(logits, batch["labels"], num_items)
        return mixce_loss(logits, batch["labels"], ratio, num_items)

    return objective


def masked_thought_objective(neftune_alpha: float | None = None) -> Objective:
    def objective(model, batch, num_items=None):
        key = "masked_input_ids" if _is_noisy(batch) else "input_ids"
        logits = forward_outputs(model, batch, ids_key=key, neftune_alpha=neftune_alpha)
        return masked_thought_loss(logits, batch["labels"], num_items)

    return objective


def _two_pass_logits(model, batch, fused: bool, neftune_alpha: float | None):
    """Logits of the full and the masked sequence; fused = one forward over both stacked."""
    if not fused:
        return (
            forward_outputs(model, batch, neftune_alpha=neftune_alpha),
            forward_outputs(model, batch, ids_key="masked_input_ids", neftune_alpha=neftune_alpha),
        )
    stacked = {"input_ids": torch.cat([batch["input_ids"], batch["masked_input_ids"]])}
    for key in ("attention_mask", "position_ids", "token_roles"):
        if key in batch:
            stacked[key] = torch.cat([batch[key], batch[key]])
    if "noise_seed" in batch:  # each half draws the NEFTune noise its own forward would
        stacked["noise_seed"] = torch.cat([pass_seeds(batch, "input_ids"), pass_seeds(batch, "masked_input_ids")])
    outputs = forward_outputs(model, stacked, neftune_alpha=neftune_alpha)  # [2B, T, ...]
    return outputs.split(2) if isinstance(outputs, HiddenStates) else outputs.chunk(2)


_SHARED_PROMPT_FALLBACK_LOGGED: set[str] = set()


def _real_lengths(batch) -> torch.Tensor | None:
    """Real tokens per row if the batch is right-padded and unpacked (positions 0..L-1 on
    the real tokens), else None."""
    input_ids = batch["input_ids"]
    width = input_ids.shape[1]
    positions = torch.arange(width, device=input_ids.device).unsqueeze(0)
    real = batch["attention_mask"].bool() if "attention_mask" in batch else torch.ones_like(input_ids, dtype=torch.bool)
    lengths = real.sum(dim=1)
    if not torch.equal(real, positions < lengths.unsqueeze(1)):
        return None  # left padding or holes
    if "position_ids" in batch and not bool((batch["position_ids"].eq(positions) | ~real).all()):
        return None  # position ids restart inside a row: packed
    return lengths


def shared_prompt_fallback(model, batch, neftune_alpha: float | None) -> str | None:
    """Why ReMask's shared-prompt path cannot run on this batch (None: it can). Decided
    before the probe where the batch alone decides."""
    if "token_example_ids" in batch or _real_lengths(batch) is None:
        return "packed or left-padded rows"
    if neftune_alpha and model.training:
        # a shared prefix would get one NEFTune draw where the two passes draw independently
        return "NEFTune noise"
    if not shared_prefix.supports_shared_prefix(model):  # the one log line is the caller's
        name = type(shared_prefix._inner_model(model)).__name__
        return f"{name} with attention {shared_prefix.attention_implementation(model)!r} ignores the shared-prefix mask"
    return None


def _shared_prompt_loss(model, batch, weight: float, num_items):
    """remask_loss from one forward over `[x[:P] | x[P:L] | m[P:L]]` rows, or None where the
    batch cannot be packed so (a row masked at index 0)."""
    packed = shared_prefix.pack_shared_prompt(
        batch["input_ids"],
        batch["masked_input_ids"],
        batch["labels"],
        _real_lengths(batch),
        mask_dtype=shared_prefix._model_dtype(model),
    )
    if packed is None:
        return None
    outputs = model_outputs(model, **packed.rows.model_inputs())  # hidden states or logits [B, W, ...]
    selected_full = select_rows(outputs, packed.full_index)
    selected_masked = select_rows(outputs, packed.masked_index)
    return remask_loss_from_selected(selected_full, selected_masked, packed.targets, packed.mask, weight, num_items)


def remask_objective(weight: float, fused: bool | str = SHARED_PROMPT, neftune_alpha: float | None = None) -> Objective:
    """ReMask / ReMask-CoT. `fused`: True (one forward over the stacked clean and masked
    batch), False (two forwards) or "shared_prompt": one forward over rows that hold the
    tokens before the first masked one once (shared_prefix.pack_shared_prompt); it falls
    back to the fused forward, with one log line per reason, on packed rows, under NEFTune
    noise, for a model whose attention fails `supports_shared_prefix`, or for a batch with a
    row masked at its first token. Same loss and gradients as the fused path."""
    share_prompt = fused == SHARED_PROMPT

    def objective(model, batch, num_items=None):
        if not _is_noisy(batch):
            return ce_objective(neftune_alpha)(model, batch, num_items)
        if share_prompt:
            reason = shared_prompt_fallback(model, batch, neftune_alpha)
            result = _shared_prompt_loss(model, batch, weight, num_items) if reason is None else None
            if result is not None:
                return result
            reason = reason or "a row masked at its first token"
            if reason not in _SHARED_PROMPT_FALLBACK_LOGGED:
                _SHARED_PROMPT_FALLBACK_LOGGED.add(reason)
                logger.info("ReMask shared prompt: fused passes instead (%s)", reason)
        logits_full, logits_masked = _two_pass_logits(model, batch, bool(fused), neftune_alpha)
        return remask_loss(logits_full, logits_masked, batch["labels"], weight, num_items)

    return objective


def rank_objective(weight: float, neftune_alpha: float | None = None) -> Objective:
    """CE on gold + weight x PRO over ranked generations (docs/methods.md). Its losses are
    normalised by the accumulation window's gold tokens and groups (`count_items`)."""

    def objective(model, batch, num_items=None):
        if "group" not in batch:  # plain evaluation data
            return cross_entropy_loss(forward_outputs(model, batch, neftune_alpha=neftune_alpha), batch["labels"], None)
        scores = candidate_scores(model, batch, neftune_alpha)  # each prompt once for all its responses
        return rank_loss_from_scores(scores.sums, scores.counts, batch, weight, num_items)

    objective.count_items = count_rank_items
    return objective


def build_objective(name: str, params: dict[str, Any], neftune_alpha: float | None = None) -> Objective:
    from lmforge.objectives.registry import OBJECTIVES

    return OBJECTIVES[name].build(params, neftune_alpha)
