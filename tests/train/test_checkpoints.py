"""Checkpoints are whole or absent: staging + manifest + rename, verification on resume,
and a resumed run's metrics.jsonl without the steps it trains again."""

from __future__ import annotations

import errno
import json

import pytest

from lmforge import checkpoints
from lmforge.train.callbacks import truncate_log


def _stage(run_dir, step: int, files: dict[str, bytes]):
    staged = checkpoints.staging_root(run_dir, step) / f"checkpoint-{step}"
    for name, content in files.items():
        (staged / name).parent.mkdir(parents=True, exist_ok=True)
        (staged / name).write_bytes(content)
    return staged


def _commit(run_dir, step: int, files: dict[str, bytes]):
    staged = _stage(run_dir, step, files)
    checkpoints.commit(staged, run_dir / staged.name, step)
    return run_dir / staged.name


def test_commit_renames_a_verified_checkpoint_into_place(tmp_path):
    final = _commit(tmp_path, 3, {"model.safetensors": b"weights", "global_step3/shard.pt": b"zero"})
    manifest = json.loads((final / checkpoints.MANIFEST).read_text())
    assert manifest["step"] == 3
    # sha256 of b"weights" (`printf weights | sha256sum`)
    assert manifest["files"]["model.safetensors"] == {
        "bytes": 7,
        "sha256": "9a129038d9a00aed0cf6a7ea059ca50a813449061ab87848cf1a13eafdf33b2c",
    }
    assert set(manifest["files"]) == {"model.safetensors", "global_step3/shard.pt"}
    assert checkpoints.problem(final) is None
    assert not list(tmp_path.glob(".partial-*"))  # the staging directory is gone


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda c: (c / "model.safetensors").write_bytes(b"weighTs"), "does not match its SHA-256"),
        (lambda c: (c / "model.safetensors").write_bytes(b"weights, longer"), "has 15 bytes, the manifest says 7"),
        (lambda c: (c / "optimizer.pt").unlink(), "optimizer.pt is missing"),
        (lambda c: (c / checkpoints.MANIFEST).unlink(), "no lmforge_manifest.json"),
        (lambda c: (c / checkpoints.MANIFEST).write_text("{"), "unreadable"),
    ],
    ids=["flipped byte", "size", "missing file", "no manifest", "torn manifest"],
)
def test_a_damaged_checkpoint_is_named_and_passed_over(tmp_path, damage, reason):
    older = _commit(tmp_path, 2, {"model.safetensors": b"weights", "optimizer.pt": b"moments"})
    newer = _commit(tmp_path, 4, {"model.safetensors": b"weights", "optimizer.pt": b"moments"})
    damage(newer)
    assert reason in checkpoints.problem(newer)
    reported = []
    assert checkpoints.latest_complete(tmp_path, report=reported.append) == older
    assert reported == [f"[lmforge] passing over {newer}: {checkpoints.problem(newer)}"]
    assert newer.is_dir()  # kept for the user to look at


def test_a_killed_save_is_never_chosen_and_is_cleaned_up_on_resume(tmp_path):
    complete = _commit(tmp_path, 2, {"model.safetensors": b"weights"})
    _stage(tmp_path, 4, {"model.safetensors": b"half"})  # killed before its manifest
    # the quick check (is there anything to resume?) leaves the directory alone
    assert checkpoints.latest_complete(tmp_path, verify_hashes=False) == complete
    assert (tmp_path / ".partial-checkpoint-4").is_dir()
    reported = []
    assert checkpoints.latest_complete(tmp_path, report=reported.append) == complete
    assert not (tmp_path / ".partial-checkpoint-4").exists()
    assert reported == ["[lmforge] removed .partial-checkpoint-4/: a checkpoint save that did not finish"]


def test_no_complete_checkpoint_means_none(tmp_path):
    (tmp_path / "checkpoint-5").mkdir()  # what transformers alone leaves after a kill mid-save
    (tmp_path / "checkpoint-5" / "model.safetensors").write_bytes(b"half")
    assert checkpoints.latest_complete(tmp_path, report=lambda line: None) is None


def test_saving_the_same_step_again_replaces_it(tmp_path):
    _commit(tmp_path, 2, {"model.safetensors": b"old"})
    final = _commit(tmp_path, 2, {"model.safetensors": b"new!"})
    assert (final / "model.safetensors").read_bytes() == b"new!" and checkpoints.problem(final) is None


def test_disk_full_error_names_the_cause_and_the_checkpoint_kept(tmp_path):
    _commit(tmp_path, 2, {"model.safetensors": b"weights"})
    assert checkpoints.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert checkpoints.is_disk_full(
        RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")
    )
    assert not checkpoints.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    error = checkpoints.save_failed(OSError(errno.ENOSPC, "No space left on device"), tmp_path, 4)
    assert str(error) == (
        f"{tmp_path}: could not save checkpoint-4 (the disk is full); the partial save was removed and "
        "checkpoint-2 is intact; free space and continue with --resume"
    )
    first = checkpoints.save_failed(PermissionError(errno.EACCES, "Permission denied"), tmp_path / "new", 2)
    assert "PermissionError: [Errno 13] Permission denied" in str(first) and "no earlier checkpoint exists" in str(
        first
    )


def test_a_resumed_log_drops_the_steps_it_trains_again(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": float(s)} for s in range(1, 7)] + [{"step": 4, "eval_loss": 1.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 7, "lo')  # torn by the kill
    truncate_log(path, 4)
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert kept == [{"step": s, "loss": float(s)} for s in range(1, 5)] + [{"step": 4, "eval_loss": 1.0}]


def test_a_resumed_log_keeps_the_rows_its_checkpoint_counted(tmp_path):
    """With the row count saved in the checkpoint, rows logged at the checkpoint's own step
    after the save (a final evaluation) go too."""
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": float(s)} for s in range(1, 5)] + [{"step": 4, "eval_loss": 1.0}] * 2
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "ev')
    truncate_log(path, 4, rows=5)
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows[:5]
