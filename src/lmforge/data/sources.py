"""Read raw records, each tagged with where it came from (file:line, file[index] or
name[split][index]) for error messages.

Local files: JSONL, JSON (an array, or one object), CSV and parquet; JSONL/JSON/CSV may be
gzip (`.gz`) or zstandard (`.zst`) compressed and are read as a stream. A directory or a
name that is not a local file goes to Hugging Face `datasets` (a `save_to_disk` folder, a
folder of data files, or a hub name such as `openai/gsm8k` when online).

Bytes are decoded as UTF-8 line by line so that invalid UTF-8 is reported with its byte
offset (or replaced by U+FFFD when the dataset says `encoding_errors: replace`); likewise a
JSON `\\ud800` escape of a lone surrogate, which is no character (tokenizers reject it).
Whatever makes one JSONL line unreadable — cut-off or malformed JSON, invalid UTF-8, nesting
too deep for the decoder — is that line's bad record, which `on_bad` may skip.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from lmforge.errors import LmforgeError

Located = tuple[dict[str, Any], str]
BadRecord = Callable[[str, str], None]
"""Called with (location, message) for a record that cannot be read, when the dataset
skips bad records; without one, a bad record is an error."""

COMPRESSIONS = (".gz", ".zst")
FILE_TYPES = (".jsonl", ".json", ".csv", ".parquet")
_HUB_NAME = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # cheap test before the exact one
_SURROGATE = re.compile("[\ud800-\udfff]")


def suffixes(path: Path) -> tuple[str, str]:
    """(file type, compression): 'd.jsonl.zst' -> ('.jsonl', '.zst')."""
    if path.suffix in COMPRESSIONS:
        return Path(path.stem).suffix, path.suffix
    return path.suffix, ""


def open_binary(path: Path, compression: str) -> IO[bytes]:
    if compression == ".gz":
        return gzip.open(path, "rb")
    if compression == ".zst":
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(path.open("rb"), closefd=True))
    return path.open("rb")


def read_records(
    path: str | Path,
    on_bad: BadRecord | None = None,
    encoding_errors: str = "strict",
    subset: str | None = None,
    split: str = "train",
) -> Iterator[Located]:
    """Yield (record, location) pairs from a file, folder or Hugging Face dataset name."""
    name = str(path)
    path = Path(path)
    if path.is_dir() or (not path.exists() and _HUB_NAME.match(name) and path.suffix not in FILE_TYPES + COMPRESSIONS):
        yield from _read_hf(name, subset, split)
        return
    if not path.is_file():
        raise LmforgeError(f"{path}: data file not found")
    kind, compression = suffixes(path)
    if kind not in FILE_TYPES or (kind == ".parquet" and compression):
        raise LmforgeError(
            f"{path}: unsupported data file type '{kind}' (expected .jsonl, .json or .csv, "
            "optionally .gz or .zst, or .parquet, or a Hugging Face dataset folder or name)"
        )
    if kind == ".parquet":
        yield from _read_parquet(path)
        return
    with open_binary(path, compression) as handle:
        if kind == ".jsonl":  # one record a line: a line that cannot be decoded is a bad record
            lines = _decoded_lines(handle, path, encoding_errors, bool(compression), on_bad)
            yield from _read_jsonl(lines, path, on_bad, encoding_errors)
            return
        lines = _decoded_lines(handle, path, encoding_errors, bool(compression))
        if kind == ".json":
            yield from _read_json_array("".join(text for _, text in lines), path, on_bad, encoding_errors)
        else:
            yield from _read_csv(lines, path, on_bad)


def _decoded_lines(
    handle: IO[bytes], path: Path, errors: str, compressed: bool, on_bad: BadRecord | None = None
) -> Iterator[tuple[int, str]]:
    """(line number, text) per line; invalid UTF-8 names its byte offset in the file (in
    the decompressed stream for compressed files). With `on_bad`, such a line is skipped."""
    offset = 0
    for number, raw in enumerate(handle, start=1):
        start, offset = offset, offset + len(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if errors != "replace":
                where = " of the decompressed data" if compressed else ""
                problem = (
                    f"invalid UTF-8 at byte offset {start + exc.start}{where}; "
                    "set the dataset's encoding_errors: replace to substitute U+FFFD"
                )
                if on_bad is None:
                    raise LmforgeError(f"{path}:{number}: {problem}") from None
                on_bad(f"{path}:{number}", problem)
                continue
            text = raw.decode("utf-8", errors="replace")
        if number == 1:
            text = text.removeprefix("\ufeff")  # a byte-order mark is not content
        yield number, text


def _parse(text: str, errors: str) -> tuple[Any, str | None]:
    """(value, None) or (None, what is wrong) for JSON text; lone surrogates are an error
    or, with errors 'replace', U+FFFD. A syntax error (JSONDecodeError) is the caller's to
    describe: by line and column."""
    try:
        value = json.loads(text)
        if _SURROGATE_ESCAPE.search(text):
            exact = json.dumps(value, ensure_ascii=False)
            if _SURROGATE.search(exact):
                if errors != "replace":
                    return None, (
                        "invalid Unicode: a \\u escape encodes a lone surrogate, which is no character; "
                        "set the dataset's encoding_errors: replace to substitute U+FFFD"
                    )
                value = json.loads(_SURROGATE.sub("\ufffd", exact))
    except json.JSONDecodeError:
        raise
    except RecursionError:
        return None, "malformed JSON: nested too deeply to read"
    except ValueError as exc:  # the decoder's limit on the digits of an integer
        return None, f"malformed JSON: {str(exc).split(':')[0].lower()}"
    return value, None


def parse_json_line(line: str, errors: str = "strict") -> tuple[Any, str | None]:
    """(value, None) or (None, what is wrong) for one JSONL line, syntax errors included."""
    try:
        return _parse(line, errors)
    except json.JSONDecodeError as exc:
        return None, json_problem(exc, line)


def json_problem(exc: json.JSONDecodeError, line: str) -> str:
    """What is wrong with a JSONL line. A line cut off inside a string makes the decoder
    stop at the line's own newline ("Invalid control character"): say it is truncated."""
    end = len(line.rstrip("\r\n")) + 1  # the column just after the line's last character
    ends_inside_string = exc.msg.startswith("Invalid control character") and not line[exc.pos :].strip("\r\n")
    if ends_inside_string or exc.msg.startswith("Unterminated string"):
        return f"truncated record: the line ends inside a string (column {end})"
    if exc.pos >= len(line.rstrip()):
        return f"truncated record: the line ends before the JSON object is complete (column {end})"
    return f"malformed JSON: {exc.msg} (column {exc.colno})"


