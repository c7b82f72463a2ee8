"""Streaming for plain-text corpora larger than memory: documents are read lazily from
each source (JSONL/JSON/CSV/parquet, `.gz`/`.zst` included, `.txt` with one document a
line, Hugging Face folders and hub names), tokenized in small batches (bos + text + eos),
mixed by weight and packed on the fly into rows of exactly max_length tokens. Memory
holds one tokenized batch per source and one row, whatever the corpus size.

Tokenized shards (`lmforge data prepare --tokenize`; a source whose path is a `.ds` file or
a folder of them) are read as token ids, not tokenized again: each document becomes
bos + its stored ids, whose last (the EOS prepare appended) is the run's EOS, the ids the
same text would give. The shards must be the run tokenizer's (data/shards.py
`tokenizer_problem`, checked when the stream is built); every document is checked as read
(ids below the vocabulary size, EOS last).

Fill rules (`fill`):
  - "source" (seed 003's MPT-1B rule, the default): each row draws one source with the
    probability of its weight and is filled from that source alone, with as many
    documents as it takes; a document cut at the row's end continues the next time that
    source is drawn.
  - "mix": each document draws its source; a row holds documents of several sources.

Rows have the packed layout (`PackedCollator`; cut by packing.py's `PieceRow`, as
`data.packing: split` cuts in-memory text): with `isolate` (the default) position ids
restart at 0 for each document piece and each piece's first label is -100, so attention
stays within each document; without it a row is one causal sequence.

With `repeat` a source that runs out starts over (its next epoch) and the stream never
ends (training stops at train.max_steps); without it a source that runs out leaves the mix
and the stream ends when all have (the last row may then be shorter).

Stages (`StreamStage`): consecutive spans of rows, each with its own source weights.

Validation (`TextSource.holdout`): a source holds out a share of its documents, chosen by a
hash of their text, or of their token ids for shards (stream_reader.held_out); the stream
never reads them, and `held_out_side()` is the source reading only them, which `pack_documents` packs like the
stream does.

The stream is deterministic given the seed, and resumable: `state_at(rows)` is the
stream's state after `rows` rows (per source: epoch, read position, tokens taken from the
document in progress, tokens and documents drawn; the RNG state; the row count), small and
JSON-serializable; `resume(state)` makes the next iteration start exactly there. Seekable
files resume with a seek, tokenized shards at their document; other sources re-read and
skip the records before the position (stream_reader.py).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

from torch.utils.data import IterableDataset

from lmforge.data.packing import PieceRow, split_rows
from lmforge.data import shards
from lmforge.data.stream_reader import Document, DocumentSource, Position, read_documents
from lmforge.errors import LmforgeError

Fill = Literal["source", "mix"]


@dataclass(frozen=True)
class TextSource:
    path: str
    weight: float = 1.0
    text_field: str = "text"
    name: str | None = None
    """How state and reports name the source (default: the path)."""
    key: str | None = None
    """The config key errors name (e.g. data.datasets[0])."""
    subset: str | None = None
    split: str = "train"
    encoding_errors: str = "strict"
    holdout: float = 0.0
    """Share of the documents held out for validation (stream_reader.held_out): the stream
    never reads them."""
    side: Literal["train", "val"] = "train"
    """"val": this source's held-out documents instead (`held_out_side`)."""

    @property
    def label(self) -> str:
        return self.name or self.path

    @property
    def documents(self) -> DocumentSource:
        return DocumentSource(
            self.path, self.text_field, self.subset, self.split, self.encoding_errors, self.holdout, self.side
        )

    def held_out_side(self) -> TextSource:
        """The same source reading only its held-out documents."""
        return replace(self, side="val")


@dataclass(frozen=True)
class StreamStage:
    name: str
    weights: tuple[float, ...]
    """One weight per source (0: left out of this stage)."""
    rows: int | None = None
    """Rows in this stage; None: the rest of the stream."""


def documents(source: TextSource) -> Iterator[str]:
    """Every non-empty document of a source, in order."""
    if source.documents.tokenized:
        raise LmforgeError(f"{source.key or source.label}: {source.path} holds token ids (tokenized shards), not text")
    for text, _ in read_documents(source.documents, source.documents.start()):
        yield text


