"""Read raw records from JSONL / JSON files (optionally gzip-compressed), each tagged with
the file:line (or file[index]) it came from."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from lmforge.errors import LmforgeError


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def _stem_suffix(path: Path) -> str:
    return Path(path.stem).suffix if path.suffix == ".gz" else path.suffix


def read_records(path: str | Path) -> Iterator[tuple[dict[str, Any], str]]:
    """Yield (record, location) pairs. JSONL gives file:line, a JSON array file:line of
    the array element's start is not known to `json`, so it gives file[index]."""
    path = Path(path)
    if not path.is_file():
        raise LmforgeError(f"{path}: data file not found")
    suffix = _stem_suffix(path)
    if suffix == ".jsonl":
        yield from _read_jsonl(path)
    elif suffix == ".json":
        yield from _read_json_array(path)
    else:
        raise LmforgeError(f"{path}: unsupported data file type '{suffix}' (expected .jsonl or .json, optionally .gz)")


def _read_jsonl(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    with _open_text(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LmforgeError(f"{where}: malformed JSON: {exc.msg} (column {exc.colno})") from exc
            if not isinstance(record, dict):
                raise LmforgeError(f"{where}: expected a JSON object, got {type(record).__name__}")
            yield record, where


def _read_json_array(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    with _open_text(path) as handle:
        try:
            document = json.load(handle)
        except json.JSONDecodeError as exc:
            raise LmforgeError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg} (column {exc.colno})") from exc
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list):
        raise LmforgeError(f"{path}: expected a JSON array of objects, got {type(document).__name__}")
    for index, record in enumerate(document):
        where = f"{path}[{index}]"
        if not isinstance(record, dict):
            raise LmforgeError(f"{where}: expected a JSON object, got {type(record).__name__}")
        yield record, where


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
