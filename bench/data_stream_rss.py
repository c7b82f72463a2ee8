"""Peak RSS while streaming (tokenize + pack on the fly) generated plain text of growing
size: each size runs in a fresh process and reports its peak RSS. Target: no growth from
100 MB to 1 GB. Not a test.

    OMP_NUM_THREADS=1 python bench/data_stream_rss.py [--sizes-mb 100 1000] [--dir /tmp/x]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "ran",
    "on",
    "to",
    "mat",
    "park",
    "bird",
    "sang",
    "in",
    "tree",
    "sea",
    "sky",
    "blue",
    "wide",
    "hello",
    "there",
]


def generate(path: Path, megabytes: int) -> None:
    rng = random.Random(0)
    target = megabytes * 1_000_000
    written = 0
    with path.open("w", encoding="utf-8") as handle:
        while written < target:
            line = json.dumps({"text": " ".join(rng.choices(WORDS, k=rng.randint(50, 400)))}) + "\n"
            handle.write(line)
            written += len(line)


def child(path: str) -> None:
    from lmforge.data.streaming import PackedTextStream, TextSource
    from lmforge.demo.tokenizer import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer([" ".join(WORDS)] * 10, vocab_size=300)
    start = time.perf_counter()
    rows = tokens = 0
    for row in PackedTextStream([TextSource(path)], tokenizer, max_length=2048, batch_docs=256):
        rows += 1
        tokens += len(row["input_ids"])
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "tokens": tokens, "seconds": seconds, "peak_rss_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--dir", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for size in args.sizes_mb:
            path = Path(folder) / f"corpus-{size}mb.jsonl"
            generate(path, size)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(path)], capture_output=True, text=True, check=True
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{size:>5} MB: {result['tokens']:,} tokens in {result['rows']:,} rows, {result['seconds']:.0f} s "
                f"({result['tokens'] / result['seconds']:,.0f} tokens/s), peak RSS {result['peak_rss_mb']:.0f} MB"
            )
            path.unlink()


if __name__ == "__main__":
    main()
