"""Tokenized data prepared once per multi-process run: the main process builds it and
writes it under the run directory, keyed by a hash of everything it was built from; the
other processes read it back (Arrow files, memory-mapped, so N processes share one copy
in the page cache) instead of repeating reading, deduplication and tokenization."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from datasets import Dataset

from lmforge.data.pipeline import TokenizedData

CACHE_DIR = "data-cache"
_META_FILE = "meta.json"


def data_fingerprint(
    data_config: dict[str, Any], seed: int, prompt_format: str, tokenizer, file_hashes: dict[str, str]
) -> str:
    """A content hash of the inputs of tokenization: the data config, seed, prompt format,
    the tokenizer's full definition and the data files' hashes."""
    digest = hashlib.sha256()
    payload = {"data": data_config, "seed": seed, "format": prompt_format, "files": file_hashes}
    digest.update(json.dumps(payload, sort_keys=True, default=str).encode())
    digest.update(tokenizer.backend_tokenizer.to_str().encode())
    digest.update(json.dumps(tokenizer.all_special_tokens).encode())
    return digest.hexdigest()[:16]


def save_tokenized(data: TokenizedData, run_dir: Path, key: str) -> Path:
    """Write train/val and the scalar facts other processes need; a finished entry is
    moved into place whole, so a reader never sees half of one. Older entries go."""
    root = run_dir / CACHE_DIR
    target = root / key
    staging = root / f"{key}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    data.train.save_to_disk(str(staging / "train"))
    if data.val is not None:
        data.val.save_to_disk(str(staging / "val"))
    meta = {"cot_fraction": data.cot_fraction, "has_val": data.val is not None}
    (staging / _META_FILE).write_text(json.dumps(meta) + "\n", encoding="utf-8")
    for old in root.iterdir():
        if old != staging:
            shutil.rmtree(old, ignore_errors=True)
    os.replace(staging, target)
    return target


def load_tokenized(directory: Path) -> TokenizedData:
    """What training needs of a TokenizedData (reports and held-out conversations stay
    with the main process, which writes the run's records)."""
    meta = json.loads((directory / _META_FILE).read_text(encoding="utf-8"))
    return TokenizedData(
        train=Dataset.load_from_disk(str(directory / "train")),
        val=Dataset.load_from_disk(str(directory / "val")) if meta["has_val"] else None,
        test_conversations=[],
        val_conversations=[],
        reports=[],
        cot_fraction=meta["cot_fraction"],
    )


def clear_cache(run_dir: Path) -> None:
    shutil.rmtree(run_dir / CACHE_DIR, ignore_errors=True)
