"""ReMask step time / SFT step time on the same batch and model (target <= 2.0: ReMask is
two passes). Prints the ratio for the fused (one forward over the stacked batch), the
shared-prompt (one forward over `[x[:P] | x[P:L] | m[P:L]]` rows: the tokens before the first
masked one computed once) and the two-pass implementation. The synthetic rows are a prompt of
`--prompt-fraction` of the sequence (default 1/4), a rationale and an 8-token answer. Not a
test: timings on shared machines are noisy.

    python bench/remask_step.py [--hidden 256 --layers 4 --batch 16 --seq 128 --steps 10 --prompt-fraction 0.25]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmforge.objectives import build_objective
from lmforge.objectives.remask import RegularizationNoise


def make_batch(batch: int, seq: int, vocab: int, prompt_fraction: float = 0.25) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(4, vocab, (batch, seq), generator=generator)
    roles = torch.zeros(batch, seq, dtype=torch.long)
    roles[:, int(seq * prompt_fraction) : -8] = 2  # rationale
    roles[:, -8:] = 3  # answer
    labels = torch.where(roles > 0, input_ids, torch.full_like(input_ids, -100))
    clean = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
        "token_roles": roles,
    }
    return RegularizationNoise(mask_token_id=3, p_in=0.4, p_label=0.1, p_answer_only=0.1)(clean, generator)


def time_steps(objective, model, batch, steps: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for _ in range(2):  # warm up allocator and kernels
        objective(model, batch, None)[0].backward()
        optimizer.step()
        optimizer.zero_grad()
    start = time.perf_counter()
    for _ in range(steps):
        objective(model, batch, None)[0].backward()
        optimizer.step()
        optimizer.zero_grad()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--prompt-fraction", type=float, default=0.25, help="prompt share of each row")
    args = parser.parse_args()
    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=4 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        num_key_value_heads=4,
    )
    batch = make_batch(args.batch, args.seq, args.vocab, args.prompt_fraction)
    timings = {}
    for name, params in [
        ("sft", ("ce", {})),
        ("remask fused", ("remask_cot", {"weight": 0.1, "fused": True})),
        ("remask shared prompt", ("remask_cot", {"weight": 0.1, "fused": "shared_prompt"})),
        ("remask two passes", ("remask_cot", {"weight": 0.1, "fused": False})),
    ]:
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).train()
        timings[name] = time_steps(build_objective(*params), model, batch, args.steps)
        print(f"{name:20s} {timings[name] * 1000:8.1f} ms/step")
    print(
        f"prompt fraction {args.prompt_fraction:g} (prompt {int(args.seq * args.prompt_fraction)} of {args.seq} tokens)"
    )
    for name in ("remask fused", "remask shared prompt", "remask two passes"):
        print(f"{name} / sft step time: {timings[name] / timings['sft']:.2f}  (target <= 2.0)")


if __name__ == "__main__":
    main()