class PackedTextStream(IterableDataset):
    """Packed rows from weighted plain-text sources (see the module docstring)."""

    def __init__(
        self,
        sources: list[TextSource],
        tokenizer,
        max_length: int,
        seed: int = 0,
        batch_docs: int = 64,
        fill: Fill = "source",
        isolate: bool = True,
        repeat: bool = False,
        stages: list[StreamStage] | None = None,
        snapshot_every: int = 1,
    ):
        if not sources:
            raise LmforgeError("streaming: no sources given")
        self.sources, self.tokenizer, self.max_length = sources, tokenizer, max_length
        self.seed, self.batch_docs, self.fill, self.isolate, self.repeat = seed, batch_docs, fill, isolate, repeat
        self.stages = stages or [StreamStage("train", tuple(s.weight for s in sources))]
        self.snapshot_every = snapshot_every
        self._resume: dict[str, Any] | None = None
        self._snapshots: deque[tuple[int, dict[str, Any]]] = deque(maxlen=64)
        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        self._bos, self._eos = ([bos] if bos is not None else []), ([eos] if eos is not None else [])
        self._vocab = len(tokenizer)
        for source in sources:
            if source.documents.tokenized:
                _check_shards(source, tokenizer)

    # -- state -------------------------------------------------------------------

    def initial_state(self) -> dict[str, Any]:
        return {
            "rows": 0,
            "rng": None,
            "current": None,
            "sources": [_Cursor.fresh(source) for source in self.sources],
        }

    def resume(self, state: dict[str, Any] | None) -> None:
        """Start the next iteration from `state` (from `state_at`), or from the beginning."""
        if state is not None:
            names = [s["name"] for s in state["sources"]]
            if names != [s.label for s in self.sources]:
                raise LmforgeError(
                    f"data.datasets: the checkpoint's stream reads {', '.join(names)}, the config "
                    f"{', '.join(s.label for s in self.sources)}; resume with the config it was trained with"
                )
        self._resume = state
        self._snapshots.clear()

    def state_at(self, rows: int) -> dict[str, Any] | None:
        """The state after `rows` rows, if a snapshot of it is still kept (snapshots are taken
        every `snapshot_every` rows; the last 64 are kept, enough for any prefetching)."""
        for at, state in reversed(self._snapshots):
            if at == rows:
                return state
        if self._resume is not None and self._resume["rows"] == rows:
            return self._resume
        if rows == 0:
            return self.initial_state()
        return None

    def stage_at(self, rows: int) -> int:
        """The index of the stage that row number `rows` (0-based) belongs to."""
        end = 0
        for index, stage in enumerate(self.stages):
            if stage.rows is None:
                return index
            end += stage.rows
            if rows < end:
                return index
        return len(self.stages) - 1

    # -- rows --------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        state = self._resume or self.initial_state()
        rng = random.Random(self.seed)
        if state["rng"] is not None:
            version, internal, gauss = state["rng"]
            rng.setstate((version, tuple(internal), gauss))
        cursors = [_Cursor(self, i, saved) for i, saved in enumerate(state["sources"])]
        rows, current = state["rows"], state["current"]
        stage = self.stage_at(rows)
        while True:
            if self.stage_at(rows) != stage:  # a new stage draws afresh (a cut document waits in its source)
                stage, current = self.stage_at(rows), None
            weights = self.stages[stage].weights
            row = PieceRow(self.isolate)
            while len(row) < self.max_length:
                live = [i for i, c in enumerate(cursors) if not c.exhausted and weights[i] > 0]
                if current is None or cursors[current].exhausted:
                    if not live or (self.fill == "source" and len(row)):
                        break  # "source": a row never changes source; it ends short when its source has
                    current = rng.choices(live, weights=[weights[i] for i in live])[0]
                piece = cursors[current].take(self.max_length - len(row))
                if piece is None:
                    continue  # that source ran out (exhausted now)
                row.add(piece)
                if self.fill == "mix" and cursors[current].taken == 0:
                    current = None  # its document is finished: the next one draws its source
            if self.fill == "source":
                current = None
            if not len(row):
                return
            rows += 1
            if rows % self.snapshot_every == 0:
                self._snapshots.append((rows, _state(rows, rng, current, cursors)))
            yield row.emit()

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [self._bos + doc + self._eos for doc in ids]

    def encode(self, source: TextSource, documents: list[Document]) -> list[list[int]]:
        """A source's documents as the stream trains them: texts tokenized (bos + text + eos),
        token ids of shards checked and given the same bos and eos."""
        if not documents:
            return []
        if isinstance(documents[0], str):
            return self.tokenize(documents)
        encoded = []
        for ids in documents:
            top, last = int(ids.max()), int(ids[-1])
            if top >= self._vocab or (self._eos and last != self._eos[0]):
                problem = (
                    f"holds token id {top}, beyond the run's tokenizer ({self._vocab} ids)"
                    if top >= self._vocab
                    else f"ends in token {last}, not the run tokenizer's EOS {self._eos[0]}"
                )
                raise LmforgeError(
                    f"{source.key or source.label}.path: a document of {source.path} {problem}; "
                    "were the shards made with another tokenizer?"
                )
            encoded.append(self._bos + ids[:-1].tolist() + self._eos)
        return encoded


