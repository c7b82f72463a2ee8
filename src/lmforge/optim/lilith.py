"""Lilith optimizer (seed 004; formulas in docs/methods.md).

Lilith is euclaise's optimizer, used to train ReMask-3B (its Hugging Face model card) and
published in euclaise/supertrainer2000 (`src/supertrainer2k/optim/lilith.py`). No maintained
library ships it, so it is implemented here from its update rule (the class docstring),
step by step. The EMA is e ← ema_β·e + (1 − ema_β)·p, as in the published code, which calls
`ema.lerp_(p, 1 - ema_beta)` (its commit "EMA beta was inverted" fixed an earlier
`lerp_(p, ema_beta)`). Where the published code differs:
- the trust ratio applies to tensors of more than one element; the published code tests
  `sum(shape) > 1`, which also rescales 1×1 tensors;
- the gradient is rescaled out of place; the published code rescales `p.grad` itself, which
  anything reading gradients after the step (logging, clipping statistics) would see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class Lilith(torch.optim.Optimizer):
    """Lilith: trust-ratio-scaled gradients, a momentum with its own momentum
    ("acceleration"), an Adam-style second moment, decoupled weight decay, and an optional
    parameter EMA that is copied into the weights every `ema_k` steps.

    Per parameter p with gradient g at step t (t counts this parameter's updates from 1):

    1. trust ratio (tensors of more than one element):
       g ← g · max(‖p‖ / max(‖g‖, g_norm_min), ratio_min)
    2. m1_old ← m1;  m1 ← β1_m·(m1 + m2) + (1−β1_m)·g;  m2 ← β2_m·m2 + (1−β2_m)·(m1 − m1_old)
    3. u ← m1 + acceleration·m2
    4. v ← β_v·v + (1−β_v)·u²;  v̂ ← v / (1 − β_v^t)
    5. u ← u / sqrt(v̂ + eps) + weight_decay·p;  p ← p − lr·u
    6. if ema_k > 0: e ← ema_β·e + (1−ema_β)·p; every ema_k steps p ← e

    The EMA e starts at the parameter's value before its first update. Parameters whose
    `grad` is None are skipped entirely: neither they nor their state change (lmforge
    skips a non-finite update by clearing every gradient). Any hyper-parameter can be
    overridden per parameter group, e.g. `weight_decay` for a no-decay group.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
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
    ):
        if lr < 0.0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        for name, beta in (("beta1_m", beta1_m), ("beta2_m", beta2_m), ("beta_v", beta_v), ("ema_beta", ema_beta)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {beta}")
        for name, value in (
            ("eps", eps),
            ("weight_decay", weight_decay),
            ("g_norm_min", g_norm_min),
            ("ratio_min", ratio_min),
        ):
            if value < 0.0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not isinstance(ema_k, int) or ema_k < 0:
            raise ValueError(f"ema_k must be an integer >= 0, got {ema_k!r}")
        defaults = dict(
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
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Lilith does not support sparse gradients")
                self._update(p, p.grad, self.state[p], group)
        return loss

    @staticmethod
    def _update(p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        # every tensor below has p's shape; norms and the trust ratio are 0-dim
        if not state:
            state["step"] = 0
            state["m1"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["m2"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["ema_k"] > 0 and "ema" not in state:
            state["ema"] = p.clone(memory_format=torch.preserve_format)
        state["step"] += 1
        t = state["step"]
        m1, m2, v = state["m1"], state["m2"], state["v"]

        # 1. g ← g · max(‖p‖ / max(‖g‖, g_norm_min), ratio_min); out of place, so the
        #    caller's p.grad is left as it was
        g = grad
        if p.numel() > 1:
            ratio = (p.norm() / g.norm().clamp(min=group["g_norm_min"])).clamp(min=group["ratio_min"])
            g = g * ratio

        # 2. m1 ← β1_m·(m1 + m2) + (1−β1_m)·g;  m2 ← β2_m·m2 + (1−β2_m)·(m1 − m1_old)
        beta1, beta2 = group["beta1_m"], group["beta2_m"]
        m1_old = m1.clone()
        m1.add_(m2).mul_(beta1).add_(g, alpha=1.0 - beta1)
        m2.mul_(beta2).add_(m1 - m1_old, alpha=1.0 - beta2)

        # 3. u ← m1 + acceleration·m2
        u = m1.add(m2, alpha=group["acceleration"])

        # 4. v ← β_v·v + (1−β_v)·u²;  v̂ ← v / (1 − β_v^t)
        beta_v = group["beta_v"]
        v.mul_(beta_v).addcmul_(u, u, value=1.0 - beta_v)
        v_hat = v / (1.0 - beta_v**t)

        # 5. u ← u / sqrt(v̂ + eps) + weight_decay·p;  p ← p − lr·u  (decay uses p before the update)
        u.div_(v_hat.add_(group["eps"]).sqrt_()).add_(p, alpha=group["weight_decay"])
        p.add_(u, alpha=-group["lr"])

        # 6. e ← ema_β·e + (1−ema_β)·p;  every ema_k steps p ← e
        if group["ema_k"] > 0:
            ema = state["ema"]
            ema.mul_(group["ema_beta"]).add_(p, alpha=1.0 - group["ema_beta"])
            if t % group["ema_k"] == 0:
                p.copy_(ema)
