"""The datatrove pipeline steps of `lmforge data prepare` (data/prepare.py builds the
stages from them). Imported only when datatrove is installed.

Every document carries in its metadata: `source` (the dataset's name), `tokens` (its
length under the tokenizer, when one is given), and `order` (65535 - the task's rank; see
`exact_priority`). Each step that drops or counts documents writes its per-source counts to
`counts/<step>/<rank>.json` when its task ends, before datatrove marks the task complete,
so a resumed run finds the counts of the tasks it skips.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import orjson
from datatrove.data import Document, DocumentsPipeline
from datatrove.executor import LocalPipelineExecutor
from datatrove.executor.ray import RayPipelineExecutor
from datatrove.io import get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import JsonlReader, ParquetReader
from datatrove.pipeline.readers.base import BaseDiskReader
from datatrove.pipeline.tokens.tokenizer import TokenizedFile
from datatrove.utils.batching import batched
from datatrove.utils.logging import logger
from datatrove.utils.word_tokenizers import WordTokenizer

from lmforge.data.clean import Filters, drop_reason, exact_key
from lmforge.data.conversation import Conversation, Segment
from lmforge.data.decontaminate import NgramIndex
from lmforge.data.sources import COMPRESSIONS, parse_json_line
from lmforge.errors import LmforgeError

TOKEN_BATCH = 512


@dataclass(frozen=True)
class PlannedFile:
    source: int
    folder: str
    """The folder datatrove opens (a local path or an fsspec URL)."""
    name: str
    """The file inside `folder`."""
    kind: str
    """.jsonl, .parquet or .txt."""

    @property
    def path(self) -> str:
        return f"{self.folder.rstrip('/')}/{self.name}"


@dataclass(frozen=True)
class SourceSettings:
    name: str
    text_field: str = "text"
    filters: Filters = field(default_factory=Filters)
    on_bad_record: str = "error"
    encoding_errors: str = "strict"


class Counts:
    """Documents and tokens per source and reason, saved per task."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.tokens: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def add(self, source: str, what: str, tokens: int | None) -> None:
        self.docs[source][what] += 1
        self.tokens[source][what] += tokens or 0

    def save(self, folder: str, step: str, rank: int) -> None:
        with get_datafolder(folder).open(f"{step}/{rank:05d}.json", "w") as handle:
            json.dump({"docs": self.docs, "tokens": self.tokens}, handle)


# --------------------------------------------------------------------------- reading


class TextLineReader(BaseDiskReader):
    """Plain text, one document a line (as the streaming reader reads .txt); datatrove has no
    text reader. Compression follows the file name (.gz, .zst)."""

    name = "📄 Text lines"

    def read_file(self, filepath: str) -> DocumentsPipeline:
        with self.data_folder.open(filepath, "rt", compression="infer", encoding="utf-8", errors="replace") as f:
            for line_number, line in enumerate(f):
                document = self.get_document_from_dict({self.text_key: line.rstrip("\n")}, filepath, line_number)
                if document:
                    yield document


BAD = "\x00lmforge-bad-record"
"""The key under which LineJsonReader hands a line it cannot read to the adapter."""


