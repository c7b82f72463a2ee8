"""Optimizer factory: torch AdamW, pytorch-optimizer's Adalite (seed 000) and lmforge's own
Lilith (source 004), built from plain arguments over parameter groups the caller prepares.

Each builder takes the parameter groups and its own optimizer's keyword names, with that
optimizer's defaults; a key another optimizer uses (Adam's `eps` for Adalite, say) is a
TypeError, so a config can't silently set a knob the chosen optimizer doesn't have.
A group's own "weight_decay" (see `parameter_groups`) overrides the builder's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lmforge.optim.lilith import Lilith

OptimizerBuilder = Callable[..., torch.optim.Optimizer]


def _adamw(
    groups,
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
) -> torch.optim.Optimizer:
    groups = list(groups)
    # torch's fused kernel: one pass over each parameter instead of a dozen elementwise ops
    # (the step 4-5x faster on CPU: bench/optimizer_step.py), the same update to float
    # rounding (tests/optim/test_optimizers.py). torch checks devices only at the first
    # step, so the choice is made here, for the devices it has kernels for on every build.
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in _parameters(groups))
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, fused=fused)


def _parameters(groups: list) -> list[torch.Tensor]:
    return [p for group in groups for p in (group["params"] if isinstance(group, dict) else [group])]


def _adalite(
    groups,
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 0.01,
    g_norm_min: float = 1e-10,
    ratio_min: float = 1e-4,
    tau: float = 1.0,
    eps1: float = 1e-6,
    eps2: float = 1e-10,
) -> torch.optim.Optimizer:
    # pytorch-optimizer's Adalite with its own defaults; seed 000's "Lambda" is its
    # weight_decay. eps1 plays Adam's eps (though added under the square root: u/sqrt(v + eps1));
    # eps2 only guards the factored moments' normalizers; tau is the softmax temperature of
    # the row/column importance weights.
    from pytorch_optimizer import Adalite

    return Adalite(
        groups,
        lr=lr,
        betas=tuple(betas),
        weight_decay=weight_decay,
        g_norm_min=g_norm_min,
        ratio_min=ratio_min,
        tau=tau,
        eps1=eps1,
        eps2=eps2,
    )


def _lilith(
    groups,
    *,
    lr: float,
    eps: float = 1e-8,
    beta1_m: float = 0.9,
    beta2_m: float = 0.99,
    beta_v: float = 0.999,
    weight_decay: float = 0.01,
    g_norm_min: float = 1e-4,
    ratio_min: float = 1e-4,
    acceleration: float = 1.0,
    ema_k: int = 0,
    ema_beta: float = 0.99,
) -> torch.optim.Optimizer:
    return Lilith(
        groups,
        lr=lr,
        eps=eps,
        beta1_m=beta1_m,
        beta2_m=beta2_m,
        beta_v=beta_v,
        weight_decay=weight_decay,
        g_norm_min=g_norm_min,
        ratio_min=ratio_min,
        acceleration=acceleration,
        ema_k=ema_k,
        ema_beta=ema_beta,
    )


OPTIMIZERS: dict[str, OptimizerBuilder] = {"adamw": _adamw, "adalite": _adalite, "lilith": _lilith}


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
    """The optimizer registered as `name` (KeyError if none) over `groups`, with `hyper`
    passed as that builder's keyword arguments (TypeError for a key it doesn't take)."""
    return OPTIMIZERS[name](groups, **hyper)
