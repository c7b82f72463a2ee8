"""train.compile: training step time eager / compiled, and the seconds the first compiled
steps take, on bench/compare_sft.py's model (a Llama of 4 layers x 256 wide, vocabulary
8192) and one packed row of 1024 tokens (six examples), CE through lmforge's objective and
fused AdamW. Each setting runs in its own process (a compiled graph would outlive a run in
this one). Not a test: timings on shared machines are noisy; the first compiled run of a
machine is slower than later ones (torch caches compiled graphs on disk).

    python bench/compile_step.py [--steps 20] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

LENGTHS = (120, 300, 80, 200, 150, 174)


def run(compiled: bool, steps: int, warmup: int) -> dict[str, float]:
    import torch
    from compare_sft import model_config  # bench/ is on the path of a script run from it
    from transformers import LlamaForCausalLM

    from lmforge.objectives import build_objective
    from lmforge.optim.optimizers import build_optimizer
    from lmforge.train.compile import compile_decoder

    torch.manual_seed(0)
    model = LlamaForCausalLM(model_config()).train()
    if compiled:
        compile_decoder(model)
    objective = build_objective("ce", {})
    optimizer = build_optimizer("adamw", list(model.parameters()), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    positions = torch.tensor([[p for n in LENGTHS for p in range(n)]])
    times = []
    for _ in range(warmup + steps):
        ids = torch.randint(3, 8192, (1, positions.shape[1]), generator=generator)
        batch = {"input_ids": ids, "labels": ids.clone(), "position_ids": positions, "token_roles": ids * 0}
        start = time.perf_counter()
        loss, _ = objective(model, batch, torch.tensor(ids.shape[1] - len(LENGTHS)))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return {"first_steps": sum(times[:warmup]), "step": statistics.median(times[warmup:]), "loss": loss.item()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--child", choices=["eager", "compiled"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run(args.child == "compiled", args.steps, args.warmup)))
        return
    results = {}
    for name in ("eager", "compiled"):
        command = [sys.executable, __file__, "--child", name, "--steps", str(args.steps), "--warmup", str(args.warmup)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        row = results[name]
        print(f"{name:9s} step {row['step'] * 1000:7.1f} ms   first {args.warmup} steps {row['first_steps']:6.1f} s")
    eager, compiled = results["eager"], results["compiled"]
    print(f"eager / compiled step time {eager['step'] / compiled['step']:.2f}x")
    extra = compiled["first_steps"] - eager["first_steps"]
    print(f"compiling costs {extra:.1f} s: repaid after {extra / (eager['step'] - compiled['step']):.0f} steps")


if __name__ == "__main__":
    main()
