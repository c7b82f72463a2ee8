"""Cleaning: quality filters, exact and near-duplicate removal, and the split leak guard.

- Exact duplicates: same text after normalization (case, punctuation, whitespace), role
  by role, hashed.
- Near duplicates: MinHash over word n-grams (datasketch), LSH at a Jaccard threshold.
  Greedy in dataset order, then record order: the first of a group stays.
- Leak guard: after the split, a training example that is an exact or near duplicate of
  any validation or test example (of any dataset) is removed from train.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from datasketch import LeanMinHash, MinHash, MinHashLSH

from lmforge.data.conversation import Conversation

_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Lowercase, punctuation removed, whitespace collapsed."""
    text = "".join(
        ch for ch in unicodedata.normalize("NFKC", text).lower() if not unicodedata.category(ch).startswith("P")
    )
    return _SPACE.sub(" ", text).strip()


def exact_key(conversation: Conversation) -> bytes:
    joined = "\x1f".join(f"{s.role}\x1e{normalize(s.text)}" for s in conversation.segments)
    return hashlib.blake2b(joined.encode("utf-8"), digest_size=16).digest()


def shingles(text: str, n: int) -> set[bytes]:
    """Word n-grams of the normalized text; a text shorter than n words is one shingle."""
    words = normalize(text).split()
    if len(words) <= n:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i : i + n]).encode("utf-8") for i in range(len(words) - n + 1)}


@dataclass(frozen=True)
class DedupSettings:
    exact: bool = True
    near: bool = True
    threshold: float = 0.8
    num_perm: int = 128
    ngram: int = 5


class Fingerprints:
    """Exact keys and MinHashes of conversations, computed once and shared by the dedup
    pass and the leak guard."""

    def __init__(self, settings: DedupSettings):
        self.settings = settings
        # one permutation table for every MinHash (datasketch would rebuild it per object)
        self._template = MinHash(num_perm=settings.num_perm, seed=1)
        self._exact: dict[int, bytes] = {}
        self._minhash: dict[int, LeanMinHash] = {}

    def exact(self, conversation: Conversation) -> bytes:
        key = id(conversation)
        if key not in self._exact:
            self._exact[key] = exact_key(conversation)
        return self._exact[key]

    def minhash(self, conversation: Conversation) -> LeanMinHash:
        key = id(conversation)
        if key not in self._minhash:
            text = "\n".join(s.text for s in conversation.segments)
            sketch = MinHash(
                num_perm=self.settings.num_perm,
                seed=1,
                permutations=self._template.permutations,
                scheme=self._template.scheme,
            )
            sketch.update_batch(list(shingles(text, self.settings.ngram)))
            self._minhash[key] = LeanMinHash(sketch)
        return self._minhash[key]

    def lsh(self) -> MinHashLSH:
        return MinHashLSH(threshold=self.settings.threshold, num_perm=self.settings.num_perm)


def deduplicate(
    groups: list[list[Conversation]], fingerprints: Fingerprints
) -> tuple[list[list[Conversation]], list[dict[str, int]]]:
    """Remove exact then near duplicates across all groups (datasets), keeping the first
    occurrence. Returns the kept conversations per group and removal counts per group."""
    settings = fingerprints.settings
    seen: set[bytes] = set()
    index = fingerprints.lsh() if settings.near else None
    kept: list[list[Conversation]] = []
    counts: list[dict[str, int]] = []
    for group in groups:
        out, removed = [], {"duplicate": 0, "near_duplicate": 0}
        for conversation in group:
            if settings.exact:
                key = fingerprints.exact(conversation)
                if key in seen:
                    removed["duplicate"] += 1
                    continue
                seen.add(key)
            if index is not None:
                sketch = fingerprints.minhash(conversation)
                if index.query(sketch):
                    removed["near_duplicate"] += 1
                    continue
                index.insert(str(id(conversation)), sketch, check_duplication=False)
            out.append(conversation)
        kept.append(out)
        counts.append({k: v for k, v in removed.items() if v})
    return kept, counts


def leak_guard(
    train: list[Conversation], held_out: Iterable[Conversation], fingerprints: Fingerprints
) -> tuple[list[Conversation], int]:
    """Drop training conversations that duplicate a validation or test conversation, by
    the same measures as the dedup settings (exact and/or near). Returns (kept, removed)."""
    held_out = list(held_out)
    settings = fingerprints.settings
    if not held_out or not (settings.exact or settings.near):
        return train, 0
    keys = {fingerprints.exact(c) for c in held_out} if settings.exact else set()
    index = None
    if settings.near:
        index = fingerprints.lsh()
        for conversation in held_out:
            index.insert(str(id(conversation)), fingerprints.minhash(conversation), check_duplication=False)
    kept = [
        c
        for c in train
        if not (keys and fingerprints.exact(c) in keys)
        and not (index is not None and index.query(fingerprints.minhash(c)))
    ]
    return kept, len(train) - len(kept)


@dataclass(frozen=True)
class Filters:
    """Per-dataset quality filters."""

    languages: frozenset[str] = frozenset()
    min_chars: int | None = None
    max_chars: int | None = None


def drop_reason(conversation: Conversation, filters: Filters) -> str | None:
    """Why a conversation fails the filters, or None. Language applies only to records that
    carry one; BCP-47 regions match their language ('pt-BR' passes 'pt')."""
    if not any(s.text.strip() for s in conversation.segments if s.role in ("assistant", "rationale", "answer", "text")):
        return "empty_response"
    lang = conversation.metadata.get("lang")
    if (
        filters.languages
        and isinstance(lang, str)
        and lang not in filters.languages
        and lang.split("-")[0] not in filters.languages
    ):
        return "language"
    if filters.min_chars is not None and len(conversation.response_text().strip()) < filters.min_chars:
        return "too_short"
    if filters.max_chars is not None and sum(len(s.text) for s in conversation.segments) > filters.max_chars:
        return "too_many_chars"
    return None
