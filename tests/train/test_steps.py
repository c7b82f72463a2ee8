"""Step counts that know the data (issue 14 item 9): `count_total_steps` (what `lmforge
schedule plot` plots over) equals the optimizer steps a run really takes under packing,
dataset weights with mix_size, and deduplication, where the record-count estimate is off;
with data.streaming it is train.max_steps split by the stages' budgets, each stage's
lr_scale on the plotted schedule; without a tokenizer on disk it falls back to the
estimate and says so."""

from __future__ import annotations

import json

import pytest
import yaml

from lmforge.cli import main
from lmforge.config import load_config
from lmforge.rundir import read_run
from lmforge.train.pipeline import run_training
from lmforge.train.steps import count_total_steps, estimate_total_steps, stage_spans, steps_for_rows
from tests.e2e.conftest import user_files, write_config  # noqa: F401
from tests.e2e.test_streaming_train import corpora, streaming_config  # noqa: F401


def sft_config(tmp_path, user_files, name, data, **train):  # noqa: F811
    path = write_config(tmp_path / f"{name}.yaml", user_files, tmp_path / name, max_steps=None, epochs=2, **train)
    config = yaml.safe_load(path.read_text())
    config["defaults"]["data"].update(data)
    path.write_text(yaml.safe_dump(config))
    return path


def doubled(user_files, tmp_path):  # noqa: F811
    """The training file twice over: deduplication keeps half."""
    lines = (user_files / "train.jsonl").read_text()
    path = tmp_path / "doubled.jsonl"
    path.write_text(lines + lines)
    return str(path)


def other_problems(tmp_path):
    from lmforge.demo.arithmetic import make_splits

    train, _ = make_splits(120, 1, seed=11)
    path = tmp_path / "other.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in train))
    return str(path)


@pytest.mark.parametrize("case", ["packing", "weights-mix_size", "dedup"])
def test_counted_steps_are_the_steps_the_run_takes(tmp_path, user_files, case):  # noqa: F811
    train_file = str(user_files / "train.jsonl")
    data = {
        "packing": {"packing": True, "max_length": 256},
        "weights-mix_size": {
            "datasets": [
                {"path": train_file, "name": "a", "weight": 3.0, "val_split": 0.1},
                {"path": other_problems(tmp_path), "name": "b", "weight": 1.0, "val_split": 0.1},
            ],
            "mix_size": 60,
        },
        "dedup": {"datasets": [{"path": doubled(user_files, tmp_path), "val_split": 0.1}], "packing": True},
    }[case]
    path = sft_config(tmp_path, user_files, case, data)
    config = load_config(path, ["defaults"])
    counted = count_total_steps(config, processes=1)
    assert counted.exact and counted.how.startswith("counted from the data")
    estimate = estimate_total_steps(config)

    run_training(config)
    taken = read_run(tmp_path / case)["global_step"]
    assert counted.steps == taken
    if case != "weights-mix_size":  # the records alone over-count: packing merges rows, dedup drops half
        assert estimate > taken

    png = tmp_path / f"{case}.png"
    assert main(["schedule", "plot", str(path), "defaults", "--output", str(png)]) == 0
    assert png.stat().st_size > 1000


def test_steps_for_rows_follows_the_trainer():
    # 10 rows, micro 4: 3 micro-batches; accumulation 2: 2 optimizer steps per epoch
    assert steps_for_rows(10, 4, 2, 1, 1) == 2
    assert steps_for_rows(10, 4, 2, 1, 3) == 6
    assert steps_for_rows(10, 4, 1, 2, 1) == 2  # 2 processes: ceil(3 / 2) micro-batches each
    assert steps_for_rows(1, 8, 4, 1, 0.5) == 1


def test_streaming_counts_max_steps_split_by_stage_budgets(tmp_path, user_files, corpora, capsys):  # noqa: F811
    stages = {
        "stages": [
            {"name": "web", "weights": {"web": 1.0}, "tokens": 2 * 8 * 32 + 1},  # rounds up to 3 steps
            {"name": "rest", "weights": {"books": 1.0, "code": 1.0}, "lr_scale": 0.5},
        ]
    }
    config = streaming_config(
        tmp_path, user_files, corpora, "stream", data=stages, max_steps=10, schedule={"name": "constant"}
    )
    counted = count_total_steps(config)
    assert (counted.steps, counted.how) == (10, "train.max_steps")
    assert [(s.name, s.steps, s.lr_scale) for s in stage_spans(config, 10)] == [("web", 3, 1.0), ("rest", 7, 0.5)]
    png = tmp_path / "stream.png"
    assert main(["schedule", "plot", str(tmp_path / "stream.yaml"), "defaults", "--output", str(png)]) == 0
    out = capsys.readouterr().out
    assert "10 steps, stages web 3 | rest 7" in out
    assert "max 0.003, last 0.0015" in out  # the second stage's lr_scale on the plotted rates


def test_without_a_tokenizer_the_count_is_an_estimate_and_says_so(tmp_path, user_files, capsys):  # noqa: F811
    path = sft_config(tmp_path, user_files, "no-tokenizer", {"packing": True})
    config = yaml.safe_load(path.read_text())
    config["defaults"]["model"]["tokenizer"] = str(tmp_path / "missing-tokenizer")
    path.write_text(yaml.safe_dump(config))
    counted = count_total_steps(load_config(path, ["defaults"]))
    assert not counted.exact and "estimated from the records" in counted.how and "missing-tokenizer" in counted.how
    assert counted.steps == estimate_total_steps(load_config(path, ["defaults"]))
    assert main(["schedule", "plot", str(path), "defaults", "--output", str(tmp_path / "p.png")]) == 0
    assert "; steps: estimated from the records (the data could not be built here: " in capsys.readouterr().out
