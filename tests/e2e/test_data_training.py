"""Training-side use of the data pipeline: multi-stage mixes in order, NEFTune on packed
rows, format augmentation's special tokens, and split packing of plain text."""

from __future__ import annotations

import json
import re

import yaml
from transformers import AutoTokenizer, TrainerCallback

from lmforge.cli import main
from lmforge.config import load_config
from lmforge.rundir import read_run
from lmforge.train.pipeline import run_training
from tests.e2e.conftest import write_config


def _two_sources(tmp_path):
    """Stage 'easy' draws only from a.jsonl (questions about apples), stage 'hard' only from b.jsonl."""
    for name, word in (("a", "apples"), ("b", "boxes")):
        rows = [
            {"question": f"How many {word} {i}?", "rationale": f"{i} + 1 = {i + 1}.", "answer": str(i + 1)}
            for i in range(24)
        ]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_stages_train_in_order(tmp_path, user_files):
    _two_sources(tmp_path)
    path = write_config(
        tmp_path / "c.yaml", user_files, tmp_path / "run", max_steps=6, global_batch_size=8, micro_batch_size=8
    )
    config = yaml.safe_load(path.read_text())
    config["defaults"]["data"].update(
        datasets=[
            {"path": str(tmp_path / "a.jsonl"), "name": "a", "val_split": 0},
            {"path": str(tmp_path / "b.jsonl"), "name": "b", "val_split": 0},
        ],
        stages=[
            {"name": "easy", "weights": {"a": 1.0}, "mix_size": 24},
            {"name": "hard", "weights": {"b": 1.0}, "mix_size": 24},
        ],
    )
    config["defaults"]["data"]["dedup"] = {"near": False}
    path.write_text(yaml.safe_dump(config))
    loaded = load_config(path)
    seen = []

    class Spy(TrainerCallback):
        def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
            tokenizer = kwargs["processing_class"]
            for batch in train_dataloader:
                seen.append(tokenizer.decode(batch["input_ids"][0]))

    run_training(loaded, extra_callbacks=[Spy()])
    words = ["apples" if "apples" in text else "boxes" for text in seen]
    assert words == ["apples"] * 3 + ["boxes"] * 3  # stage 1's batches, then stage 2's


def test_neftune_trains_on_packed_rows(tmp_path, user_files):
    path = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run", max_steps=2, neftune_alpha=5.0)
    config = yaml.safe_load(path.read_text())
    config["defaults"]["data"]["packing"] = True
    path.write_text(yaml.safe_dump(config))
    result = run_training(load_config(path))
    assert result.metrics["skipped_updates"] == 0


def test_format_augmentation_tokens_are_special_tokens(tmp_path, user_files):
    path = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run", max_steps=1)
    config = yaml.safe_load(path.read_text())
    config["defaults"]["data"]["format_augmentation"] = ["remask", "openassistant", "chatml"]
    path.write_text(yaml.safe_dump(config))
    result = run_training(load_config(path))
    tokenizer = AutoTokenizer.from_pretrained(result.model_dir)
    for token in ("<|prompter|>", "<|im_start|>", "<|rationale|>"):
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1, token


def test_split_packing_trains_on_plain_text(tmp_path, user_files, capsys):
    """`lmforge train` with data.packing: split on a text dataset: documents longer than
    max_length are cut across rows, in training and in validation (none dropped), the log
    names the mode, the model card says so."""
    documents = [" ".join(f"{i} plus {j} is {i + j}." for j in range(1 + i % 9)) for i in range(24)]
    (tmp_path / "text.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in documents))
    path = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run", max_steps=2)
    config = yaml.safe_load(path.read_text())
    config["defaults"]["data"].update(
        datasets=[{"path": str(tmp_path / "text.jsonl"), "val_split": 0.1}], max_length=32, packing="split"
    )
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    log = capsys.readouterr().out
    assert re.search(r"\[lmforge\] packing \(split\): 22 examples in \d+ rows, efficiency 9\d\.\d%", log), log
    assert "train 22, val 2, test 0; dropped: none; truncated 0" in log  # the long validation document kept
    assert re.search(r"\[lmforge\] validation packing \(split\): 2 examples in \d+ rows", log), log
    assert read_run(tmp_path / "run")["final_metrics"]["eval_tokens"] > 0
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "32 tokens (examples concatenated and split across full rows)" in card
