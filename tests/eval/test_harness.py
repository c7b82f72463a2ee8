"""The harness bridge against lmforge's own evaluator on the same checkpoint, data and
few-shot prompts: multiple-choice acc / acc_norm / acc_bytes and GSM8K strict / flexible
exact match must agree, item by item."""

from __future__ import annotations

import json
import sys

import pytest

from lmforge.errors import LmforgeError
from lmforge.eval import harness
from lmforge.eval.evaluate import EvalOptions
from lmforge.eval.runner import run_eval
from lmforge.eval.tasks import load_task
from tests.eval.conftest import TEST, cli_error

pytest.importorskip("lm_eval")

OPTIONS = EvalOptions(shots=2, seed=3, batch_size=8, max_new_tokens=40)


def _with_model_answers(path, predictions, output):
    """The GSM8K file with every other gold answer replaced by the model's own strict answer
    written as '$n' (normalization must strip the '$'), so accuracy is neither 0 nor 1."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for i, (row, predicted) in enumerate(zip(rows, predictions)):
        if i % 2 == 0 and predicted is not None:
            row["answer"] = row["answer"].rpartition("#### ")[0] + f"#### ${predicted}"
    output.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return output


def test_harness_agrees_with_lmforge(gsm8k_model_dir, task_files, tmp_path):
    gsm8k = str(task_files["gsm8k"])
    run_eval(gsm8k_model_dir, [load_task(gsm8k, fewshot=gsm8k)], OPTIONS, tmp_path / "first.json")
    strict = [json.loads(line)["strict"] for line in (tmp_path / "first.samples.jsonl").read_text().splitlines()]
    assert sum(s is not None for s in strict) >= len(TEST) // 2, "the model should write '#### n' answers"
    golds = str(_with_model_answers(task_files["gsm8k"], strict, tmp_path / "gsm8k_gold.jsonl"))

    # same few-shot pool (the unmodified file), so the prompts are those of the first run
    tasks = [load_task(str(task_files["arc"])), load_task(golds, fewshot=gsm8k)]
    ours = run_eval(gsm8k_model_dir, tasks, OPTIONS, tmp_path / "ours.json")
    theirs = harness.run_harness(gsm8k_model_dir, tasks, OPTIONS, tmp_path / "harness.json")

    ours_m, theirs_m = ({t["name"]: t["metrics"] for t in r["tasks"]} for r in (ours, theirs))
    for metric in ("acc", "acc_norm", "acc_bytes"):
        assert ours_m["arc"][metric] == pytest.approx(theirs_m["arc"][metric], abs=1e-9), metric
    for metric in ("exact_match_strict", "exact_match_flexible"):
        assert ours_m["gsm8k_gold"][metric] == pytest.approx(theirs_m["gsm8k_gold"][metric], abs=1e-9), metric
    assert 0.0 < ours_m["gsm8k_gold"]["exact_match_strict"] < 1.0
    assert 0.0 <= ours_m["arc"]["acc_norm"] <= 1.0

    # item by item: the same prompts, log-likelihoods and generations
    ours_samples = [json.loads(line) for line in (tmp_path / "ours.samples.jsonl").read_text().splitlines()]
    harness_samples = [json.loads(line) for line in (tmp_path / "harness.samples.jsonl").read_text().splitlines()]
    arc_ours = [s for s in ours_samples if s["task"] == "arc"]
    arc_theirs = [s for s in harness_samples if s["task"] == "arc"]
    for mine, its in zip(arc_ours, arc_theirs, strict=True):
        assert its["arguments"]["gen_args_0"]["arg_0"] == mine["context"]
        assert [float(r[0][0]) for r in its["resps"]] == pytest.approx(mine["logliks"], abs=1e-4)
    gen_ours = [s for s in ours_samples if s["task"] == "gsm8k_gold"]
    gen_theirs = [s for s in harness_samples if s["task"] == "gsm8k_gold" and s["filter"] == "strict-match"]
    for mine, its in zip(gen_ours, gen_theirs, strict=True):
        assert its["arguments"]["gen_args_0"]["arg_0"] == mine["context"]
        assert its["resps"][0][0] == mine["output"]
        assert its["filtered_resps"][0] == (mine["strict"] if mine["strict"] is not None else "[invalid]")


def test_failed_harness_run_is_a_one_line_error(random_model_dir, task_files, tmp_path, monkeypatch, capsys):
    def failing(*args, **kwargs):
        return [sys.executable, "-c", "import sys; print('loading...', file=sys.stderr); "
                "raise ValueError('Attempted to load task lmforge_arc: broken YAML')"]

    monkeypatch.setattr(harness, "harness_command", failing)
    message = cli_error(capsys, ["eval", str(random_model_dir), "--task", str(task_files["arc"]), "--harness",
                                 "--output", str(tmp_path / "h.json")])
    assert "lm-evaluation-harness failed (exit 1): ValueError: Attempted to load task lmforge_arc" in message


def test_harness_bridge_refuses_qa(random_model_dir, task_files, tmp_path):
    with pytest.raises(LmforgeError, match="the harness bridge covers"):
        harness.run_harness(random_model_dir, [load_task(str(task_files["squad"]))], OPTIONS, tmp_path / "h.json")
