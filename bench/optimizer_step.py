"""AdamW step time: lmforge's optimizer (torch's fused kernel) / the plain single-tensor loop
torch takes on CPU by default, on the parameters of a Llama of 4 layers x 256 wide
(vocabulary 8192, bench/compare_sft.py's model), and the largest weight difference after the
same steps. Not a test: timings on shared machines are noisy.

    python bench/optimizer_step.py [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from compare_sft import model_config  # bench/ is on the path of a script run from it
from transformers import LlamaForCausalLM

from lmforge.optim.optimizers import build_optimizer, parameter_groups


def run(build, steps: int) -> tuple[float, torch.Tensor]:
    torch.manual_seed(0)
    model = LlamaForCausalLM(model_config())
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
    args = parser.parse_args()
    plain, plain_weights = run(lambda groups: torch.optim.AdamW(groups, lr=1e-3, foreach=False), args.steps)
    ours, our_weights = run(lambda groups: build_optimizer("adamw", groups, lr=1e-3), args.steps)
    print(f"plain AdamW step   {plain * 1000:7.2f} ms")
    print(f"lmforge AdamW step {ours * 1000:7.2f} ms  (fused)")
    print(f"plain / lmforge    {plain / ours:7.2f}x")
    print(f"max weight difference after {args.steps} steps: {float((plain_weights - our_weights).abs().max()):.2e}")


if __name__ == "__main__":
    main()
