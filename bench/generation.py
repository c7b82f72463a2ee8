"""Samples/s of the batched, KV-cached generation backend vs one prompt at a time, same
model and sampling settings (target: batched >= 5x), and of the batched path with each
question's prefill computed once for its N samples vs the prompt repeated N times
(`--prompt-words` lengthens the questions, where the shared prefill matters). Not a test:
timings are noisy.

    python bench/generation.py [--questions 32 --samples 8 --max-new-tokens 48 --prompt-words 0]
"""

from __future__ import annotations

import argparse
import time

from lmforge.bootstrap.backends import Sampling, TransformersBackend
from lmforge.data.formats import get_format
from lmforge.demo.arithmetic import Difficulty, make_splits
from lmforge.demo.tokenizer import train_bpe_tokenizer
from lmforge.eval.generate import stop_token_ids
from lmforge.models.loading import build_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--prompt-words", type=int, default=0, help="context words put before each question")
    args = parser.parse_args()

    train, test = make_splits(2000, args.questions, seed=0, difficulty=Difficulty(max_operand=10, max_value=30))
    remask = get_format("remask")
    tokenizer = train_bpe_tokenizer(
        (f"{p['question']} {p['rationale']}" for p in train), 512, extra_special_tokens=remask.special_tokens(None)
    )
    # the demo's model shape (2 layers, width 128); random weights generate full-length samples
    model = build_model(
        "llama",
        {"hidden_size": 128, "num_layers": 2, "num_heads": 4, "intermediate_size": 512, "max_position_embeddings": 256},
        tokenizer,
    )
    from lmforge.data.conversation import Segment

    context = " ".join(p["question"] for p in train)[: 6 * args.prompt_words].rsplit(" ", 1)[0] + "\n"
    prompts = [
        remask.generation_prompt(
            (Segment("user", (context if args.prompt_words else "") + p["question"]),), tokenizer, cot=True
        )
        for p in test
    ]
    stops = stop_token_ids(tokenizer, remask.stop_strings(tokenizer))
    sampling = Sampling(args.samples, 0.5, 0.8, args.max_new_tokens)

    timings = {}
    variants = (
        ("one prompt at a time", 1, False),
        ("batched", args.batch_size, False),
        ("batched, shared prefill", args.batch_size, True),
    )
    for name, batch_size, share in variants:
        backend = TransformersBackend(model, tokenizer, stops, add_bos=True, batch_size=batch_size, share_prefill=share)
        start = time.perf_counter()
        outputs = backend.sample(prompts, sampling, seed=0)
        seconds = time.perf_counter() - start
        samples = sum(len(o) for o in outputs)
        timings[name] = samples / seconds
        print(f"{name:22s} {samples} samples in {seconds:6.1f} s = {timings[name]:7.1f} samples/s")
    print(f"batched / one-at-a-time: {timings['batched'] / timings['one prompt at a time']:.1f}x  (target >= 5x)")
    print(f"shared prefill / batched: {timings['batched, shared prefill'] / timings['batched']:.2f}x")


if __name__ == "__main__":
    main()
