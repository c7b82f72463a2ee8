"""Tokenize + pack throughput (tokens/s) vs the demo model's training throughput (tokens/s
through forward + backward + AdamW step), on the same CPU. Target: data >= 20x the model,
so data preparation is never the bottleneck. Not a test: timings are noisy.

    OMP_NUM_THREADS=1 python bench/data_throughput.py [--examples 20000 --steps 10]
"""

from __future__ import annotations

import argparse
import time

import torch

from lmforge.data.collate import PadCollator
from lmforge.data.formats import get_format
from lmforge.data.packing import pack_rows
from lmforge.data.records import from_cot
from lmforge.data.tokenize import encode_conversations
from lmforge.demo.arithmetic import make_splits
from lmforge.demo.tokenizer import train_bpe_tokenizer
from lmforge.models.loading import build_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=20000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()

    # the demo's data, tokenizer and model ("full" size: hidden 128, 2 layers, batch 32)
    train, _ = make_splits(args.examples, 1, seed=0)
    remask = get_format("remask")
    tokenizer = train_bpe_tokenizer(
        (f"{p['question']} {p['rationale']}" for p in train), 512, extra_special_tokens=remask.special_tokens(None)
    )
    conversations = [from_cot(p, f"demo[{i}]") for i, p in enumerate(train)]

    start = time.perf_counter()
    rows = [e.as_row() for e in encode_conversations(conversations, remask, tokenizer)]
    packed, report = pack_rows(rows, args.max_length)
    data_seconds = time.perf_counter() - start
    data_rate = report.tokens / data_seconds

    model = build_model(
        "llama",
        {"hidden_size": 128, "num_layers": 2, "num_heads": 4, "intermediate_size": 512, "max_position_embeddings": 256},
        tokenizer,
        seed=0,
    )
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    collate = PadCollator(tokenizer.pad_token_id)
    batches = [collate(rows[i : i + 32]) for i in range(0, 32 * (args.steps + 1), 32)]
    tokens = 0
    for step, batch in enumerate(batches):
        if step == 1:  # the first step warms up allocators
            start, tokens = time.perf_counter(), 0
        loss = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            labels=batch["labels"],
            use_cache=False,
        ).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        tokens += int(batch["attention_mask"].sum())
    model_rate = tokens / (time.perf_counter() - start)

    print(
        f"tokenize + pack: {report.tokens} tokens of {len(rows)} examples in {data_seconds:.2f} s = "
        f"{data_rate:,.0f} tokens/s (packing efficiency {report.efficiency:.1%}, {report.rows} rows)"
    )
    print(f"demo model training: {model_rate:,.0f} tokens/s (torch threads: {torch.get_num_threads()})")
    print(f"ratio: {data_rate / model_rate:.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
