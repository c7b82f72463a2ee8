"""Peak memory and step time of the plain full-logits loss against the head applied at label
positions only, in chunks (objectives/head.py), for SmolLM2's vocabulary (49,152) at sequence
2048. Each variant runs in its own process so its peak RSS is its own. Not a test: timings on
shared machines are noisy; the ratios are what to read.

    python bench/label_head.py [--objective ce|mixce|remask_cot|dpo ...] [--label-fraction 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads distort shared-machine timings


def run_variant(args) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lmforge.objectives import build_objective, head
    from lmforge.objectives.remask import RegularizationNoise

    if args.variant == "full":
        head.label_head_supported = lambda model: False
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=args.vocab,
            hidden_size=args.hidden,
            intermediate_size=4 * args.hidden,
            num_hidden_layers=args.layers,
            num_attention_heads=4,
            max_position_embeddings=args.seq,
        )
    )
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, args.vocab, (args.batch, args.seq), generator=generator)
    trained = int(args.seq * args.label_fraction)
    roles = torch.zeros_like(ids)
    roles[:, -trained:] = 2  # the last `trained` tokens are the response (rationale), as in chat data
    roles[:, -8:] = 3
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_roles": roles,
        "labels": torch.where(roles > 0, ids, torch.full_like(ids, -100)),
    }
    params = {"ce": {}, "mixce": {"ratio": 0.75}, "remask_cot": {"weight": 0.1}}[args.objective]
    if args.objective == "remask_cot":
        batch = RegularizationNoise(mask_token_id=3, p_in=0.4, p_label=0.1, p_answer_only=0.1)(batch, generator)
    objective = build_objective(args.objective, params)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for step in range(args.steps + 1):
        start = time.perf_counter()
        loss, _ = objective(model, batch, None)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step:  # the first step warms allocator and kernels
            times.append(time.perf_counter() - start)
    return {
        "variant": args.variant,
        "seconds_per_step": sum(times) / len(times),
        "loss": loss.item(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objective", default="ce", choices=["ce", "mixce", "remask_cot"])
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--label-fraction", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args)))
        return
    results = {}
    for variant in ("full", "head"):
        argv = [sys.executable, __file__, *sys.argv[1:], "--variant", variant]
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    full, label = results["full"], results["head"]
    print(
        f"{args.objective}, vocabulary {args.vocab}, sequence {args.seq} x batch {args.batch}, "
        f"{args.label_fraction:.0%} label positions"
    )
    for name, row in (("full logits", full), ("head at labels", label)):
        print(
            f"  {name:15s} {row['seconds_per_step']:.3f} s/step   peak RSS {row['peak_rss_mb']:.0f} MB   "
            f"loss {row['loss']:.5f}"
        )
    print(
        f"  peak memory full / head: {full['peak_rss_mb'] / label['peak_rss_mb']:.2f}   "
        f"step time full / head: {full['seconds_per_step'] / label['seconds_per_step']:.2f}"
    )
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump({"settings": vars(args), **results}, handle, indent=2)


if __name__ == "__main__":
    main()
