"""Near-duplicate removal (MinHash LSH, datasketch) over generated short documents, with
exact dedup, as the pipeline runs it. Target: 100k documents in under 2 minutes. Not a
test: timings are noisy.

    OMP_NUM_THREADS=1 python bench/data_neardup.py [--documents 100000 --duplicate-share 0.1]
"""

from __future__ import annotations

import argparse
import random
import time

from lmforge.data.clean import DedupSettings, Fingerprints, deduplicate
from lmforge.data.conversation import Conversation, Segment

WORDS = [f"w{i}" for i in range(5000)]


def documents(n: int, share: float, seed: int) -> list[Conversation]:
    """Short documents (20-60 words); a `share` of them are near copies of an earlier one
    (the last word changed: estimated Jaccard of 5-gram shingles about 0.9)."""
    rng = random.Random(seed)
    out: list[Conversation] = []
    for i in range(n):
        if out and rng.random() < share:
            words = rng.choice(out).segments[0].text.split()
            words[-1] = rng.choice(WORDS)
        else:
            words = rng.choices(WORDS, k=rng.randint(20, 60))
        out.append(Conversation((Segment("text", " ".join(words)),), f"gen[{i}]"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--duplicate-share", type=float, default=0.1)
    args = parser.parse_args()
    docs = documents(args.documents, args.duplicate_share, seed=0)
    start = time.perf_counter()
    kept, [counts] = deduplicate([docs], Fingerprints(DedupSettings()))
    seconds = time.perf_counter() - start
    print(
        f"{len(docs):,} documents -> {len(kept[0]):,} kept ({counts}) in {seconds:.1f} s "
        f"({len(docs) / seconds:,.0f} documents/s; target: 100k in under 120 s)"
    )


if __name__ == "__main__":
    main()
