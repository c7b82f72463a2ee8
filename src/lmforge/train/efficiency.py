"""How close a run comes to the hardware, in its summary: real tokens per second, the share
of batch slots spent on padding, and the model FLOP/s achieved against the machine's matmul
roof, measured once at start-up by timing large matrix products (`train.measure_roof`).

Model FLOPs use the usual dense-transformer count, 6 x parameters x tokens per forward and
backward pass (Kaplan et al. 2020), times the objective's passes (ReMask runs two) — the
attention-score term and activation recomputation are left out, so the utilisation is a
lower bound of what the hardware did. Adapter runs still count every parameter: the base's
forward and the activations' backward run in full; only the weight gradients are skipped,
so the figure is an approximation there too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

ROOF_SIZE = 1024
ROOF_SECONDS = 2.0


@dataclass
class TokenCounter:
    """Real tokens and batch slots (rows x width) of the training batches seen. While
    training, `tokens` is a tensor on the batches' device: counting never waits for it."""

    tokens: int | torch.Tensor = 0
    slots: int = 0

    def observe(self, batch: dict[str, torch.Tensor]) -> None:
        ids = batch["input_ids"]
        if "attention_mask" in batch and batch["attention_mask"].dim() == 2:
            real = batch["attention_mask"].sum()
        elif "token_roles" in batch:  # packed rows: padding has role -1
            real = batch["token_roles"].ge(0).sum()
        else:
            real = ids.numel()
        self.tokens = self.tokens + real
        self.slots += ids.numel()


def matmul_roof(
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seconds: float | None = None,
    size: int = ROOF_SIZE,
) -> float:
    """FLOP/s of repeated size x size matrix products on `device` in `dtype`, for about
    `seconds` (default ROOF_SECONDS; after one warm-up product)."""
    seconds = ROOF_SECONDS if seconds is None else seconds
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(a, b)
    synchronize = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    synchronize()
    products, start = 0, time.perf_counter()
    while True:
        torch.mm(a, b)
        products += 1
        synchronize()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2 * size**3 * products / elapsed


def efficiency_summary(
    counter: TokenCounter, train_seconds: float, parameters: int, passes: int, roof: float | None, processes: int = 1
) -> dict[str, float | None]:
    """tokens/s, padding fraction, model FLOP/s and its share of the roof (of all processes).

    >>> summary = efficiency_summary(TokenCounter(900, 1000), 10.0, 1_000_000, 2, 1e12)
    >>> summary["tokens_per_second"], round(summary["padding_fraction"], 12), summary["model_flops_per_second"]
    (90.0, 0.1, 1080000000.0)
    >>> summary["roof_utilisation"]
    0.00108
    """
    seconds = max(train_seconds, 1e-9)
    flops = 6.0 * parameters * counter.tokens * passes / seconds
    return {
        "tokens_per_second": counter.tokens / seconds,
        "padding_fraction": 1.0 - counter.tokens / counter.slots if counter.slots else 0.0,
        "model_flops_per_second": flops,
        "roof_flops_per_second": roof * processes if roof else None,
        "roof_utilisation": flops / (roof * processes) if roof else None,
    }


def summary_line(summary: dict[str, float | None]) -> str:
    line = (
        f"{summary['tokens_per_second']:,.0f} tokens/s, {summary['padding_fraction']:.1%} of batch slots "
        f"padding, {summary['model_flops_per_second'] / 1e9:,.2f} model GFLOP/s"
    )
    if summary["roof_utilisation"] is not None:
        line += (
            f" = {summary['roof_utilisation']:.1%} of the measured matmul roof "
            f"({summary['roof_flops_per_second'] / 1e9:,.1f} GFLOP/s)"
        )
    return line


def machine_roof(precision: str, device) -> float:
    """The matmul roof in the dtype the run computes in (train.precision)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    return matmul_roof(device, dtype)


def run_efficiency(
    trainer, train_seconds: float, parameters: int, passes: int, roof: float | None, processes: int
) -> dict[str, float | None]:
    """The efficiency summary over every process's batches (all processes call this)."""
    counter = trainer.token_counter
    counts = torch.tensor([int(counter.tokens), counter.slots], device=trainer.args.device)
    if processes > 1:
        counts = trainer.accelerator.reduce(counts, reduction="sum")
    return efficiency_summary(
        TokenCounter(int(counts[0]), int(counts[1])), train_seconds, parameters, passes, roof, processes
    )
