"""Benchmark decontamination: drop training documents that share a long word n-gram (13
words by default, as GPT-3 did) with an evaluation set named by the config.

One implementation serves both paths: the in-memory pipeline (finetuning sets, through
`pipeline.build_datasets`) and `lmforge data prepare` (a datatrove step that calls
`NgramIndex.contaminated`). datatrove ships n-gram decontamination (`pipeline/decont`), but
its indexer is keyed to lighteval task names (or documents pre-split into query and gold
label), keeps its index on disk, and normalizes text its own way; the evaluation sets here
are local files of any of our formats, and the in-memory path must drop exactly what
`data prepare` drops. So the index is ours: the n-grams of every text field of every
evaluation record, after `clean.normalize` (the normalization exact dedup uses), hashed to
64 bits and kept as one sorted numpy array (small to pickle to datatrove's workers).

A text field shorter than n words contributes no n-gram: a 5-word answer ("the answer is
12") would match half the corpus. Lower `ngram` for sets of short questions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.data.clean import normalize
from lmforge.data.conversation import Conversation
from lmforge.data.sources import read_records, suffixes
from lmforge.errors import LmforgeError

DEFAULT_NGRAM = 13


def _hash(gram: str) -> int:
    return int.from_bytes(hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest(), "little")


def ngram_hashes(text: str, n: int) -> np.ndarray:
    """64-bit hashes of the normalized text's word n-grams (none when shorter than n words)."""
    words = normalize(text).split()
    grams = (" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    return np.fromiter((_hash(g) for g in grams), dtype=np.uint64)


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a record (question, choices, answer, ...), in order."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _eval_texts(path: Path) -> Iterator[str]:
    if suffixes(path)[0] == ".txt":  # plain text: one evaluation item a line
        yield from path.read_text(encoding="utf-8", errors="replace").splitlines()
        return
    for record, _ in read_records(path, encoding_errors="replace"):
        yield from _strings(record)


class NgramIndex:
    """The n-grams of a few evaluation sets; `contaminated(text)` says whether a text shares
    one. Picklable (datatrove sends it to every task)."""

    def __init__(self, hashes: np.ndarray, ngram: int, sets: tuple[str, ...] = ()):
        self.hashes = np.unique(hashes.astype(np.uint64))  # sorted, for searchsorted
        self.ngram = ngram
        self.sets = sets

    @classmethod
    def from_files(
        cls, paths: list[str], ngram: int = DEFAULT_NGRAM, key: str = "data.decontaminate.sets"
    ) -> NgramIndex:
        parts = []
        for index, name in enumerate(paths):
            path = Path(name)
            if not path.is_file():
                raise LmforgeError(f"{key}[{index}]: {name}: evaluation set not found (give a local file)")
            grams = [ngram_hashes(text, ngram) for text in _eval_texts(path)]
            parts.extend(grams)
            if not any(len(g) for g in grams):
                raise LmforgeError(
                    f"{key}[{index}]: {name}: no text of {ngram} words or more to match; lower data.decontaminate.ngram"
                )
        hashes = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
        return cls(hashes, ngram, tuple(paths))

    def __len__(self) -> int:
        return len(self.hashes)

    def contaminated(self, text: str) -> bool:
        grams = ngram_hashes(text, self.ngram)
        if not len(grams) or not len(self.hashes):
            return False
        at = np.searchsorted(self.hashes, grams)
        at[at == len(self.hashes)] = 0
        return bool((self.hashes[at] == grams).any())


def conversation_text(conversation: Conversation) -> str:
    """Everything an example shows the model (prompt and response): an evaluation question
    in a prompt contaminates as much as one in a response."""
    return "\n".join(segment.text for segment in conversation.segments)


def decontaminate(conversations: list[Conversation], index: NgramIndex) -> tuple[list[Conversation], int]:
    """The in-memory path: (kept, removed) for one dataset's conversations."""
    kept = [c for c in conversations if not index.contaminated(conversation_text(c))]
    return kept, len(conversations) - len(kept)