class LineJsonReader(JsonlReader):
    """JSONL, one record a line, read as the in-memory path reads it (sources.read_records):
    blank lines are skipped, a line that is not a JSON object (cut off, malformed, invalid
    UTF-8, a list) becomes a bad record at its line (an error, or counted with on_bad_record:
    skip). datatrove's own JSONL reader logs such lines and moves on, and an invalid UTF-8
    byte ends its reading of the file: lines lost without a count."""

    def __init__(self, folder: str, text_key: str, encoding_errors: str, **kwargs):
        super().__init__(folder, compression="infer", add_file_path=False, text_key=text_key, **kwargs)
        self.encoding_errors, self.compressed = encoding_errors, False

    def read_file(self, filepath: str) -> DocumentsPipeline:
        self.compressed = filepath.endswith(COMPRESSIONS)
        with self.data_folder.open(filepath, "rb", compression=self.compression) as f:
            offset = 0
            for li, raw in enumerate(f):
                start, offset = offset, offset + len(raw)
                with self.track_time():
                    try:
                        record = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        record = self._slow(raw, li, start)
                        if record is None:  # a blank line
                            continue
                    if not isinstance(record, dict):
                        record = {BAD: f"expected a JSON object, got {type(record).__name__}"}
                    document = self.get_document_from_dict(record, filepath, li)
                yield document

    def _slow(self, raw: bytes, li: int, start: int) -> object:
        """The record of a line orjson refused, {BAD: what is wrong}, or None for a blank
        line: the in-memory path's parser and messages (BOM, lone-surrogate escapes,
        truncated lines)."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if self.encoding_errors != "replace":
                where = " of the decompressed data" if self.compressed else ""
                return {
                    BAD: f"invalid UTF-8 at byte offset {start + exc.start}{where}; "
                    "set the dataset's encoding_errors: replace to substitute U+FFFD"
                }
            text = raw.decode("utf-8", errors="replace")
        if li == 0:
            text = text.removeprefix("\ufeff")
        if not text.strip():
            return None
        record, problem = parse_json_line(text, self.encoding_errors)
        return {BAD: problem} if problem else record


def _adapter(self, data: dict, path: str, id_in_file: int | str) -> dict:
    """A record as the in-memory `text` format reads it: the text field (a record without a
    string there is a bad record), the language of `lang`/`language`. A record datatrove
    would skip for having no text gets a placeholder, so the clean step counts it."""
    text = data.get(self.text_key)
    metadata: dict = {"line": id_in_file + 1 if isinstance(id_in_file, int) else id_in_file}
    if BAD in data:
        metadata["bad"] = data[BAD]
        text = ""
    elif not isinstance(text, str):
        metadata["bad"] = f"no string field '{self.text_key}'"
        text = ""
    lang = data.get("lang") or data.get("language")
    if isinstance(lang, str):
        metadata["lang"] = lang
    if not text.strip():
        metadata["empty"] = text
        text = " "
    return {"text": text, "id": f"{path}:{metadata['line']}", "metadata": metadata}


def _reader(planned: PlannedFile, source: SourceSettings) -> BaseDiskReader:
    common = {"adapter": _adapter, "text_key": source.text_field}
    if planned.kind == ".parquet":
        return ParquetReader(planned.folder, read_metadata=True, **common)
    if planned.kind == ".txt":
        return TextLineReader(planned.folder, add_file_path=False, **common)
    return LineJsonReader(planned.folder, encoding_errors=source.encoding_errors, **common)


class SourceReader(PipelineStep):
    """Reads this task's files (a contiguous slice of every source's files, in config order,
    so task rank then document index is the in-memory path's record order), tags each
    document with its source, and counts its tokens."""

    name = "📖 lmforge sources"
    type = "📖 - READER"

    def __init__(
        self, plan: list[list[PlannedFile]], sources: list[SourceSettings], counts: str, tokenizer: str | None
    ):
        super().__init__()
        self.plan, self.sources, self.counts, self.tokenizer_path = plan, sources, counts, tokenizer

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        counts = Counts()
        tokenizer = _load_tokenizer(self.tokenizer_path)
        for planned in self.plan[rank] if rank < len(self.plan) else []:
            source = self.sources[planned.source]
            for batch in batched(self._read(planned, source, counts), TOKEN_BATCH):
                if tokenizer is not None:
                    texts = [doc.text for doc in batch]
                    for doc, encoded in zip(batch, tokenizer.encode_batch(texts, add_special_tokens=False)):
                        doc.metadata["tokens"] = len(encoded.ids)
                for doc in batch:
                    doc.metadata["order"] = 65535 - rank
                    counts.add(source.name, "read", doc.metadata.get("tokens"))
                    self.stat_update("documents")
                    yield doc
        counts.save(self.counts, "read", rank)

    def _read(self, planned: PlannedFile, source: SourceSettings, counts: Counts) -> Iterator[Document]:
        reader = _reader(planned, source)
        try:
            for doc in reader.read_file(planned.name):
                if "bad" in doc.metadata:
                    self._bad(planned, doc.metadata["line"], doc.metadata["bad"], source, counts)
                    continue
                doc.metadata["source"] = source.name
                doc.metadata["shard"] = shard_name(source.name)  # the writers' ${shard}
                yield doc
        except LmforgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - any reader failure names the file
            raise LmforgeError(
                f"{planned.path}: datatrove cannot read this {planned.kind} file ({type(exc).__name__}: {exc})"
            ) from exc

    def _bad(self, planned, line, problem, source: SourceSettings, counts: Counts) -> None:
        if source.on_bad_record != "skip":
            raise LmforgeError(
                f"{planned.path}:{line}: {problem} (set the dataset's on_bad_record: skip to skip such records)"
            )
        counts.add(source.name, "read", 0)
        counts.add(source.name, "bad_record", 0)


def _load_tokenizer(path: str | None):
    if path is None:
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


# --------------------------------------------------------------------------- cleaning


class SplitWords(WordTokenizer):
    """Words split on whitespace, as the in-memory MinHash shingles them (clean.shingles).
    datatrove's English tokenizer needs NLTK, its `WhitespaceTokenizer` spaCy."""

    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [line for line in text.splitlines() if line.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [match.span() for match in re.finditer(r"\S+", text)]


class CleanFilter(PipelineStep):
    """The in-memory path's filters (clean.drop_reason: empty text, language, min_chars,
    max_chars) and decontamination, with the reasons counted per source; keeps the exact
    dedup key (clean.exact_key) of every document it passes on."""

    name = "🧹 lmforge filters"
    type = "🔻 - FILTER"

    def __init__(self, sources: list[SourceSettings], counts: str, decontaminate: NgramIndex | None):
        super().__init__()
        self.filters = {s.name: s.filters for s in sources}
        self.counts, self.index = counts, decontaminate

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        counts = Counts()
        for doc in data:
            source, tokens = doc.metadata["source"], doc.metadata.get("tokens")
            text = doc.metadata.pop("empty", doc.text)
            metadata = {"lang": doc.metadata["lang"]} if "lang" in doc.metadata else {}
            conversation = Conversation((Segment("text", text),), doc.id, metadata)
            reason = drop_reason(conversation, self.filters[source])
            if reason is None and self.index is not None and self.index.contaminated(text):
                reason = "contaminated"
            if reason is not None:
                counts.add(source, reason, tokens)
                self.stat_update(reason)
                continue
            doc.metadata["exact"] = exact_key(conversation).hex()
            counts.add(source, "kept", tokens)
            self.stat_update("kept")
            yield doc
        counts.save(self.counts, "clean", rank)


def exact_content(doc: Document) -> bytes:
    """What exact dedup compares: the in-memory path's key (normalized text, hashed); bytes,
    which datatrove's xxhash takes (a str is an error there)."""
    return bytes.fromhex(doc.metadata["exact"])


def exact_priority(doc: Document) -> int:
    """datatrove keeps, of equal documents, the one of highest priority, then lowest index in
    its task. With 65535 - rank, that is the first in (task, index) order: the first in config
    order, as the in-memory path keeps (hence at most 65535 tasks)."""
    return doc.metadata["order"]


class Tally(PipelineStep):
    """Counts the documents (and tokens) that reach it, per source."""

    name = "🧮 lmforge tally"
    type = "📊 - STATS"

    def __init__(self, counts: str, step: str):
        super().__init__()
        self.counts, self.step = counts, step

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        counts = Counts()
        for doc in data:
            counts.add(doc.metadata["source"], "kept", doc.metadata.get("tokens"))
            yield doc
        counts.save(self.counts, self.step, rank)


class RankFile(PipelineStep):
    """Reads back what the same rank wrote in an earlier stage (`<rank>.jsonl.gz`), in the
    same order, as datatrove's dedup filters require; a rank that kept nothing wrote none."""

    name = "📖 lmforge stage input"
    type = "📖 - READER"

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        name = f"{rank:05d}.jsonl.gz"
        reader = JsonlReader(self.folder, compression="gzip", add_file_path=False)
        if reader.data_folder.exists(name):
            yield from reader.read_file(name)


# --------------------------------------------------------------------------- writing


def shard_name(source: str) -> str:
    """A source's folder name under shards/ and tokens/."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in source)


def final_record(self, document: Document) -> dict:
    """A cleaned shard's line: what the streaming trainer reads (`text`), and where from."""
    record = {"text": document.text, "id": document.id, "source": document.metadata["source"]}
    if "lang" in document.metadata:
        record["lang"] = document.metadata["lang"]
    return record


class SourceTokenizer(PipelineStep):
    """Tokenized shards, one per source and task: `tokens/<source>/<rank>.ds` holds the
    token ids (uint16, or uint32 for vocabularies over 65536) of every document followed by
    EOS, `.ds.index` the document ends (uint64), in datatrove's format (data/shards.py reads
    them). Documents keep their order: shuffling is the trainer's."""

    name = "🔢 lmforge tokenized shards"
    type = "🔢 - TOKENIZER"

    def __init__(self, folder: str, tokenizer: str, eos_token: str | None):
        super().__init__()
        self.folder, self.tokenizer_path, self.eos_token = folder, tokenizer, eos_token

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        tokenizer = _load_tokenizer(self.tokenizer_path)
        token_size = 4 if tokenizer.get_vocab_size() > 65536 else 2
        eos = [tokenizer.token_to_id(self.eos_token)] if self.eos_token else []
        files: dict[str, TokenizedFile] = {}
        for batch in batched(data, TOKEN_BATCH):
            for doc, encoded in zip(batch, tokenizer.encode_batch([d.text for d in batch], add_special_tokens=False)):
                source = shard_name(doc.metadata["source"])
                if source not in files:
                    files[source] = TokenizedFile(
                        self.folder,
                        f"{source}/{rank:05d}.ds",
                        save_final_metadata=True,
                        tokenizer_name_or_path=self.tokenizer_path,
                        token_size=token_size,
                    )
                files[source].write(encoded.ids + eos, None)
                self.stat_update("tokens", value=len(encoded.ids) + len(eos))
                yield doc
        for file in files.values():
            file.close()


# --------------------------------------------------------------------------- executors

_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}"


