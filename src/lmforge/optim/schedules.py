"""Learning-rate schedules over optimizer steps (docs/methods.md).

Every builder takes `(optimizer, total_steps, warmup_steps, **options)`, where options are
that schedule's own keywords. Conventions shared by all of them, and by transformers'
schedules: step s's learning rate is the one used for the (s+1)-th optimizer update, for
s = 0 .. total_steps−1; warmup reaches the peak (each group's lr) at step `warmup_steps`;
and the scheduler may be stepped `total_steps` times (the Trainer steps it after every
update), the value after the last step being the schedule's end point.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR
from transformers import get_scheduler, get_wsd_schedule

ScheduleBuilder = Callable[..., LRScheduler]


def _cosine(optimizer, total_steps: int, warmup_steps: int, *, min_lr_ratio: float = 0.0) -> LRScheduler:
    """Linear warmup from 0, then half a cosine from lr down to min_lr_ratio·lr at total_steps."""
    if min_lr_ratio == 0.0:
        return get_scheduler("cosine", optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)
    return get_scheduler(
        "cosine_with_min_lr",
        optimizer,
        num_warmup_steps=warmup_steps,
        num_training_steps=total_steps,
        scheduler_specific_kwargs={"min_lr_rate": min_lr_ratio},
    )


def _linear(optimizer, total_steps: int, warmup_steps: int) -> LRScheduler:
    """Linear warmup from 0, then linear decay to 0 at total_steps."""
    return get_scheduler("linear", optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)


def _constant(optimizer, total_steps: int, warmup_steps: int) -> LRScheduler:
    """Linear warmup from 0, then constant lr."""
    return get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=warmup_steps)


def _one_cycle(
    optimizer,
    total_steps: int,
    warmup_steps: int,
    *,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> LRScheduler:
    """One-cycle cosine without cycle momentum (source 004), torch's OneCycleLR.

    The lr rises along a half cosine from lr/div_factor at step 0 to the group's lr at step
    `warmup_steps`, then falls along a half cosine to lr/(div_factor·final_div_factor) at
    step total_steps. OneCycleLR ends its cycle at its step `total_steps − 1` and refuses
    to go more than one step beyond, so it is given total_steps + 1 steps: the cycle then
    ends where the other schedules end, and stepping total_steps times stays inside it.

    OneCycleLR's rising phase must last at least one step, so without warmup this is the
    falling half alone, a cosine from lr at step 0 to the same floor at total_steps, which
    transformers' cosine_with_min_lr gives exactly.
    """
    if warmup_steps == 0:
        return _cosine(optimizer, total_steps, 0, min_lr_ratio=1.0 / (div_factor * final_div_factor))
    steps = total_steps + 1
    return OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=steps,
        pct_start=(warmup_steps + 1) / steps,
        anneal_strategy="cos",
        cycle_momentum=False,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
    )


def _logistic(x: float, steepness: float) -> float:
    return 1.0 / (1.0 + math.exp(-steepness * (x - 0.5)))


def _sigmoid_multiplier(step: int, *, warmup_steps: int, total_steps: int, steepness: float, decay: str) -> float:
    if step < warmup_steps:
        low, high = _logistic(0.0, steepness), _logistic(1.0, steepness)
        return (_logistic(step / warmup_steps, steepness) - low) / (high - low)
    if decay == "none":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _sigmoid(
    optimizer,
    total_steps: int,
    warmup_steps: int,
    *,
    steepness: float = 10.0,
    decay: str = "none",
) -> LRScheduler:
    """Sigmoid warmup that "starts slow, rapidly accelerates, and finally stabilizes"
    (source 002). With x = step / warmup_steps and σ_k(x) = 1 / (1 + exp(−k·(x − ½))), the
    lr multiplier during warmup is

        f(x) = (σ_k(x) − σ_k(0)) / (σ_k(1) − σ_k(0)),

    the logistic curve rescaled to run from exactly 0 at step 0 to exactly 1 at step
    warmup_steps (k = steepness; larger is slower at first and steeper in the middle; with
    k = 10, f(0.1) ≈ 0.011 and f(0.5) = 0.5). After warmup the multiplier is 1
    (decay="none") or half a cosine from 1 at warmup_steps to 0 at total_steps
    (decay="cosine").
    """
    if steepness <= 0:
        raise ValueError(f"steepness must be > 0, got {steepness}")
    if decay not in ("none", "cosine"):
        raise ValueError(f"decay must be 'none' or 'cosine', got {decay!r}")
    multiplier = partial(
        _sigmoid_multiplier, warmup_steps=warmup_steps, total_steps=total_steps, steepness=steepness, decay=decay
    )
    return LambdaLR(optimizer, multiplier)


def _wsd(
    optimizer,
    total_steps: int,
    warmup_steps: int,
    *,
    decay_ratio: float = 0.1,
    min_lr_ratio: float = 0.0,
    decay_type: str = "cosine",
) -> LRScheduler:
    """Warmup-stable-decay, transformers' get_wsd_schedule: linear warmup from
    min_lr_ratio·lr to lr, constant lr, then a decay (decay_type "cosine", "linear" or
    "1-sqrt") over the last ceil(decay_ratio·total_steps) steps, reaching min_lr_ratio·lr at
    total_steps."""
    decay_steps = math.ceil(total_steps * decay_ratio)
    if warmup_steps + decay_steps > total_steps:
        raise ValueError(f"wsd: {warmup_steps} warmup + {decay_steps} decay steps exceed {total_steps} total steps")
    return get_wsd_schedule(
        optimizer,
        num_warmup_steps=warmup_steps,
        num_decay_steps=decay_steps,
        num_training_steps=total_steps,
        min_lr_ratio=min_lr_ratio,
        decay_type=decay_type,
    )


SCHEDULES: dict[str, ScheduleBuilder] = {
    "cosine": _cosine,
    "linear": _linear,
    "constant": _constant,
    "one_cycle": _one_cycle,
    "sigmoid": _sigmoid,
    "wsd": _wsd,
}


def warmup_steps_for(total_steps: int, warmup_ratio: float, warmup_steps: int | None = None) -> int:
    return warmup_steps if warmup_steps is not None else math.ceil(total_steps * warmup_ratio)


def build_schedule(
    name: str,
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_ratio: float = 0.0,
    warmup_steps: int | None = None,
    **options,
) -> LRScheduler:
    """The schedule registered as `name` (KeyError if none); `options` are its own keywords
    (TypeError for one it doesn't take). warmup_steps, when given, overrides warmup_ratio."""
    warmup = warmup_steps_for(total_steps, warmup_ratio, warmup_steps)
    return SCHEDULES[name](optimizer, total_steps, warmup, **options)


def learning_rates(
    name: str,
    total_steps: int,
    lr: float,
    warmup_ratio: float = 0.0,
    warmup_steps: int | None = None,
    **options,
) -> list[float]:
    """The learning rate at every step 0 .. total_steps−1 of a schedule with peak `lr`
    (for plotting), read off the schedule built over one dummy parameter."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = build_schedule(name, optimizer, total_steps, warmup_ratio, warmup_steps, **options)
    rates = []
    for _ in range(total_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradient, so a no-op; keeps torch from warning about step order
        schedule.step()
    return rates
