"""Masking objectives through `lmforge train`: the mask token is added, and ReMask-CoT
refuses data without rationales before training starts."""

from __future__ import annotations

import json

from transformers import AutoTokenizer

from lmforge.cli import main
from tests.e2e.conftest import write_config


def test_remask_cot_run_adds_the_mask_token(tmp_path, user_files):
    config = write_config(
        tmp_path / "c.yaml",
        user_files,
        tmp_path / "run",
        max_steps=2,
        objective={"name": "remask_cot"},
        neftune_alpha=10.0,
    )
    assert main(["train", str(config)]) == 0
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    assert "<|mask|>" in tokenizer.get_vocab()
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert tokenizer.convert_tokens_to_ids("<|mask|>") in run["added_tokens"]


def test_remask_cot_without_rationales_is_a_config_error(tmp_path, user_files, capsys):
    chat = tmp_path / "chat.jsonl"
    chat.write_text(
        "".join(
            json.dumps(
                {"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": "hello"}]}
            )
            + "\n"
            for i in range(20)
        )
    )
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run", objective={"name": "remask_cot"})
    code = main(["train", str(config), "--set", f"data.datasets=[{{path: {chat}, val_split: 0}}]"])
    err = capsys.readouterr().err
    assert code == 2 and "train.objective.name: remask_cot needs CoT examples" in err
    assert not list((tmp_path / "run").glob("checkpoint-*"))


def test_bad_objective_values_are_config_errors(tmp_path, user_files, capsys):
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run")
    for override, expected in [
        (
            "train.objective={name: remask, p_in: 1.5}",
            "train.objective.p_in = 1.5: Input should be less than or equal to 1",
        ),
        ("train.objective={name: remask_cot, weight: -1}", "train.objective.weight = -1"),
        ("train.objective={name: remask_cot, p_label: -0.1}", "train.objective.p_label = -0.1"),
        (
            "train.objective={name: kto}",
            "train.objective.name = 'kto' is not one of: ce, mixce, masked_thought, remask, remask_cot, rank, dpo, ipo, spin, orpo, simpo",
        ),
        ("train.objective={name: dpo, beta: 0}", "train.objective.beta = 0: Input should be greater than 0"),
        ("train.optimizer.name=sgd", "train.optimizer.name = 'sgd' is not one of: adamw, adalite, lilith"),
        ("train.schedule.name=step", "is not one of: cosine, linear, constant, one_cycle, sigmoid, wsd"),
    ]:
        capsys.readouterr()
        assert main(["train", str(config), "--set", override]) == 2
        assert expected in capsys.readouterr().err
