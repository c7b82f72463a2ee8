"""Files a user would bring: arithmetic CoT data, a tokenizer directory, a config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lmforge.demo.arithmetic import make_splits
from lmforge.demo.tokenizer import train_bpe_tokenizer


@pytest.fixture(scope="session")
def user_files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("user")
    train, test = make_splits(160, 8, seed=3)
    with (root / "train.jsonl").open("w") as handle:
        for row in train:
            handle.write(json.dumps(row) + "\n")
    with (root / "test.jsonl").open("w") as handle:
        for row in test:
            handle.write(json.dumps(row) + "\n")
    # a plain tokenizer without the prompt format's tokens: lmforge must add them
    tokenizer = train_bpe_tokenizer((f"{r['question']} {r['rationale']}" for r in train), vocab_size=300)
    tokenizer.save_pretrained(root / "tokenizer")
    return root


def write_config(path: Path, user_files: Path, output_dir: Path, **train) -> Path:
    config = {
        "defaults": {
            "run": {"output_dir": str(output_dir), "seed": 7},
            "model": {
                "tokenizer": str(user_files / "tokenizer"),
                "size": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "max_position_embeddings": 256},
            },
            "data": {"datasets": [{"path": str(user_files / "train.jsonl"), "val_split": 0.1}], "max_length": 160},
            "train": {
                "global_batch_size": 8,
                "micro_batch_size": 4,
                "max_steps": 4,
                "logging_steps": 1,
                "optimizer": {"lr": 3e-3},
                **train,
            },
        }
    }
    path.write_text(yaml.safe_dump(config))
    return path
