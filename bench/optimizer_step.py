"""AdamW step time: lmforge's optimizer (torch's fused kernel) / the plain single-tensor loop
torch takes on CPU by default, on the parameters of a Llama of 4 layers x 256 wide
(vocabulary 8192, bench/compare_sft.py's model), and the largest weight difference after the
same steps. Not a test: timings on shared machines are noisy.

    python bench/optimizer_step.py [--steps 20] [--hidden 256 --layers 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmforge.optim.optimizers import build_optimizer, parameter_groups


def run(build, hidden: int, layers: int, steps: int) -> tuple[float, torch.Tensor]:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=8192,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    named = list(model.named_parameters())
    optimizer = build(parameter_groups(named, {n for n, p in named if p.ndim == 2}, 0.01))
    generator = torch.Generator().manual_seed(1)
    grads = [torch.randn(p.shape, generator=generator) for _, p in named]
    times = []
    for _ in range(steps):
        for (_, param), grad in zip(named, grads):
            param.grad = grad.clone()
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:]), torch.cat([p.detach().flatten() for _, p in named])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    shape = (args.hidden, args.layers, args.steps)
    plain, plain_weights = run(lambda groups: torch.optim.AdamW(groups, lr=1e-3, foreach=False), *shape)
    ours, our_weights = run(lambda groups: build_optimizer("adamw", groups, lr=1e-3), *shape)
    print(f"plain AdamW step   {plain * 1000:7.2f} ms")
    print(f"lmforge AdamW step {ours * 1000:7.2f} ms  (fused)")
    print(f"plain / lmforge    {plain / ours:7.2f}x")
    print(f"max weight difference after {args.steps} steps: {float((plain_weights - our_weights).abs().max()):.2e}")


if __name__ == "__main__":
    main()
