"""`lmforge eval` on every task type, and each bad input as a one-line error (exit 2)."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from tests.eval.conftest import cli_error, run_cli

PROMPTED = ("gsm8k", "cot", "arc", "translation", "squad")


def test_every_prompted_task_type_on_a_plain_model(random_model_dir, task_files, tmp_path, capsys):
    output = tmp_path / "results.json"
    argv = [
        "eval",
        str(random_model_dir),
        "--shots",
        "2",
        "--max-new-tokens",
        "8",
        "--batch-size",
        "4",
        "--output",
        str(output),
    ]
    for name in PROMPTED:
        argv += ["--task", str(task_files[name])]
    code, out, err = run_cli(capsys, argv)
    assert code == 0, err
    record = json.loads(output.read_text())
    weights = (random_model_dir / "model.safetensors").read_bytes()
    assert record["model"]["sha256"] == {"model.safetensors": hashlib.sha256(weights).hexdigest()}
    assert {"torch", "transformers", "sacrebleu", "lmforge"} <= record["versions"].keys()
    by_name = {t["name"]: t for t in record["tasks"]}
    assert set(by_name) == {"gsm8k", "cot", "arc", "wmt", "squad"}
    for task in record["tasks"]:
        assert task["shots"] == 2 and task["fewshot_seed"] == 1234 and task["prompt_format"] == "plain"
        assert len(task["sha256"]) == 64 and task["fewshot_sha256"] == task["sha256"]
    assert {"exact_match_strict", "exact_match_flexible"} <= by_name["gsm8k"]["metrics"].keys()
    assert {"acc", "acc_norm", "acc_bytes", "acc_norm_stderr"} <= by_name["arc"]["metrics"].keys()
    assert {"bleu", "chrf"} <= by_name["wmt"]["metrics"].keys()
    assert {"f1", "exact_match"} <= by_name["squad"]["metrics"].keys()
    samples = [json.loads(line) for line in output.with_suffix(".samples.jsonl").read_text().splitlines()]
    assert len(samples) == 12 + 6 + 10 + 4 + 4
    assert "| arc | multiple_choice | 2 | plain | acc_norm |" in out


def test_perplexity_on_text_and_chat_with_an_lmforge_model(trained_run, task_files, tmp_path, capsys):
    output = tmp_path / "ppl.json"
    code, _, err = run_cli(
        capsys,
        [
            "eval",
            str(trained_run),
            "--task",
            str(task_files["text"]),
            "--task",
            str(task_files["chat"]),
            "--output",
            str(output),
        ],
    )
    assert code == 0, err
    text, chat = json.loads(output.read_text())["tasks"]
    assert chat["prompt_format"] == "remask"  # the model's own format, from lmforge.json
    assert text["metrics"]["perplexity"] == pytest.approx(2.718281828 ** text["metrics"]["nll_per_token"], rel=1e-6)
    assert {"word_perplexity", "byte_perplexity", "bits_per_byte"} <= text["metrics"].keys()
    assert 1.0 < chat["metrics"]["perplexity"] < 1e4 and chat["metrics"]["tokens"] > 0


def test_checkpoint_without_tokenizer_uses_the_runs_model_dir(trained_run, task_files, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (run / "checkpoint-2" / name).unlink(missing_ok=True)
    output = tmp_path / "ckpt.json"
    code, _, err = run_cli(
        capsys, ["eval", str(run / "checkpoint-2"), "--task", str(task_files["arc"]), "--output", str(output)]
    )
    assert code == 0, err
    model = json.loads(output.read_text())["model"]
    assert model["step"] == 2 and model["tokenizer"] == str(run / "model") and model["prompt_format"] == "remask"


def test_bad_inputs_are_one_line_errors(random_model_dir, trained_run, task_files, tmp_path, capsys):
    arc = str(task_files["arc"])
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text("{}")
    assert "holds no model weights" in cli_error(capsys, ["eval", str(no_weights), "--task", arc])

    no_tokenizer = tmp_path / "no_tokenizer"
    shutil.copytree(random_model_dir, no_tokenizer)
    for path in no_tokenizer.glob("tokenizer*"):
        path.unlink()
    assert "no tokenizer here" in cli_error(capsys, ["eval", str(no_tokenizer), "--task", arc])

    unknown = tmp_path / "odd.jsonl"
    unknown.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    message = cli_error(capsys, ["eval", str(random_model_dir), "--task", str(unknown)])
    assert f"{unknown}:1: cannot tell the task type" in message
    (tmp_path / "x.txt").write_text("hello\n")
    assert "unsupported data file type '.txt'" in cli_error(
        capsys, ["eval", str(random_model_dir), "--task", str(tmp_path / "x.txt")]
    )

    message = cli_error(capsys, ["eval", str(random_model_dir), "--task", str(task_files["cot"]), "--shots", "8"])
    assert message.endswith(
        "--shots 8: the few-shot pool "
        + str(task_files["cot"])
        + " has only 5 examples (6 records, less the one evaluated)"
    )
    assert "perplexity task" in cli_error(
        capsys, ["eval", str(random_model_dir), "--task", str(task_files["text"]), "--shots", "1"]
    )
    assert "unknown prompt format" in cli_error(
        capsys, ["eval", str(random_model_dir), "--task", arc, "--format", "bogus"]
    )
    assert "task file not found" in cli_error(capsys, ["eval", str(random_model_dir), "--task", "nope.jsonl"])


def test_pickled_weights_need_allow_pickle(random_model_dir, task_files, tmp_path, capsys):
    """A model with only pytorch_model.bin: refused (a pickle can run code) unless --allow-pickle,
    and then scored exactly as its safetensors twin."""
    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(random_model_dir, pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    argv = ["eval", "--task", str(task_files["arc"]), "--shots", "0", "--output"]
    message = cli_error(capsys, [*argv, str(tmp_path / "refused.json"), str(pickled)])
    assert "holds pickled weights (pytorch_model.bin)" in message and "pass --allow-pickle" in message

    results = {}
    for name, model in (("pickled", pickled), ("safetensors", random_model_dir)):
        output = tmp_path / f"{name}.json"
        extra = ["--allow-pickle"] if name == "pickled" else []
        code, _, err = run_cli(capsys, [*argv, str(output), *extra, str(model)])
        assert code == 0, err
        results[name] = (
            json.loads(output.read_text())["tasks"][0]["metrics"],
            output.with_suffix(".samples.jsonl").read_text(),
        )
    assert results["pickled"] == results["safetensors"]
