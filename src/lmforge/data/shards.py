"""Reading the tokenized shards `lmforge data prepare --tokenize` writes (datatrove's
format): `<name>.ds` holds token ids back to back (little-endian uint16, or uint32 when the
tokenizer has more than 65536 ids; the `.ds.metadata` file says which), `<name>.ds.index`
the end of every document in tokens (uint64), `.ds.metadata` "tokenizer|token size" on its
first line (the tokenizer.json the shards were made with). Every document's ids are its
text's ids followed by EOS (no BOS). Memory-mapped: nothing is read until it is used.

A streaming source (data.streaming) whose path is a `.ds` file or a folder holding `.ds`
files reads them as documents (`layout`, `documents_from`): a document count maps to
(shard, document) through the indexes' sizes alone, so a stream resumes mid-corpus without
reading what came before."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmforge.errors import LmforgeError

log = logging.getLogger("lmforge.data")

_INDEX_CHUNK = 1 << 16
"""Document ends read at a time."""


def _metadata(shard: Path) -> tuple[str | None, int]:
    """(tokenizer, token size) from a shard's .ds.metadata ("tokenizer|token size" on the
    first line); (None, 2) without one."""
    metadata = shard.with_name(shard.name + ".metadata")
    if not metadata.is_file():
        return None, 2
    first = (metadata.read_text(encoding="utf-8").splitlines() or [""])[0]
    name, _, size = first.rpartition("|")
    if size not in ("2", "4"):
        raise LmforgeError(f"{metadata}: expected 'tokenizer|token size' (2 or 4) on its first line, got {first!r}")
    return name, int(size)


def _dtype(token_size: int) -> np.dtype:
    return np.dtype("<u4" if token_size == 4 else "<u2")


def _index(shard: Path) -> Path:
    return shard.with_name(shard.name + ".index")


def read_shard(shard: str | Path) -> Iterator[np.ndarray]:
    """Every document of one shard, as its token ids (EOS last), in order."""
    for ids, _, _ in _shard_documents(_checked(Path(shard)), 0):
        yield ids


def shards(folder: str | Path) -> list[Path]:
    """A source's shards, in task order."""
    return sorted(Path(folder).glob("*.ds"))


def read_documents(folder: str | Path) -> Iterator[np.ndarray]:
    """Every document of a source's folder of shards (tokens/<source>/), in task order."""
    for shard in shards(folder):
        yield from read_shard(shard)


def shard_tokens(folder: str | Path) -> int:
    """Tokens (EOS included) in a source's folder of shards, from the indexes alone."""
    total = 0
    for shard in shards(folder):
        ends = np.fromfile(_index(shard), dtype="<u8")
        total += int(ends[-1]) if len(ends) else 0
    return total


# --------------------------------------------------------------------------- streaming sources


@dataclass(frozen=True)
class Shard:
    path: Path
    documents: int
    tokens: int
    token_size: int
    tokenizer: str | None
    """The tokenizer its metadata names (None without metadata)."""


def is_token_shards(path: str | Path) -> bool:
    """Whether a dataset path is tokenized shards: a `.ds` file, or a folder holding some."""
    path = Path(path)
    return path.suffix == ".ds" or (path.is_dir() and any(path.glob("*.ds")))


def _checked(shard: Path) -> Shard:
    """A shard and its index, checked against each other (sizes and the last end only)."""
    index = _index(shard)
    if not shard.is_file() or not index.is_file():
        raise LmforgeError(f"{shard}: not a tokenized shard (needs the .ds file and its .ds.index)")
    tokenizer, token_size = _metadata(shard)
    size, index_size = shard.stat().st_size, index.stat().st_size
    if size % token_size or index_size % 8:
        raise LmforgeError(f"{shard}: its size is not a whole number of token ids and document ends (a cut file?)")
    tokens, documents = size // token_size, index_size // 8
    last = int(np.fromfile(index, dtype="<u8", count=1, offset=index_size - 8)[0]) if documents else 0
    if last != tokens:
        raise LmforgeError(f"{shard}: holds {tokens} tokens but its index ends at {last} (a cut file?)")
    return Shard(shard, documents, tokens, token_size, tokenizer)


@functools.lru_cache(maxsize=64)
def layout(path: str) -> tuple[Shard, ...]:
    """The shards of a streaming source (a `.ds` file or a folder of them), in order, each
    checked against its index."""
    target = Path(path)
    return tuple(_checked(shard) for shard in (shards(target) if target.is_dir() else [target]))


def _shard_documents(shard: Shard, first: int) -> Iterator[tuple[np.ndarray, int, int]]:
    """(ids, document number after it within the shard, its end in tokens) from document
    `first` of the shard on."""
    if not shard.documents:
        return
    tokens = np.memmap(shard.path, dtype=_dtype(shard.token_size), mode="r") if shard.tokens else None
    ends = np.memmap(_index(shard.path), dtype="<u8", mode="r")
    begin = int(ends[first - 1]) if first else 0
    for chunk in range(first, shard.documents, _INDEX_CHUNK):
        for number, end in enumerate(ends[chunk : chunk + _INDEX_CHUNK].tolist(), start=chunk + 1):
            if end <= begin:
                raise LmforgeError(
                    f"{shard.path}: its index disagrees with the file: document {number} ends at token {end}, "
                    f"not after {begin}"
                )
            yield np.asarray(tokens[begin:end]), number, end
            begin = end


def documents_from(path: str, start: int) -> Iterator[tuple[np.ndarray, int, int]]:
    """(ids, documents read, bytes of .ds read) for every document of a streaming source
    from document number `start` on; the shards before it are skipped by their sizes."""
    done, offset = 0, 0
    for shard in layout(path):
        if start < done + shard.documents:
            for ids, number, end in _shard_documents(shard, max(start - done, 0)):
                yield ids, done + number, offset + end * shard.token_size
        done, offset = done + shard.documents, offset + shard.tokens * shard.token_size


def source_bytes(path: str) -> int:
    """Bytes of a streaming source's .ds files."""
    return sum(shard.tokens * shard.token_size for shard in layout(path))


def tokenizer_problem(path: str, tokenizer) -> str | None:
    """Why the shards of `path` were not made with the run's `tokenizer` (a transformers
    tokenizer), or None. The metadata names the tokenizer.json they were made with: the same
    file as the run's tokenizer (its name_or_path) passes; another file passes when every
    token of its vocabulary has the same id in the run's. A recorded file that is gone
    cannot be compared: a warning, and the per-document checks (every id below the
    vocabulary size, EOS last) remain."""
    run = getattr(tokenizer, "name_or_path", "") or ""
    run_file = Path(run) / "tokenizer.json" if run and Path(run).is_dir() else Path(run) if run else None
    for recorded in sorted({shard.tokenizer for shard in layout(path)}, key=str):
        if recorded is None or recorded.startswith("Unknown Tokenizer"):
            log.warning("%s: its shards do not record their tokenizer; only token ids are checked", path)
            continue
        if run_file is not None and run_file.is_file() and run_file.resolve() == Path(recorded).resolve():
            continue
        if not Path(recorded).is_file():
            log.warning(
                "%s: tokenized with %s, which is not here to compare with the run's tokenizer %s; "
                "only token ids are checked",
                path,
                recorded,
                run or "(in memory)",
            )
            continue
        from tokenizers import Tokenizer

        theirs = Tokenizer.from_file(recorded).get_vocab(with_added_tokens=True)
        ours = tokenizer.get_vocab()
        if any(ours.get(token) != id_ for token, id_ in theirs.items()):
            return f"tokenized with {recorded}, not with the run's tokenizer {run or '(in memory)'}"
    return None
