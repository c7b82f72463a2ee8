"""The run directory: what it holds, and the rules that keep a half-written run from ever
looking finished.

    RUN_DIR/
      run.json          status (running | failed | finished), versions, git hash, data hashes
      config.yaml       the resolved, validated config
      metrics.jsonl     every train/eval log event
      loss_curve.png
      checkpoint-N/     Trainer checkpoints (the last K), each whole: lmforge.checkpoints
      model/            the final model: safetensors + tokenizer (+ chat template)

`run.json` is written atomically; a run is finished only when its status says so, and that
happens after `model/` was moved into place.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from lmforge import checkpoints
from lmforge.errors import LmforgeError

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
MODEL_DIR = "model"
_LIBRARIES = (
    "lmforge",
    "torch",
    "transformers",
    "datasets",
    "accelerate",
    "pytorch_optimizer",
    "pydantic",
    "tokenizers",
)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename: a kill leaves the old file or the new one."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


def read_run(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / RUN_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's saved config.yaml as a mapping ({} when the run has none)."""
    import yaml

    path = run_dir / CONFIG_FILE
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}


def read_finished_run(run_dir: Path, needed_by: str) -> dict[str, Any]:
    """run.json of a finished run; otherwise a one-line error saying what needs one."""
    run = read_run(run_dir)
    if run is None:
        raise LmforgeError(f"{run_dir}: not an lmforge run directory (no {RUN_FILE})")
    if run.get("status") != "finished":
        raise LmforgeError(f"{run_dir}: the run is {run.get('status')}; {needed_by} needs a finished run")
    return run


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (by its manifest's names and sizes; resume hashes too)."""
    return checkpoints.latest_complete(run_dir, verify_hashes=False)


def check_resume_overwrite(resume: bool, overwrite: bool) -> None:
    """`--resume` continues a directory, `--overwrite` replaces it: never both."""
    if resume and overwrite:
        raise LmforgeError(
            "--resume and --overwrite exclude each other: --resume continues the existing directory, "
            "--overwrite deletes it and starts again"
        )


def occupied(directory: Path, holds: str, no_resume: str | None = None) -> LmforgeError:
    """The one-line error for an existing directory when neither flag was given;
    `no_resume` says why --resume cannot continue it, when it cannot."""
    if no_resume is None:
        return LmforgeError(f"{directory}: holds {holds}; pass --resume to continue it or --overwrite to replace it")
    return LmforgeError(f"{directory}: holds {holds}; pass --overwrite to replace it ({no_resume})")


def foreign(directory: Path, what: str, setting: str) -> LmforgeError:
    """A non-empty directory lmforge did not make: neither flag touches it."""
    return LmforgeError(
        f"{directory}: output directory exists, is not empty and is not an lmforge {what} (--overwrite "
        f"deletes only lmforge's own, --resume continues only them); choose another {setting}"
    )


def is_empty_or_missing(directory: Path) -> bool:
    return not directory.exists() or (directory.is_dir() and not any(directory.iterdir()))


def prepare_run_dir(run_dir: Path, overwrite: bool, resume: bool) -> Path | None:
    """Make `run_dir` ready; returns the checkpoint to resume from (or None).

    Refuses to touch an existing run unless `overwrite` (replace) or `resume` (continue),
    and never deletes a directory that is not an lmforge run.
    """
    check_resume_overwrite(resume, overwrite)
    existing = read_run(run_dir)
    if resume:
        if existing is None:
            raise LmforgeError(f"{run_dir}: --resume given but this is not an lmforge run directory")
        if existing.get("status") == "finished":
            raise LmforgeError(f"{run_dir}: the run already finished; nothing to resume (--overwrite replaces it)")
        checkpoint = checkpoints.latest_complete(run_dir)
        if checkpoint is None:
            raise LmforgeError(
                f"{run_dir}: --resume given but the run saved no complete checkpoint; pass --overwrite to start it again"
            )
        return checkpoint
    if not is_empty_or_missing(run_dir):
        if existing is None:
            raise foreign(run_dir, "run", "run.output_dir")
        if not overwrite:
            status = existing.get("status", "unfinished")
            no_resume = (
                "--resume continues only an unfinished run"
                if status == "finished"
                else "--resume needs a checkpoint and it saved none"
                if latest_checkpoint(run_dir) is None
                else None
            )
            article = "an" if status[:1] in "aeiou" else "a"
            raise occupied(run_dir, f"{article} {status} run", no_resume)
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return None


def _git_hash() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            continue
    return versions


def start_run(run_dir: Path, data_hashes: dict[str, str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    record = {
        "status": "running",
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "git_hash": _git_hash(),
        "data_sha256": data_hashes,
        **(extra or {}),
    }
    write_json_atomic(run_dir / RUN_FILE, record)
    return record


def ended(record: dict[str, Any], status: str, **fields: Any) -> dict[str, Any]:
    """`record` with its final status and end time (not yet written: see end_run)."""
    record.update(status=status, ended=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **fields)
    return record


def end_run(run_dir: Path, record: dict[str, Any], status: str, **fields: Any) -> None:
    write_json_atomic(run_dir / RUN_FILE, ended(record, status, **fields))