def _shown(record) -> bool:
    """stderr, unless -v: datatrove's warnings and errors, but not the traceback of an
    LmforgeError a step raised (lmforge prints that as its one line)."""
    exception = record["exception"]
    return record["level"].no >= 30 and not (exception and isinstance(exception.value, LmforgeError))


def _quiet_task_logger(logging_dir, rank: int, local_rank: int = 0, node_rank: int = -1):
    """datatrove's add_task_logger with stderr at WARNING: every task's full log (DEBUG up)
    still goes to <logging dir>/logs/task_<rank>.log."""
    logger.remove()
    logfile = logging_dir.open(f"logs/task_{rank:05d}.log", "w")
    logger.add(sys.stderr, level="WARNING", format=_FORMAT, filter=_shown)
    logger.add(logfile, level="DEBUG", format=_FORMAT)
    logger.info(f"Launching pipeline for {rank=}")
    return logfile


def _quiet_default_logger() -> None:
    logger.remove()
    logger.add(sys.stderr, level="WARNING", format=_FORMAT, filter=_shown)


@contextmanager
def quiet_datatrove():
    """datatrove logs every task's start, pipeline, progress and statistics at INFO to
    stderr, and sets that up again in each task (datatrove.utils.logging), so the quieting
    goes in where it does: its task logger and its default logger, for the duration of a
    run (in the main process and in each worker process, see QuietExecutor); and its dedup
    stages draw tqdm bars."""
    import datatrove.executor.base as base
    import datatrove.executor.ray as ray
    import datatrove.utils.logging as logging_module

    import datatrove.pipeline.dedup.exact_dedup as exact
    import datatrove.pipeline.dedup.minhash as minhash

    saved = base.add_task_logger, ray.add_task_logger, logging_module.setup_default_logger, exact.tqdm, minhash.tqdm
    base.add_task_logger = ray.add_task_logger = _quiet_task_logger
    logging_module.setup_default_logger = _quiet_default_logger
    exact.tqdm = minhash.tqdm = partial(saved[3], disable=True)  # both modules' `from tqdm import tqdm`
    _quiet_default_logger()
    try:
        yield
    finally:
        base.add_task_logger, ray.add_task_logger, logging_module.setup_default_logger, exact.tqdm, minhash.tqdm = saved
        logging_module.setup_default_logger()


class QuietExecutor:
    """A datatrove executor that is quiet on stderr unless `verbose` (lmforge -v). The run
    (main process) and each task (in whichever process or Ray worker runs it) quiet
    datatrove for themselves: a worker imports datatrove afresh."""

    verbose = False

    def run(self):
        if self.verbose:
            return super().run()
        with quiet_datatrove():
            return super().run()

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        if self.verbose:
            return super()._run_for_rank(rank, local_rank, node_rank)
        with quiet_datatrove():
            return super()._run_for_rank(rank, local_rank, node_rank)


class LocalExecutor(QuietExecutor, LocalPipelineExecutor):
    def _launch_run_for_rank(self, rank: int, *args, **kwargs):
        # a worker process's wrapper around _run_for_rank, which logs "n/m tasks completed"
        if self.verbose:
            return super()._launch_run_for_rank(rank, *args, **kwargs)
        with quiet_datatrove():
            return super()._launch_run_for_rank(rank, *args, **kwargs)


class RayExecutor(QuietExecutor, RayPipelineExecutor):
    pass
