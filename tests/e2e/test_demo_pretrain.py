"""`lmforge demo --pretrain --size smoke`: the generated three-source corpus, the trained
tokenizer, a palm-tiny model pretrained in two stages, per-source validation perplexity
before / after stage 1 / after stage 2 (the run's own evaluation rows), and the token
accounting table; --resume keeps the finished run."""

from __future__ import annotations

import json
import math

import pytest
from transformers import AutoTokenizer

from lmforge.cli import main
from lmforge.demo.corpus import SOURCES
from lmforge.demo.pretrain import SIZES


@pytest.fixture(scope="module")
def pretrain_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "pretrain"
    assert main(["demo", "--pretrain", "--size", "smoke", "--output-dir", str(out)]) == 0
    return out


def test_pretrain_demo_smoke(pretrain_demo, capsys):
    run = pretrain_demo / "run"
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "finished"
    spec = SIZES["smoke"]
    assert record["global_step"] == sum(spec.stage_steps)

    # the tokenizer was trained on the corpus, and the model is palm-tiny
    tokenizer = AutoTokenizer.from_pretrained(str(pretrain_demo / "inputs" / "tokenizer"))
    assert len(tokenizer) <= spec.vocab_size
    model_config = json.loads((run / "model" / "config.json").read_text())
    assert (model_config["model_type"], model_config["hidden_size"], model_config["vocab_size"]) == (
        "cohere",
        128,
        8192,
    )
    for name in SOURCES:
        assert len((pretrain_demo / "inputs" / f"{name}.jsonl").read_text().splitlines()) == spec.documents

    # the perplexities printed are the run's evaluations: step 0, end of stage 1, end
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if "eval_loss" in r]
    first, last = spec.stage_steps[0], sum(spec.stage_steps)
    assert evals[0]["step"] == 0 and any(r["step"] == first for r in evals) and evals[-1]["step"] == last
    summary = (run / "summary.md").read_text()
    for name in SOURCES:
        before = evals[0][f"eval/{name}/perplexity"]
        after = evals[-1][f"eval/{name}/perplexity"]
        assert before > 1000  # untrained: about the 8192-row vocabulary's uniform perplexity
        assert after < before
        assert f"| {name} | {before:.2f} |" in summary and f"{after:.2f} |" in summary
        assert math.isclose(after, math.exp(evals[-1][f"eval/{name}/loss"]), rel_tol=1e-6)

    # stage 1 draws no code; the accounting adds up to every token trained
    mix = record["final_metrics"]["data_mix"]["sources"]
    assert sum(row["tokens"] for row in mix.values()) == last * spec.global_batch_size * spec.max_length
    stage_one = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["mix/code/tokens"] == 0 for r in stage_one if "loss" in r and r["step"] <= first)
    assert mix["code"]["tokens"] > 0
    assert (run / "val_perplexity.png").stat().st_size > 1000

    # --resume on the finished demo keeps its run and prints the same tables
    capsys.readouterr()
    assert main(["demo", "--pretrain", "--size", "smoke", "--output-dir", str(pretrain_demo), "--resume"]) == 0
    out = capsys.readouterr().out
    assert "validation perplexity per held-out source" in out and "token accounting" in out
    assert f"{evals[-1]['eval/code/perplexity']:.2f}" in out
    assert json.loads((run / "run.json").read_text())["started"] == record["started"]


def test_pretrain_demo_refuses_bootstrap(tmp_path, capsys):
    assert main(["demo", "--pretrain", "--bootstrap", "--size", "smoke", "--output-dir", str(tmp_path / "d")]) == 2
    assert "--bootstrap: the pretraining demo has no bootstrap rounds" in capsys.readouterr().err
