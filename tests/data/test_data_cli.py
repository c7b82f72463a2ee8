"""`lmforge data inspect` / `lmforge data preview` on a mixed config, text and JSON."""

from __future__ import annotations

import json

import pytest
import yaml

from lmforge.cli import main


@pytest.fixture
def mixed_config(tmp_path, tiny_tokenizer, write_jsonl):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    colors = write_jsonl(
        tmp_path / "colors.jsonl",
        [{"instruction": f"Name color {i}.", "output": f"Color {i}."} for i in range(12)]
        + [{"instruction": "Name color 1.", "output": "Color 1."}, {"broken": True}],
    )
    cot = write_jsonl(
        tmp_path / "cot.jsonl",
        [
            {"question": f"What is {a} plus 7?", "rationale": f"{a} plus 7 is {a + 7}.", "answer": str(a + 7)}
            for a in range(8)
        ],
    )
    config = {
        "model": {"tokenizer": str(tmp_path / "tok")},
        "data": {
            "datasets": [
                {"path": str(colors), "format": "alpaca", "on_bad_record": "skip", "val_split": 0.25, "weight": 0.75},
                {"path": str(cot), "val_split": 0.0, "weight": 0.25},
            ],
            "max_length": 64,
        },
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_inspect_prints_the_table_and_examples(mixed_config, capsys):
    assert main(["data", "inspect", str(mixed_config)]) == 0
    out = capsys.readouterr().out
    header, colors, cot = out.splitlines()[:3]
    assert header.split() == [
        "dataset",
        "format",
        "records",
        "dropped",
        "dups",
        "train",
        "val",
        "test",
        "tokens",
        "mean",
        "max",
    ]
    assert colors.split()[:8] == ["colors.jsonl", "alpaca", "14", "1", "1", "9", "3", "0"]
    assert cot.split()[:8] == ["cot.jsonl", "cot*", "8", "0", "0", "8", "0", "0"]
    assert "dropped: bad_record 1, duplicate 1" in out
    assert "bad record: " in out and ":14: alpaca record is missing fields 'instruction', 'output'" in out
    assert "<|assistant|>\n⟦Color" in out and "<|rationale|>\n⟦" in out


def test_inspect_json(mixed_config, capsys):
    assert main(["data", "inspect", str(mixed_config), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    colors, cot = summary["datasets"]
    assert (colors["records"], colors["train"], colors["val"], colors["duplicates_removed"]) == (14, 9, 3, 1)
    assert colors["dropped"] == {"bad_record": 1, "duplicate": 1}
    assert cot["format"] == "cot" and cot["detected"] and cot["max_tokens"] >= cot["mean_tokens"] > 0
    assert colors["mixed"] == {"train": 13} and cot["mixed"] == {"train": 4}  # 0.75 / 0.25 of 17
    assert len(colors["examples"]) == 2 and "⟦" in colors["examples"][0]
    assert summary["train_rows"] == 17 and "packing" not in summary


def test_preview_json_shows_segments_and_ids(mixed_config, capsys):
    assert (
        main(["data", "preview", str(mixed_config), "--n", "2", "--ids", "--json", "--set", "data.packing=true"]) == 0
    )
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 2
    for record in records:
        assert record["text"].replace("⟦", "").replace("⟧", "") == "".join(s["text"] for s in record["segments"])
        trained = [s for s in record["segments"] if s["trained"]]
        assert trained and all(s["role"] in ("assistant", "rationale", "answer") for s in trained)
        assert all(not s["trained"] for s in record["segments"] if s["role"] == "prompt")
        assert len(record["input_ids"]) == len(record["labels"]) == len(record["position_ids"]) <= 64


def test_preview_text(mixed_config, capsys):
    assert main(["data", "preview", str(mixed_config), "--n", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("== example 1 (") and "⟦" in out


def test_bad_n_is_a_one_line_error(mixed_config, capsys):
    assert main(["data", "preview", str(mixed_config), "--n", "0"]) == 2
    assert capsys.readouterr().err.strip() == "lmforge: error: --n 0: need at least one example"


def test_preview_tokenizes_format_augmentation_as_training_does(mixed_config, capsys):
    """With format augmentation on, the augmentation formats' tags are single special tokens
    in the preview, with the ids a training run's tokenizer gives them; the preview's
    tokenizer is training's, the objective's mask token included."""
    from lmforge.config import load_config
    from lmforge.data.formats import get_format
    from lmforge.data.inspect import prepare
    from lmforge.train.pipeline import needed_special_tokens, prepare_model_and_tokenizer

    overrides = ["data.format_augmentation=[openassistant, chatml]", "train.objective.name=remask"]
    assert (
        main(
            [
                "data",
                "preview",
                str(mixed_config),
                "--n",
                "17",
                "--ids",
                "--json",
                *(arg for override in overrides for arg in ("--set", override)),
            ]
        )
        == 0
    )
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    config = load_config(mixed_config, overrides=overrides)
    trained = prepare_model_and_tokenizer(config, config.run.seed).tokenizer
    seen = set()
    for name in ("openassistant", "chatml"):
        for token in get_format(name).special_tokens(trained):
            assert token in trained.all_special_tokens
            for record in records:
                if token in record["text"]:
                    seen.add(token)
                    assert trained.convert_tokens_to_ids(token) in record["input_ids"], (token, record["text"])
    assert {"<|prompter|>", "<|im_start|>"} <= seen  # both augmentation formats were drawn
    preview_tokenizer, _ = prepare(config, needed_special_tokens)
    assert preview_tokenizer.get_vocab() == trained.get_vocab()
    assert preview_tokenizer.mask_token is None and "<|mask|>" in preview_tokenizer.get_vocab()
