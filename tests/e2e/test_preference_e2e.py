"""Preference objectives through `lmforge train` on the shipped pairs file, and SPIN on SFT
data: the reference is the starting model (so a reference objective's first loss is its
value at margin 0), the rejected responses are used, the loss falls, and bad inputs stop
before training with one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lmforge.cli import main
from tests.e2e.conftest import write_config

PAIRS = Path(__file__).resolve().parents[2] / "examples" / "data" / "arithmetic-pairs.jsonl"
# first training loss when the policy is the reference (margin 0): DPO/SPIN -log sigmoid(0);
# IPO (0 - 1/(2 tau))^2
AT_MARGIN_ZERO = {"dpo": math.log(2.0), "spin": math.log(2.0), "ipo": (1 / (2 * 0.1)) ** 2}


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r and "eval_loss" not in r]


def _pairs_config(tmp_path, user_files, name, **objective):
    config = write_config(
        tmp_path / f"{name}.yaml", user_files, tmp_path / name, max_steps=8, objective={"name": name, **objective}
    )
    return config, ["--set", f"data.datasets=[{{path: {PAIRS}, val_split: 0.1}}]"]


@pytest.mark.parametrize("name", ["dpo", "ipo", "orpo", "simpo", "rank"])
def test_objective_trains_on_pairs(tmp_path, user_files, name):
    config, overrides = _pairs_config(tmp_path, user_files, name)
    assert main(["train", str(config), *overrides]) == 0
    run = tmp_path / name
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    losses = _losses(run)
    assert all(math.isfinite(x) for x in losses) and len(losses) == 8
    if name in AT_MARGIN_ZERO:
        assert losses[0] == pytest.approx(AT_MARGIN_ZERO[name], rel=1e-4)
        cache = json.loads((run / "reference" / "reference_logps.json").read_text())
        assert len(cache["values"]) == 144 and all(len(v) == 3 for v in cache["values"])  # chosen + 2 rejected
    else:
        assert not (run / "reference").exists()  # ORPO, SimPO and rank need no reference
    assert min(losses[-3:]) < losses[0]
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rewards = [row for row in logged if "loss" in row and "preference_accuracy" in row]
    if name != "rank":  # every training line carries the rewards, margin and accuracy
        assert len(rewards) == 8
        for row in rewards:
            assert 0.0 <= row["preference_accuracy"] <= 1.0
            assert row["reward_margin"] == pytest.approx(row["rewards_chosen"] - row["rewards_rejected"], abs=1e-5)
        if name in AT_MARGIN_ZERO:  # the policy starts as its reference: every reward 0
            assert rewards[0]["reward_margin"] == pytest.approx(0.0, abs=1e-6)


def test_spin_answers_come_from_the_previous_iteration(tmp_path, user_files):
    """Iteration 1 starts from a fresh model, iteration 2 from iteration 1's model: each
    one's rejected responses are its starting model's own greedy answers, and its reference
    is that model (first loss log 2 in both)."""
    from lmforge.config import load_config
    from lmforge.train.pipeline import prepare_model_and_tokenizer
    from lmforge.train.reference import _prompt_ids

    spin = {"name": "spin", "temperature": 0.0, "max_new_tokens": 12}
    first = write_config(tmp_path / "it1.yaml", user_files, tmp_path / "it1", max_steps=4, objective=spin)
    assert main(["train", str(first)]) == 0
    second = write_config(tmp_path / "it2.yaml", user_files, tmp_path / "it2", max_steps=4, objective=spin)
    assert (
        main(
            [
                "train",
                str(second),
                "--set",
                f"model.name_or_path={tmp_path / 'it1' / 'model'}",
                "--set",
                "model.tokenizer=null",
            ]
        )
        == 0
    )
    answers = [
        json.loads((tmp_path / it / "reference" / "own_generations.json").read_text())["values"]
        for it in ("it1", "it2")
    ]
    assert answers[0] != answers[1]
    for it in ("it1", "it2"):
        assert _losses(tmp_path / it)[0] == pytest.approx(math.log(2.0), rel=1e-4)
    # iteration 1's answers are the fresh starting model's greedy continuations
    prepared = prepare_model_and_tokenizer(load_config(str(first)), seed=7)
    from lmforge.data.from_config import build_from_config

    config = load_config(str(first))
    rows = build_from_config(config.data, config.run.seed, prepared.prompt_format, prepared.tokenizer).train
    import torch

    row = rows[0]
    prompt = _prompt_ids(row["input_ids"], row["labels"])
    stops = [
        prepared.tokenizer.convert_tokens_to_ids(s) for s in prepared.prompt_format.stop_strings(prepared.tokenizer)
    ]
    with torch.no_grad():
        out = prepared.model.eval().generate(
            input_ids=torch.tensor([prompt]),
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=stops,
            pad_token_id=prepared.tokenizer.pad_token_id,
        )
    generated = out[0, len(prompt) :].tolist()
    cut = next((i + 1 for i, t in enumerate(generated) if t in stops), len(generated))
    assert answers[0][0] == generated[:cut]


@pytest.mark.parametrize(
    "override, expected",
    [
        (
            "train.objective={name: dpo}",
            "train.objective.name: dpo trains on ranked responses, but 144 of 144 training "
            "examples of data.datasets[0]",
        ),
        ("train.objective={name: dpo, beta: -1}", "train.objective.beta = -1: Input should be greater than 0"),
    ],
)
def test_preference_objective_on_sft_data_is_refused(tmp_path, user_files, capsys, override, expected):
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run")
    assert main(["train", str(config), "--set", override]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "run").glob("checkpoint-*"))


@pytest.mark.parametrize(
    "record, message",
    [
        ({"prompt": "p", "chosen": " ", "rejected": ["x"]}, "pairs response 'chosen' is empty"),
        ({"prompt": "p", "chosen": "a", "rejected": ["b", ""]}, "pairs response 'rejected[1]' is empty"),
        (
            {"prompt": "p", "chosen": "a b", "rejected": ["a  b"]},
            "pairs responses must differ, but the ranking holds the same response twice",
        ),
        ({"prompt": "p", "chosen": "a", "rejected": []}, "pairs field 'rejected' is an empty list"),
    ],
)
def test_bad_pairs_records_name_the_line(tmp_path, user_files, capsys, record, message):
    data = tmp_path / "pairs.jsonl"
    good = {"prompt": "q", "chosen": "yes", "rejected": ["no"]}
    data.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n")
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run", objective={"name": "dpo"})
    assert main(["train", str(config), "--set", f"data.datasets=[{{path: {data}, val_split: 0}}]"]) == 2
    err = capsys.readouterr().err
    assert f"pairs.jsonl:2: {message}" in err and len(err.strip().splitlines()) == 1


def test_packing_is_refused_for_preference_objectives(tmp_path, user_files, capsys):
    config, overrides = _pairs_config(tmp_path, user_files, "simpo")
    assert main(["train", str(config), *overrides, "--set", "data.packing=true"]) == 2
    assert "data.packing: simpo compares each prompt's responses" in capsys.readouterr().err


def test_a_separate_reference_model(tmp_path, user_files, capsys):
    """`reference:` a model other than the starting one: its log-probs are the reference (the
    first loss is no longer log 2); one whose tokenizer differs is refused in one line."""
    sft = write_config(tmp_path / "sft.yaml", user_files, tmp_path / "sft", max_steps=3)
    assert main(["train", str(sft)]) == 0
    masked = write_config(
        tmp_path / "masked.yaml", user_files, tmp_path / "masked", max_steps=1, objective={"name": "remask"}
    )  # adds <|mask|>: another vocabulary
    assert main(["train", str(masked)]) == 0
    config, overrides = _pairs_config(tmp_path, user_files, "dpo", reference=str(tmp_path / "sft" / "model"))
    assert main(["train", str(config), *overrides, "--set", "train.max_steps=2"]) == 0
    assert _losses(tmp_path / "dpo")[0] != pytest.approx(math.log(2.0), rel=1e-3)
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                str(config),
                *overrides,
                "--overwrite",
                "--set",
                f"train.objective.reference={tmp_path / 'masked' / 'model'}",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "train.objective.reference: " in err and "tokenizer differs from the policy's" in err
    assert "'<|mask|>'" in err and len(err.strip().splitlines()) == 1
