"""Documents read from a position, for streams that must resume where they stopped.

A `Position` is (records, offset): the records (lines of a .jsonl/.txt file) before it,
and, for files that allow seeking (uncompressed .jsonl and .txt), its byte offset. Those
are resumed with one `seek`, whatever their size. Other sources (.gz/.zst, .json, .csv,
parquet, Hugging Face folders and hub names) have no byte offset to seek to: resuming
reads and skips the records before the position (hub names stream through `datasets`
with `streaming=True` and `skip`). Tokenized shards (`lmforge data prepare --tokenize`: a
`.ds` file or a folder of them, data/shards.py) yield each document's stored token ids
(EOS last) instead of text; their position counts documents (and the .ds bytes before it),
which the shards' indexes map to (shard, document) without reading what comes before.

Held-out documents (`holdout`, a dataset's val_split under data.streaming): a document is
held out for validation when the hash of its text falls in the first `holdout` share of
the hash space (`held_out`): the same text is held out wherever it occurs, in any source,
position or epoch, and without reading the rest of the file. The training side reads the
other documents; the validation side reads only these. No document is on both. A tokenized
document is hashed by its token ids instead (`held_out` of the ids): the same document
hashes differently as text and as token ids, so shards and their text hold out different
documents (deciding by the text would mean decoding every document).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lmforge.data import shards
from lmforge.data.sources import _HUB_NAME, json_problem, read_records, suffixes
from lmforge.errors import LmforgeError


@dataclass(frozen=True)
class Position:
    records: int = 0
    offset: int | None = None
    """Byte offset in the file (seekable files only)."""


@dataclass(frozen=True)
class DocumentSource:
    """Where one stream source's documents come from."""

    path: str
    text_field: str = "text"
    subset: str | None = None
    split: str = "train"
    encoding_errors: str = "strict"
    holdout: float = 0.0
    """Share of the documents held out for validation (by `held_out`)."""
    side: Literal["train", "val"] = "train"
    """Which documents to read: the training ones, or the held-out ones."""

    @property
    def is_hub(self) -> bool:
        path = Path(self.path)
        return not path.exists() and bool(_HUB_NAME.match(self.path)) and not suffixes(path)[0]

    @property
    def tokenized(self) -> bool:
        """Tokenized shards: documents are token ids."""
        return shards.is_token_shards(self.path)

    @property
    def seekable(self) -> bool:
        kind, compression = suffixes(Path(self.path))
        return kind in (".jsonl", ".txt") and not compression and Path(self.path).is_file()

    def start(self) -> Position:
        return Position(0, 0 if self.seekable or self.tokenized else None)

    def size(self) -> int | None:
        """Bytes of a local file, or of tokenized shards' .ds files (None for other folders
        and hub names)."""
        if self.tokenized:
            return shards.source_bytes(self.path)
        path = Path(self.path)
        return path.stat().st_size if path.is_file() else None


Document = str | np.ndarray
"""A document's text, or its token ids (tokenized shards)."""


def held_out(document: Document, share: float) -> bool:
    """Whether a document is held out for validation: the first 8 bytes of the BLAKE2b hash of
    its UTF-8 text (or of its token ids as stored, EOS included, as little-endian uint32), as
    a fraction of 2**64, fall below `share`.

    >>> held_out("the cat sat", 0.0), held_out("the cat sat", 0.999999)
    (False, True)
    """
    if isinstance(document, str):
        data = document.encode("utf-8", "surrogatepass")
    else:
        data = np.asarray(document, dtype="<u4").tobytes()
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return int.from_bytes(digest, "big") < share * 2**64


def read_documents(source: DocumentSource, position: Position) -> Iterator[tuple[Document, Position]]:
    """(document, position after its record) for every non-empty document from `position`
    on, of the source's side: its training documents, or its held-out ones. A document is
    its text, or its token ids for tokenized shards."""
    documents = _all_documents(source, position)
    if not source.holdout:
        yield from documents if source.side == "train" else ()
        return
    validation = source.side == "val"
    for text, after in documents:
        if held_out(text, source.holdout) == validation:
            yield text, after


def _all_documents(source: DocumentSource, position: Position) -> Iterator[tuple[Document, Position]]:
    if source.tokenized:
        for ids, documents, offset in shards.documents_from(source.path, position.records):
            yield ids, Position(documents, offset)
        return
    if source.seekable:
        yield from _read_seekable(source, position)
        return
    kind, _ = suffixes(Path(source.path))
    count, skip = 0, position.records  # records counted from the start of the source
    if kind == ".txt":  # compressed plain text: one document a line
        records = _compressed_lines(source)
    elif source.is_hub:
        records, count, skip = _hub_records(source, position.records), position.records, 0
    else:
        records = (r for r, _ in read_records(source.path, encoding_errors=source.encoding_errors))
    for record in records:
        count += 1
        if count <= skip:
            continue
        text = record if isinstance(record, str) else _text(record, source, f"{source.path}[{count - 1}]")
        if text.strip():
            yield text, Position(count)


def _text(record: dict, source: DocumentSource, where: str) -> str:
    text = record.get(source.text_field)
    if not isinstance(text, str):
        raise LmforgeError(f"{where}: text record needs a string field '{source.text_field}'")
    return text


def _read_seekable(source: DocumentSource, position: Position) -> Iterator[tuple[str, Position]]:
    path = Path(source.path)
    jsonl = suffixes(path)[0] == ".jsonl"
    records, offset = position.records, position.offset or 0
    with path.open("rb") as handle:
        handle.seek(offset)
        for raw in iter(handle.readline, b""):
            records += 1
            offset += len(raw)
            where = f"{path}:{records}"
            try:
                line = raw.decode("utf-8", errors=source.encoding_errors)
            except UnicodeDecodeError as exc:
                raise LmforgeError(
                    f"{where}: invalid UTF-8 at byte {exc.start} of the line; set the dataset's "
                    "encoding_errors: replace to substitute U+FFFD"
                ) from None
            if records == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            if jsonl:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LmforgeError(f"{where}: {json_problem(exc, line)}") from None
                if not isinstance(record, dict):
                    raise LmforgeError(f"{where}: expected a JSON object, got {type(record).__name__}")
                text = _text(record, source, where)
            else:
                text = line.rstrip("\r\n")
            if text.strip():
                yield text, Position(records, offset)


def _compressed_lines(source: DocumentSource) -> Iterator[str]:
    from lmforge.data.sources import open_binary

    path = Path(source.path)
    with open_binary(path, suffixes(path)[1]) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield raw.decode("utf-8", errors=source.encoding_errors).rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise LmforgeError(f"{path}:{number}: invalid UTF-8 at byte {exc.start} of the line") from None


def _hub_records(source: DocumentSource, skip: int) -> Iterator[dict]:
    """A hub dataset read as a stream (never downloaded whole), the first `skip` records skipped."""
    import datasets

    try:
        stream = datasets.load_dataset(source.path, source.subset, split=source.split, streaming=True)
    except Exception as exc:  # datasets raises many kinds (connection, missing config, split...)
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise LmforgeError(f"{source.path}: cannot stream as a Hugging Face dataset ({first_line})") from exc
    yield from stream.skip(skip) if skip else stream
