"""Faults: a full disk during a save (in process), and the reduced `bench/faults.py` —
real SIGKILLs during steps, checkpoint writes and bootstrap generation, then --resume —
which must report every trial recovered, identical and without lost data."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmforge import checkpoints
from lmforge.config import load_config
from lmforge.errors import LmforgeError
from lmforge.rundir import read_run
from lmforge.train.pipeline import run_training
from tests.e2e.conftest import write_config

REPO = Path(__file__).resolve().parents[2]


def test_a_full_disk_fails_the_save_cleanly_and_resume_finishes(tmp_path, user_files, monkeypatch):
    overrides = {"max_steps": 6, "save_every": 2}
    straight = load_config(write_config(tmp_path / "a.yaml", user_files, tmp_path / "straight", **overrides))
    run_training(straight)

    real_save, calls = torch.save, []

    def fills_the_disk(obj, f, *args, **kwargs):
        calls.append(str(f))
        if "checkpoint-4" in str(f) and str(f).endswith("optimizer.pt"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    failing = load_config(write_config(tmp_path / "b.yaml", user_files, tmp_path / "full", **overrides))
    monkeypatch.setattr(torch, "save", fills_the_disk)
    with pytest.raises(LmforgeError) as caught:
        run_training(failing)
    monkeypatch.setattr(torch, "save", real_save)
    run_dir = tmp_path / "full"
    assert str(caught.value) == (
        f"{run_dir}: could not save checkpoint-4 (the disk is full); the partial save was removed and "
        "checkpoint-2 is intact; free space and continue with --resume"
    )
    assert "\n" not in str(caught.value)
    assert read_run(run_dir)["status"] == "failed"
    assert [p.name for p in checkpoints.candidates(run_dir)] == ["checkpoint-2"]
    assert checkpoints.problem(run_dir / "checkpoint-2") is None
    assert not list(run_dir.glob(".partial-*")) and not (run_dir / "model").exists()

    run_training(failing, resume=True)
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(run_dir / "model" / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "loss" in row] == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]  # the steps after checkpoint-2 logged once, not twice


def test_checkpoints_carry_the_guard_state_and_the_log_length(tmp_path, user_files):
    config = load_config(write_config(tmp_path / "c.yaml", user_files, tmp_path / "run", max_steps=2, save_every=2))
    run_training(config)
    state = json.loads((tmp_path / "run" / "checkpoint-2" / checkpoints.LMFORGE_STATE).read_text())
    # the guard's counts, and how many metrics.jsonl rows the checkpoint covers (steps 1 and 2)
    assert state == {"nonfinite_guard": {"skipped": 0, "consecutive": 0}, "metrics_log": {"rows": 2}}
    assert checkpoints.problem(tmp_path / "run" / "checkpoint-2") is None


def test_reduced_fault_bench_loses_nothing(tmp_path):
    """`python bench/faults.py --reduced`: SIGKILL at a random moment and inside checkpoint
    writes (ce), ENOSPC in a save, SIGKILL during bootstrap generation."""
    table = tmp_path / "faults.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "faults.py"), "--reduced", "--json", str(table)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads(table.read_text())
    assert {r["fault"] for r in rows} == {
        "ce: SIGKILL at a random moment",
        "ce: SIGKILL during a checkpoint write",
        "ce: disk full during a save (ENOSPC)",
        "bootstrap: SIGKILL during generation",
    }
    for row in rows:
        assert row["trials"] >= 1 and row["recovered"] == row["identical"] == row["trials"], row
        assert row["data_lost"] == 0, row
