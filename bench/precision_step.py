"""bf16 autocast step time / fp32 step time on CPU (or GPU when present), same model and
batch: forward + backward + AdamW step, as the Trainer runs it with train.precision bf16.
Not a test: timings on shared machines are noisy; compare the ratio within one run.

    python bench/precision_step.py [--hidden 512 --layers 4 --batch 8 --seq 256 --steps 6]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmforge.objectives import build_objective


def time_steps(model, batch, steps: int, autocast_dtype: torch.dtype | None) -> float:
    objective = build_objective("ce", {})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    device = batch["input_ids"].device.type

    def step():
        context = torch.autocast(device, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
        with context:
            loss, _ = objective(model, batch, None)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(2):  # warm up allocator and kernels
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=4 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=8,
        num_key_value_heads=8,
    )
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(4, args.vocab, (args.batch, args.seq), generator=generator).to(device)
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": input_ids}
    timings = {}
    for name, dtype in [("fp32", None), ("bf16 autocast", torch.bfloat16)]:
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).to(device).train()
        timings[name] = time_steps(model, batch, args.steps, dtype)
        print(f"{name:>14}: {timings[name] * 1000:8.1f} ms/step")
    print(f"bf16 / fp32 step time on {device}: {timings['bf16 autocast'] / timings['fp32']:.2f}")


if __name__ == "__main__":
    main()
