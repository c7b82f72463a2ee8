"""Checkpoints that are whole or absent: a checkpoint is written into a staging directory,
a manifest of its files (size and SHA-256 each) is written last, everything is flushed to
disk, and only then is the directory renamed to `checkpoint-N` — one atomic rename. Resume
takes the newest checkpoint whose files still match their manifest; staging directories
left by a killed save are deleted, never chosen.

    RUN_DIR/
      .partial-checkpoint-N/checkpoint-N/   a save in progress (or killed midway)
      checkpoint-N/                         complete, with lmforge_manifest.json

The Trainer's own checkpoint layout (model, optimizer, scheduler, RNG state, trainer
state, DeepSpeed shards) is unchanged inside; transformers writes files in place and a
kill leaves a directory that looks like a checkpoint, which is why this exists.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from lmforge.errors import LmforgeError

MANIFEST = "lmforge_manifest.json"
LMFORGE_STATE = "lmforge_state.json"
"""lmforge's own training state beside the Trainer's (LmforgeTrainer.checkpoint_states)."""
PARTIAL_PREFIX = ".partial-"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_CHUNK = 1 << 22


def checkpoint_step(path: Path) -> int | None:
    match = _CHECKPOINT.match(path.name)
    return int(match.group(1)) if match else None


def staging_root(run_dir: Path, step: int) -> Path:
    """Where the save of step `step` writes before it is complete."""
    return run_dir / f"{PARTIAL_PREFIX}checkpoint-{step}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError:  # some filesystems refuse fsync on directories; the rename is still atomic
        pass
    finally:
        os.close(descriptor)


def write_manifest(checkpoint: Path, step: int) -> dict:
    """Hash every file of `checkpoint`, flush them, and write the manifest last."""
    files = {}
    for path in _files(checkpoint):
        _fsync(path)
        files[path.relative_to(checkpoint).as_posix()] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    manifest = {"format": 1, "step": step, "files": files}
    temporary = checkpoint / (MANIFEST + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, checkpoint / MANIFEST)
    return manifest


def commit(staged: Path, final: Path, step: int) -> None:
    """Manifest, flush, rename `staged` to `final`, and remove the staging directory around it."""
    write_manifest(staged, step)
    for directory in [*(p for p in staged.rglob("*") if p.is_dir()), staged]:
        _fsync(directory)
    if final.exists():  # the same step saved again (a resumed run): the new state replaces it
        shutil.rmtree(final)
    os.replace(staged, final)
    _fsync(final.parent)
    shutil.rmtree(staged.parent, ignore_errors=True)


def problem(checkpoint: Path, hashes: bool = True) -> str | None:
    """Why `checkpoint` cannot be resumed from (None when it is complete): no manifest, a
    file missing, a size or (with `hashes`) a SHA-256 that differs from the manifest."""
    manifest_path = checkpoint / MANIFEST
    if not manifest_path.is_file():
        return f"no {MANIFEST} (the save did not finish)"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (ValueError, KeyError, TypeError):
        return f"{MANIFEST} is unreadable"
    for name, expected in files.items():
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {expected['bytes']}"
        if hashes and _sha256(path) != expected["sha256"]:
            return f"{name} does not match its SHA-256 in the manifest"
    return None


def remove_partial(run_dir: Path) -> list[Path]:
    """Delete staging directories a killed save left behind; returns what was removed."""
    partial = [p for p in run_dir.glob(f"{PARTIAL_PREFIX}checkpoint-*") if p.is_dir()]
    for path in partial:
        shutil.rmtree(path, ignore_errors=True)
    return partial


def candidates(run_dir: Path) -> list[Path]:
    """checkpoint-N directories, newest first."""
    found = [p for p in run_dir.glob("checkpoint-*") if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step, reverse=True)


def latest_complete(run_dir: Path, verify_hashes: bool = True, report=print) -> Path | None:
    """The newest checkpoint that matches its manifest. With `verify_hashes` (resume) every
    file is hashed, staging leftovers are deleted and a checkpoint that fails is reported
    and passed over (kept on disk: it is the user's to inspect or delete); without it
    (is there anything to resume?) only names and sizes are checked, silently."""
    if verify_hashes:
        for path in remove_partial(run_dir):
            report(f"[lmforge] removed {path.name}/: a checkpoint save that did not finish")
    for checkpoint in candidates(run_dir):
        reason = problem(checkpoint, hashes=verify_hashes)
        if reason is None:
            return checkpoint
        if verify_hashes:
            report(f"[lmforge] passing over {checkpoint}: {reason}")
    return None


def is_disk_full(error: BaseException) -> bool:
    """ENOSPC from Python, or as safetensors' Rust writer words it."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return "No space left on device" in text or "StorageFull" in text


def save_failed(error: BaseException, run_dir: Path, step: int) -> LmforgeError:
    """The one-line error for a save that could not be written."""
    previous = next((p for p in candidates(run_dir) if checkpoint_step(p) != step), None)
    kept = f"{previous.name} is intact" if previous is not None else "no earlier checkpoint exists"
    cause = "the disk is full" if is_disk_full(error) else f"{type(error).__name__}: {error}".splitlines()[0]
    return LmforgeError(
        f"{run_dir}: could not save checkpoint-{step} ({cause}); the partial save was removed and {kept}; "
        "free space and continue with --resume"
    )
