"""`lmforge data prepare` (datatrove, local executor) with 1, 2, ... workers on a generated
web-like corpus: documents/s, MB/s, words/s and (with --tokenizer) tokens/s per worker
count, the speed-up over one worker, and the wall time of every stage. Not a test: timings
depend on the machine and its load. The README's 200B-token plan is computed from this.

    OMP_NUM_THREADS=1 python bench/prepare_scaling.py [--mb 200 --files 8 --workers 1,2]
        [--tokenizer DIR]   # counts tokens and writes tokenized shards (--tokenize), as a
                            # pretraining corpus is prepared

The corpus: `--files` JSONL files of documents of 80-700 words drawn from a Zipf-like
vocabulary of 20,000 words, 8% exact copies (changed in case and spacing) and 4% near
copies (one word changed) of earlier documents, so every stage has work. Every stage
runs: clean (filters), exact dedup, MinHash (signatures, buckets, clusters), write.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lmforge.data.clean import DedupSettings
from lmforge.data.pipeline import DatasetSpec
from lmforge.data.prepare import PrepareOptions, prepare


def generate(folder: Path, megabytes: float, files: int, seed: int = 0) -> tuple[int, int, int]:
    """Writes the corpus; (documents, bytes, words)."""
    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{i % 997}" for i in range(20_000)])
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)  # Zipf: a few words are most of the text
    weights /= weights.sum()
    target = int(megabytes * 1e6)
    per_file = target // files
    documents = size = words = 0
    recent: list[str] = []
    for index in range(files):
        written = 0
        with (folder / f"part{index:03d}.jsonl").open("w", encoding="utf-8") as handle:
            while written < per_file:
                roll = rng.random()
                if recent and roll < 0.08:
                    text = recent[rng.integers(len(recent))].upper()
                elif recent and roll < 0.12:
                    parts = recent[rng.integers(len(recent))].split()
                    parts[-1] = vocabulary[rng.integers(len(vocabulary))]
                    text = " ".join(parts)
                else:
                    text = " ".join(rng.choice(vocabulary, size=int(rng.integers(80, 700)), p=weights))
                    recent = (recent + [text])[-2000:]
                line = json.dumps({"text": text}) + "\n"
                handle.write(line)
                written += len(line)
                documents += 1
                words += text.count(" ") + 1
        size += written
    return documents, size, words


class StageClock(logging.Handler):
    """The start of every stage, from data prepare's '[data prepare] stage n/m NAME' lines."""

    def __init__(self) -> None:
        super().__init__()
        self.starts: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("[data prepare] stage "):
            self.starts.append((message.split()[4].rstrip(":"), time.perf_counter()))


def run(specs, out: Path, workers: int, tasks: int, tokenizer: str | None) -> tuple[float, list, dict, float]:
    """(wall seconds, [(stage, wall seconds)], report, this process's CPU seconds: with one
    worker datatrove runs every task in this process, so that is the work's CPU time)."""
    clock = StageClock()
    logger = logging.getLogger("lmforge.data")
    logger.addHandler(clock)
    logger.setLevel(logging.INFO)
    try:
        start, cpu = time.perf_counter(), time.process_time()
        report = prepare(
            specs,
            DedupSettings(),
            None,
            PrepareOptions(out, workers=workers, tasks=tasks, tokenizer=tokenizer, tokenize=tokenizer is not None),
        )
        end, cpu = time.perf_counter(), time.process_time() - cpu
    finally:
        logger.removeHandler(clock)
    stages = [
        (name, (clock.starts[i + 1][1] if i + 1 < len(clock.starts) else end) - at)
        for i, (name, at) in enumerate(clock.starts)
    ]
    return end - start, stages, report, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=200.0, help="corpus size in MB")
    parser.add_argument("--files", type=int, default=8, help="files = reading tasks")
    parser.add_argument("--workers", default="1,2", help="worker counts to time, comma-separated")
    parser.add_argument("--tokenizer", default=None, help="tokenizer directory: count tokens and --tokenize")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    # as `lmforge` sets it: one worker is one core (the tokenizer's own threads would compete)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at the start")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "corpus").mkdir()
        start = time.perf_counter()
        documents, size, words = generate(tmp / "corpus", args.mb, args.files)
        print(
            f"corpus: {documents:,} documents, {size / 1e6:.1f} MB, {words:,} words in {args.files} files "
            f"(generated in {time.perf_counter() - start:.0f} s)"
        )
        specs = [DatasetSpec(str(tmp / "corpus"), name="web")]
        results = []
        for workers in counts:
            out = tmp / f"out{workers}"
            seconds, stages, report, cpu = run(specs, out, workers, args.files, args.tokenizer)
            [row] = report["sources"]
            tokens = row["tokens"]["in"] if row["tokens"] else None
            results.append(
                {
                    "workers": workers,
                    "seconds": seconds,
                    "cpu_seconds": cpu,
                    "stages": stages,
                    "docs_out": row["docs"]["out"],
                    "dropped": row["docs"]["dropped"],
                    "tokens_in": tokens,
                    "shard_tokens": row.get("shard_tokens"),
                }
            )
            shutil.rmtree(out)
            if workers == 1:  # every task ran in this process: its peak is one worker's
                results[-1]["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"  {workers} worker(s): {seconds:.1f} s", file=sys.stderr)

    print(f"kept {results[0]['docs_out']:,} of {documents:,} documents; dropped {results[0]['dropped']}")
    header = f"{'workers':>7} {'seconds':>8} {'docs/s':>9} {'MB/s':>6} {'words/s':>10}"
    if args.tokenizer:
        header += f" {'tokens/s':>10}"
    print(header + f" {'speed-up':>8} {'per worker MB/s':>15}")
    for result in results:
        s = result["seconds"]
        line = f"{result['workers']:>7} {s:>8.1f} {documents / s:>9.0f} {size / 1e6 / s:>6.2f} {words / s:>10.0f}"
        if args.tokenizer:
            line += f" {result['tokens_in'] / s:>10.0f}"
        speedup = results[0]["seconds"] / s
        print(line + f" {speedup:>7.2f}x {size / 1e6 / s / result['workers']:>15.2f}")
    print("stage wall seconds (and the corpus's MB/s through the stage):")
    names = [name for name, _ in results[0]["stages"]]
    print(f"{'stage':18}" + "".join(f" {str(r['workers']) + ' worker(s)':>20}" for r in results))
    for i, name in enumerate(names):
        cells = "".join(f" {r['stages'][i][1]:>8.1f} s {size / 1e6 / r['stages'][i][1]:>6.1f} MB/s" for r in results)
        print(f"{name:18}" + cells)
    one = next((r for r in results if r["workers"] == 1), None)
    if one:
        print(
            f"one worker's CPU time: {one['cpu_seconds']:.1f} s = {size / 1e6 / one['cpu_seconds']:.2f} MB, "
            f"{documents / one['cpu_seconds']:.0f} documents"
            + (f", {one['tokens_in'] / one['cpu_seconds']:.0f} tokens" if args.tokenizer else "")
            + " per CPU-second (the per-worker rate on an idle core)"
        )
        print(f"one worker's peak memory (this process, all stages): {one['peak_rss_mb']:.0f} MB")
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other processes share these CPUs)")
    if args.tokenizer:
        print(f"tokens: {results[0]['tokens_in']:,} in, {results[0]['shard_tokens']:,} in the shards (EOS included)")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"documents": documents, "bytes": size, "words": words, "runs": results}, indent=1)
        )


if __name__ == "__main__":
    main()
