"""Learning-rate schedules over optimizer steps. The standard shapes come from
transformers' `get_scheduler`; schedules no maintained library offers are added here by
later work (one-cycle, sigmoid warmup, WSD)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LRScheduler
from transformers import get_scheduler

ScheduleBuilder = Callable[[torch.optim.Optimizer, int, int], LRScheduler]


def _transformers(kind: str) -> ScheduleBuilder:
    def build(optimizer, total_steps, warmup_steps):
        return get_scheduler(kind, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)

    return build


SCHEDULES: dict[str, ScheduleBuilder] = {
    "cosine": _transformers("cosine"),  # linear warmup, cosine decay to 0
    "linear": _transformers("linear"),  # linear warmup, linear decay to 0
    "constant": _transformers("constant_with_warmup"),
}


def warmup_steps_for(total_steps: int, warmup_ratio: float, warmup_steps: int | None = None) -> int:
    return warmup_steps if warmup_steps is not None else math.ceil(total_steps * warmup_ratio)


def build_schedule(
    name: str, optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float = 0.0,
    warmup_steps: int | None = None,
) -> LRScheduler:
    return SCHEDULES[name](optimizer, total_steps, warmup_steps_for(total_steps, warmup_ratio, warmup_steps))
