"""Objectives. A loss function is pure: (logits, labels, num_items) -> (loss, metrics).
An `Objective` runs the model forward pass(es) a loss needs and calls it; the trainer
only calls the objective. New objectives register a builder in `OBJECTIVES`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from lmforge.objectives.ce import cross_entropy_loss, mixce_loss

LossFn = Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]
Objective = Callable[[torch.nn.Module, dict[str, torch.Tensor], Any], tuple[torch.Tensor, dict[str, torch.Tensor]]]

MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What the model sees: never labels (the loss is ours), never a KV cache."""
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def single_pass(loss_fn: LossFn) -> Objective:
    """One forward pass, then `loss_fn` on its logits."""

    def objective(model, batch, num_items=None):
        logits = model(**model_inputs(batch), use_cache=False).logits
        return loss_fn(logits, batch["labels"], num_items=num_items)

    return objective


OBJECTIVES: dict[str, Callable[[dict[str, Any]], Objective]] = {
    "ce": lambda params: single_pass(cross_entropy_loss),
    "mixce": lambda params: single_pass(functools.partial(mixce_loss, ratio=params["ratio"])),
}


def build_objective(name: str, params: dict[str, Any]) -> Objective:
    return OBJECTIVES[name](params)
