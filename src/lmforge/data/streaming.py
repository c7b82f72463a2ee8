"""Streaming for plain-text corpora larger than memory: documents are read lazily from
each source (JSONL/JSON/CSV, `.gz`/`.zst` included, or `.txt` with one document a line),
tokenized in small batches, interleaved across sources by weight, and packed on the fly
into rows of exactly max_length tokens (the last may be shorter). A document longer than
the room left continues in the next row. Memory holds one tokenized batch per source and
one row, whatever the corpus size.

Rows have the packed layout (`PackedCollator`): position ids restart at 0 for each
document piece, and each piece's first label is -100.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import IterableDataset

from lmforge.data.conversation import ROLE_IDS
from lmforge.data.sources import open_binary, suffixes, read_records
from lmforge.data.tokenize import IGNORE_INDEX
from lmforge.errors import LmforgeError

TEXT = ROLE_IDS["text"]


@dataclass(frozen=True)
class TextSource:
    path: str
    weight: float = 1.0
    text_field: str = "text"


def documents(source: TextSource) -> Iterator[str]:
    path = Path(source.path)
    kind, compression = suffixes(path)
    if kind == ".txt":
        if not path.is_file():
            raise LmforgeError(f"{path}: data file not found")
        with open_binary(path, compression) as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError as exc:
                    raise LmforgeError(f"{path}:{number}: invalid UTF-8 at byte {exc.start} of the line") from None
                if line:
                    yield line
        return
    for record, where in read_records(path):
        text = record.get(source.text_field)
        if not isinstance(text, str):
            raise LmforgeError(f"{where}: text record needs a string field '{source.text_field}'")
        yield text


class PackedTextStream(IterableDataset):
    """Packed rows from weighted plain-text sources, deterministic by seed. A source that
    runs out leaves the mix; the stream ends when all have."""

    def __init__(self, sources: list[TextSource], tokenizer, max_length: int, seed: int = 0, batch_docs: int = 64):
        if not sources:
            raise LmforgeError("streaming: no sources given")
        self.sources, self.tokenizer, self.max_length = sources, tokenizer, max_length
        self.seed, self.batch_docs = seed, batch_docs

    def _tokenized(self, source: TextSource) -> Iterator[list[int]]:
        """Token ids per document (bos + text + eos), tokenized batch_docs at a time."""
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        eos = [self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else []
        batch: list[str] = []
        for text in documents(source):
            batch.append(text)
            if len(batch) == self.batch_docs:
                yield from (bos + ids + eos for ids in self.tokenizer(batch, add_special_tokens=False)["input_ids"])
                batch = []
        if batch:
            yield from (bos + ids + eos for ids in self.tokenizer(batch, add_special_tokens=False)["input_ids"])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rng = random.Random(self.seed)
        streams = [self._tokenized(s) for s in self.sources]
        weights = [s.weight for s in self.sources]
        live = [i for i, w in enumerate(weights) if w > 0]
        row = _Row()
        pending: list[int] = []  # the rest of the current document
        while live or pending:
            if not pending:
                choice = rng.choices(live, weights=[weights[i] for i in live])[0]
                document = next(streams[choice], None)
                if document is None:
                    live.remove(choice)
                    continue
                pending = document
                row.start_piece()
            take = self.max_length - len(row)
            row.add(pending[:take])
            pending = pending[take:]
            if len(row) == self.max_length:
                yield row.emit()
                row.start_piece()  # a document cut here continues at position 0 of the next row
        if len(row):
            yield row.emit()


class _Row:
    def __init__(self):
        self.ids: list[int] = []
        self.positions: list[int] = []
        self.labels: list[int] = []
        self._position = 0

    def __len__(self) -> int:
        return len(self.ids)

    def start_piece(self) -> None:
        self._position = 0

    def add(self, tokens: list[int]) -> None:
        start = self._position
        self.ids += tokens
        self.positions += range(start, start + len(tokens))
        self.labels += [IGNORE_INDEX, *tokens[1:]] if start == 0 and tokens else tokens
        self._position += len(tokens)

    def emit(self) -> dict[str, Any]:
        row = {
            "input_ids": self.ids,
            "labels": self.labels,
            "token_roles": [TEXT] * len(self.ids),
            "position_ids": self.positions,
        }
        self.ids, self.positions, self.labels = [], [], []
        return row