def _read_jsonl(
    lines: Iterator[tuple[int, str]], path: Path, on_bad: BadRecord | None, errors: str = "strict"
) -> Iterator[Located]:
    for number, line in lines:
        if not line.strip():
            continue
        where = f"{path}:{number}"
        record, problem = parse_json_line(line, errors)
        if problem is None:
            yield from _objects_only(record, where, on_bad)
            continue
        _bad(where, problem, on_bad)


def _read_json_array(
    text: str, path: Path, on_bad: BadRecord | None = None, errors: str = "strict"
) -> Iterator[Located]:
    try:
        document, problem = _parse(text, errors)
    except json.JSONDecodeError as exc:
        raise LmforgeError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg} (column {exc.colno})") from exc
    if problem:
        raise LmforgeError(f"{path}: {problem}")
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list):
        raise LmforgeError(f"{path}: expected a JSON array of objects, got {type(document).__name__}")
    for index, record in enumerate(document):
        yield from _objects_only(record, f"{path}[{index}]", on_bad)


def _bad(where: str, problem: str, on_bad: BadRecord | None) -> None:
    """A bad record: an error, or reported to `on_bad` (on_bad_record: skip)."""
    if on_bad is None:
        raise LmforgeError(f"{where}: {problem}")
    on_bad(where, problem)


def _objects_only(record: Any, where: str, on_bad: BadRecord | None) -> Iterator[Located]:
    """The record if it is a JSON object; anything else is a bad record."""
    if isinstance(record, dict):
        yield record, where
    else:
        _bad(where, f"expected a JSON object, got {type(record).__name__}", on_bad)


def _read_csv(lines: Iterator[tuple[int, str]], path: Path, on_bad: BadRecord | None = None) -> Iterator[Located]:
    # csv needs the raw lines (quoted fields may span lines); its line_num says where a row ended
    csv.field_size_limit(max(csv.field_size_limit(), sys.maxsize >> 1))  # a long text is no error
    reader = csv.reader(text for _, text in lines)
    try:
        header = next(reader, None)
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if len(row) == len(header):
                yield dict(zip(header, row)), where
                continue
            if not row:  # a blank line
                continue
            _bad(where, f"row has {len(row)} fields, the header has {len(header)}", on_bad)
    except csv.Error as exc:
        raise LmforgeError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from exc


def _read_parquet(path: Path) -> Iterator[Located]:
    import pyarrow.parquet as pq

    index = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            yield record, f"{path}[{index}]"
            index += 1


def _read_hf(name: str, subset: str | None, split: str) -> Iterator[Located]:
    import datasets

    folder = Path(name)
    try:
        if folder.is_dir() and any((folder / f).is_file() for f in ("state.json", "dataset_dict.json")):
            loaded = datasets.load_from_disk(str(folder))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise LmforgeError(f"{name}: no split '{split}' (splits: {', '.join(loaded)})")
                loaded = loaded[split]
        else:
            loaded = datasets.load_dataset(name, subset, split=split)
    except LmforgeError:
        raise
    except Exception as exc:  # datasets raises many kinds (connection, missing config, split...)
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise LmforgeError(
            f"{name}: cannot load as a Hugging Face dataset ({type(exc).__name__}: {first_line})"
        ) from exc
    for index, record in enumerate(loaded):
        yield record, f"{name}[{split}][{index}]"


def file_sha256(path: str | Path) -> str:
    """Content hash of a data file or dataset folder (files in sorted order); a hub name
    has no local content to hash."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
    if not files:
        return "not a local file"
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
