"""data prepare (datatrove, local executor) vs the in-memory path (datasketch) on
bench/data_neardup.py's generated documents with planted near-copies: the recall of each
on the planted copies and the overlap of the removed sets. Not a test: timings are noisy.

    OMP_NUM_THREADS=1 python bench/prepare_neardup.py [--documents 100000 --workers 2]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from data_neardup import WORDS  # noqa: E402

from lmforge.data.clean import DedupSettings, Fingerprints, deduplicate  # noqa: E402
from lmforge.data.conversation import Conversation, Segment  # noqa: E402
from lmforge.data.pipeline import DatasetSpec  # noqa: E402
from lmforge.data.prepare import PrepareOptions, prepare  # noqa: E402


def planted(n: int, share: float, seed: int) -> tuple[list[str], set[int]]:
    """data_neardup.documents, remembering which documents are the planted copies."""
    rng = random.Random(seed)
    texts: list[str] = []
    copies: set[int] = set()
    for i in range(n):
        if texts and rng.random() < share:
            words = rng.choice(texts).split()
            words[-1] = rng.choice(WORDS)
            copies.add(i)
        else:
            words = rng.choices(WORDS, k=rng.randint(20, 60))
        texts.append(" ".join(words))
    return texts, copies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--duplicate-share", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=4)
    args = parser.parse_args()
    texts, copies = planted(args.documents, args.duplicate_share, seed=0)
    settings = DedupSettings()

    start = time.perf_counter()
    conversations = [Conversation((Segment("text", t),), f"gen:{i + 1}") for i, t in enumerate(texts)]
    kept, _ = deduplicate([conversations], Fingerprints(settings))
    memory_seconds = time.perf_counter() - start
    removed_memory = set(range(len(texts))) - {int(c.source.split(":")[1]) - 1 for c in kept[0]}

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        parts = args.tasks
        specs = []
        for p in range(parts):  # one file per task, consecutive slices: ids are global lines
            lo, hi = p * len(texts) // parts, (p + 1) * len(texts) // parts
            path = tmp / f"part{p}.jsonl"
            path.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(texts[lo:hi], lo)))
            specs.append(DatasetSpec(str(path), name=f"part{p}"))
        start = time.perf_counter()
        prepare(specs, settings, None, PrepareOptions(tmp / "out", workers=args.workers, tasks=parts))
        prepare_seconds = time.perf_counter() - start
        kept_ids = set()
        for p, spec in enumerate(specs):
            offset = p * len(texts) // parts
            for shard in (tmp / "out" / "shards" / spec.name).glob("*.jsonl"):
                for line in shard.read_text().splitlines():
                    kept_ids.add(offset + int(json.loads(line)["id"].rsplit(":", 1)[1]) - 1)
        removed_prepare = set(range(len(texts))) - kept_ids

    def recall(removed: set[int]) -> float:
        # a cluster of an original and its copies keeps one: count clusters' extra members
        return len(removed & copies) / len(copies)

    overlap = len(removed_memory & removed_prepare) / max(1, len(removed_memory | removed_prepare))
    print(f"{len(texts):,} documents, {len(copies):,} planted near-copies")
    print(f"{'path':28} {'removed':>8} {'recall on copies':>17} {'seconds':>8}")
    print(
        f"{'in-memory (datasketch)':28} {len(removed_memory):>8} {recall(removed_memory):>17.3f} {memory_seconds:>8.1f}"
    )
    print(
        f"{'data prepare (datatrove)':28} {len(removed_prepare):>8} {recall(removed_prepare):>17.3f} "
        f"{prepare_seconds:>8.1f}  ({args.workers} workers, {parts} tasks)"
    )
    print(f"removed sets: Jaccard overlap {overlap:.3f} (|both| {len(removed_memory & removed_prepare)})")
    print(
        "Note: recall counts planted copies removed; datatrove keeps one document per cluster, not always "
        "the first, so it may remove an original and keep its copy (counted as a miss here)."
    )


if __name__ == "__main__":
    main()
