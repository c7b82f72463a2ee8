"""Validation perplexity per held-out source in a streaming run: each source's val_split
holds documents out of the stream; every train.eval_every steps and at the end each source
is scored (eval/<source>/loss and perplexity, and the overall eval_loss over all their
tokens) in metrics.jsonl and run.json, and plotted per source in val_perplexity.png."""

from __future__ import annotations

import math

import pytest
import transformers

from lmforge.data.mixture import build_stream, mixture_plan, validation_rows
from lmforge.rundir import read_run
from lmforge.train.pipeline import run_training
from tests.e2e.test_streaming_train import corpora, metric_lines, streaming_config  # noqa: F401

TWO = {
    "datasets": [
        {"path": "web", "name": "web", "weight": 0.7, "val_split": 0.1, "max_val_set": 12},
        {"path": "code", "name": "code", "weight": 0.3, "val_split": 0.2},
    ]
}


def two_sources(paths):
    return {"datasets": [{**d, "path": paths[d["path"]]} for d in TWO["datasets"]]}


def test_two_source_run_logs_each_sources_validation_perplexity(tmp_path, user_files, corpora):  # noqa: F811
    config = streaming_config(
        tmp_path, user_files, corpora, "val", data=two_sources(corpora), max_steps=4, eval_every=2
    )
    run_training(config)
    run_dir = tmp_path / "val"
    evals = [r for r in metric_lines(run_dir) if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2, 4, 4]  # every 2 steps, and the end
    for row in evals:
        for name in ("web", "code"):
            assert row[f"eval/{name}/perplexity"] == pytest.approx(math.exp(row[f"eval/{name}/loss"]), rel=1e-6)
    assert evals[0]["eval/web/loss"] != evals[1]["eval/web/loss"]  # the model trained in between

    # the overall loss averages over every label token of both sets
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(user_files / "tokenizer"))
    plan = mixture_plan(config.data, 4, 8)
    sets = validation_rows(plan, build_stream(plan, tokenizer, 7, "source", True), True)
    assert sum(sum(1 for label in row["labels"][1:] if label != -100) for row in sets["web"]) > 0
    tokens = {name: sum(sum(1 for x in row["labels"][1:] if x != -100) for row in rows) for name, rows in sets.items()}
    last = evals[-1]
    assert last["eval_tokens"] == tokens["web"] + tokens["code"]
    expected = (last["eval/web/loss"] * tokens["web"] + last["eval/code/loss"] * tokens["code"]) / last["eval_tokens"]
    assert last["eval_loss"] == pytest.approx(expected, rel=1e-6)

    final = read_run(run_dir)["final_metrics"]
    assert final["eval/web/perplexity"] == pytest.approx(last["eval/web/perplexity"])
    assert final["eval/code/loss"] == pytest.approx(last["eval/code/loss"])
    assert (run_dir / "val_perplexity.png").stat().st_size > 1000


def test_without_val_split_a_stream_holds_nothing_out(tmp_path, user_files, corpora):  # noqa: F811
    """The in-memory path's 5% default does not apply to a stream: it trains on every document
    and runs no validation unless a dataset sets val_split."""
    config = streaming_config(tmp_path, user_files, corpora, "plain", max_steps=2, eval_every=1)
    assert [d.val_split for d in config.data.datasets] == [0.0, 0.0, 0.0]
    run_training(config)
    assert not [r for r in metric_lines(tmp_path / "plain") if "eval_loss" in r]
    assert not (tmp_path / "plain" / "val_perplexity.png").exists()
