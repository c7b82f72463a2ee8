"""Optimizer factory: torch AdamW and pytorch-optimizer's Adalite (seed 000), built from
plain arguments over parameter groups the caller prepares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

OptimizerBuilder = Callable[..., torch.optim.Optimizer]


def _adamw(groups, lr, betas, eps, weight_decay) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def _adalite(groups, lr, betas, eps, weight_decay) -> torch.optim.Optimizer:
    # pytorch-optimizer's Adalite; seed 000's "Lambda" is its weight_decay
    from pytorch_optimizer import Adalite

    return Adalite(groups, lr=lr, betas=betas, weight_decay=weight_decay)


OPTIMIZERS: dict[str, OptimizerBuilder] = {"adamw": _adamw, "adalite": _adalite}


def parameter_groups(
    named_parameters: list[tuple[str, torch.nn.Parameter]],
    decay_names: set[str],
    weight_decay: float,
    no_decay_params: list[torch.nn.Parameter] = (),
) -> list[dict[str, Any]]:
    """Split trainable parameters into a weight-decay group and a no-decay group."""
    excluded = {id(p) for p in no_decay_params}
    decay, no_decay = [], []
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        (decay if name in decay_names and id(param) not in excluded else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(name: str, groups: list[dict[str, Any]], **hyper) -> torch.optim.Optimizer:
    return OPTIMIZERS[name](groups, **hyper)
