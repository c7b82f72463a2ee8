"""Reading the tokenized shards `lmforge data prepare --tokenize` writes (datatrove's
format): `<name>.ds` holds token ids back to back (uint16, or uint32 when the tokenizer
has more than 65536 ids; the `.ds.metadata` file says which), `<name>.ds.index` the end of
every document in tokens (uint64). Memory-mapped: nothing is read until it is used."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lmforge.errors import LmforgeError


def _token_size(shard: Path) -> int:
    metadata = shard.with_name(shard.name + ".metadata")
    if metadata.is_file():  # "tokenizer|token size" on the first line
        return int(metadata.read_text(encoding="utf-8").splitlines()[0].rsplit("|", 1)[1])
    return 2


def read_shard(shard: str | Path) -> Iterator[np.ndarray]:
    """Every document of one shard, as its token ids (EOS last), in order."""
    shard = Path(shard)
    index = shard.with_name(shard.name + ".index")
    if not shard.is_file() or not index.is_file():
        raise LmforgeError(f"{shard}: not a tokenized shard (needs the .ds file and its .ds.index)")
    dtype = np.uint32 if _token_size(shard) == 4 else np.uint16
    tokens = np.memmap(shard, dtype=dtype, mode="r") if shard.stat().st_size else np.zeros(0, dtype)
    ends = np.fromfile(index, dtype=np.uint64)
    if len(ends) and int(ends[-1]) != len(tokens):
        raise LmforgeError(f"{shard}: holds {len(tokens)} tokens but its index ends at {int(ends[-1])} (a cut file?)")
    start = 0
    for end in ends.tolist():
        yield np.asarray(tokens[start:end])
        start = end


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
        ends = np.fromfile(shard.with_name(shard.name + ".index"), dtype=np.uint64)
        total += int(ends[-1]) if len(ends) else 0
    return total
