"""Objectives. A loss function is pure: (logits, labels, ..., num_items) -> (loss, metrics).
An `Objective` runs the forward pass(es) a loss needs and calls it; the trainer only calls
the objective. Every objective is listed in `registry.py` with what it declares about
itself (`spec.py`: settings, data, reference, masking); a new one is a module and a line there.

Every objective falls back to plain cross-entropy on evaluation batches (no noise, no
masked inputs), so validation loss and perplexity mean the same thing for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lmforge.objectives.ce import cross_entropy_loss, mixce_loss
from lmforge.objectives.forward import forward_outputs, pass_seeds
from lmforge.objectives.head import HiddenStates
from lmforge.objectives.preference import candidate_scores
from lmforge.objectives.rank import count_rank_items, rank_loss_from_scores
from lmforge.objectives.remask import masked_thought_loss, remask_loss

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


def remask_objective(weight: float, fused: bool = True, neftune_alpha: float | None = None) -> Objective:
    def objective(model, batch, num_items=None):
        if not _is_noisy(batch):
            return ce_objective(neftune_alpha)(model, batch, num_items)
        logits_full, logits_masked = _two_pass_logits(model, batch, fused, neftune_alpha)
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