def pack_documents(documents: list[list[int]], max_length: int, isolate: bool = True) -> list[dict[str, Any]]:
    """Tokenized documents packed in order into rows of `max_length` tokens, as the stream
    packs one source's documents (a document cut at a row's end continues in the next
    row); the last row may be shorter. For validation sets, which must look like training."""
    return split_rows(({"input_ids": document} for document in documents), max_length, isolate)


def _check_shards(source: TextSource, tokenizer) -> None:
    """Tokenized shards read whole (every .ds with its index, the two agreeing) and made with
    the run's tokenizer; errors name the dataset's path key."""
    where = f"{source.key or source.label}.path"
    try:
        problem = shards.tokenizer_problem(source.path, tokenizer)
    except LmforgeError as exc:
        raise LmforgeError(f"{where}: {exc}") from None
    if problem:
        raise LmforgeError(f"{where}: {source.path} was {problem}")


def _state(rows: int, rng: random.Random, current: int | None, cursors: list[_Cursor]) -> dict[str, Any]:
    version, internal, gauss = rng.getstate()
    return {
        "rows": rows,
        "rng": [version, list(internal), gauss],
        "current": current,
        "sources": [c.state() for c in cursors],
    }


class _Cursor:
    """One source's read position: documents come tokenized `batch_docs` at a time; the
    position moves past a document only when its last token is taken."""

    def __init__(self, stream: PackedTextStream, index: int, saved: dict[str, Any]):
        self.stream, self.source = stream, stream.sources[index]
        self.saved = dict(saved)
        self.position = Position(saved["records"], saved["offset"])
        self.taken = saved["taken"]
        self.exhausted = False
        self._documents: Iterator[tuple[list[int], Position]] | None = None
        self._document: list[int] | None = None
        self._after: Position | None = None
        self._epoch_documents = 0 if self.position.records == 0 else None  # unknown after a resume mid-epoch

    @staticmethod
    def fresh(source: TextSource) -> dict[str, Any]:
        start = source.documents.start()
        return {
            "name": source.label,
            "epoch": 0,
            "records": start.records,
            "offset": start.offset,
            "taken": 0,
            "tokens": 0,
            "documents": 0,
            "records_per_epoch": None,
        }

    def state(self) -> dict[str, Any]:
        return {
            **self.saved,
            "records": self.position.records,
            "offset": self.position.offset,
            "taken": self.taken,
        }

    def _tokenized(self, start: Position) -> Iterator[tuple[list[int], Position]]:
        batch: list[tuple[Document, Position]] = []
        for item in read_documents(self.source.documents, start):
            batch.append(item)
            if len(batch) == self.stream.batch_docs:
                yield from zip(self.stream.encode(self.source, [t for t, _ in batch]), (p for _, p in batch))
                batch = []
        if batch:
            yield from zip(self.stream.encode(self.source, [t for t, _ in batch]), (p for _, p in batch))

    def _next_document(self) -> bool:
        if self._documents is None:
            self._documents = self._tokenized(self.position)
        item = next(self._documents, None)
        if item is None:
            if not self.stream.repeat:
                self.exhausted = True
                return False
            if self._epoch_documents == 0:
                where = self.source.key or self.source.label
                raise LmforgeError(f"{where}: {self.source.path} holds no documents")
            # the next epoch of this source
            self.saved["records_per_epoch"] = self.position.records
            self.saved["epoch"] += 1
            self.position, self.taken, self._epoch_documents = self.source.documents.start(), 0, 0
            self._documents = self._tokenized(self.position)
            item = next(self._documents, None)
            if item is None:
                raise LmforgeError(f"{self.source.key or self.source.label}: {self.source.path} holds no documents")
        self._document, self._after = item
        return True

    def take(self, room: int) -> list[int] | None:
        """Up to `room` tokens of the document in progress (the next document if none is);
        None when the source has run out (without `repeat`)."""
        if self._document is None and not self._next_document():
            return None
        piece = self._document[self.taken : self.taken + room]
        self.taken += len(piece)
        self.saved["tokens"] += len(piece)
        if self.taken >= len(self._document):
            self.position, self.taken, self._document = self._after, 0, None
            self.saved["documents"] += 1
            if self._epoch_documents is not None:
                self._epoch_documents += 1
        return piece
