"""The experiment scripts behind docs/results.md stay runnable: their inputs are what they
say (disjoint splits of the stated sizes) and the configs they write validate with the
current schema. (The experiments themselves take tens of minutes; they are not run here.)"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from lmforge.config import load_config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regularization_inputs_are_disjoint_splits_and_its_config_validates(tmp_path, capsys):
    regularization = _load("regularization")
    files = regularization.write_inputs(tmp_path / "inputs")
    splits = {
        name: [json.loads(line) for line in files[name].read_text().splitlines()] for name in ("train", "val", "test")
    }
    assert [len(splits[n]) for n in ("train", "val", "test")] == [
        regularization.N_TRAIN,
        regularization.N_VALIDATION,
        regularization.N_TEST,
    ]
    questions = {name: {row["question"] for row in rows} for name, rows in splits.items()}
    assert not questions["train"] & questions["val"]
    assert not questions["train"] & questions["test"]
    assert not questions["val"] & questions["test"]
    assert (files["tokenizer"] / "tokenizer.json").is_file()

    path = regularization.write_config(tmp_path / "c.yaml", files, tmp_path / "out", p_in=0.2, weight=0.1)
    config = load_config(str(path), [], [])
    assert config.train.objective.name == "remask_cot" and config.train.objective.p_in == 0.2
    assert config.train.save_every == config.train.eval_every
    # every checkpoint of the run is kept for the selection
    steps = regularization.EPOCHS * regularization.STEPS_PER_EPOCH
    assert config.train.save_total_limit >= steps // config.train.save_every
    assert "$ lmforge tokenizer train" in capsys.readouterr().out


def test_regularization_inputs_are_written_once_and_then_only_read(tmp_path, capsys):
    regularization = _load("regularization")
    first = regularization.write_inputs(tmp_path / "inputs")
    written = {name: path.stat().st_mtime_ns for name, path in first.items() if path.is_file()}
    capsys.readouterr()
    assert regularization.write_inputs(tmp_path / "inputs") == first
    assert {name: first[name].stat().st_mtime_ns for name in written} == written
    assert "$ lmforge tokenizer train" not in capsys.readouterr().out  # nothing trained again
