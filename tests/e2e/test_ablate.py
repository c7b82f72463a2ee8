"""`lmforge ablate` end to end on a tiny model: one starting model, every variant x seed
trained, seed 004's table shape in markdown and JSON, and a bar chart."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from lmforge.cli import main
from lmforge.config import Config
from lmforge.train.pipeline import prepare_model_and_tokenizer
from tests.e2e.conftest import write_config


def test_ablate_tiny(tmp_path, user_files, capsys):
    config = write_config(
        tmp_path / "c.yaml",
        user_files,
        tmp_path / "ablation",
        max_steps=2,
        eval_every=2,
        objective={"name": "remask_cot", "p_in": 0.3},
    )
    code = main(
        [
            "ablate",
            str(config),
            "--variants",
            "sft,masked_thought,remask",
            "--seeds",
            "2",
            "--test",
            str(user_files / "test.jsonl"),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    root = tmp_path / "ablation"
    result = json.loads((root / "ablation.json").read_text())
    assert [row["label"] for row in result["variants"]] == ["SFT", "Masked Thought", "ReMask"]
    for row in result["variants"]:
        assert len(row["accuracies"]) == 2 and len(row["val_losses"]) == 2
        assert all(0.0 <= a <= 1.0 for a in row["accuracies"])
    assert "| Model | Exact match | Validation loss |" in (root / "ablation.md").read_text()
    assert "| ReMask |" in printed
    assert (root / "ablation.png").stat().st_size > 1000
    # every run started from the same weights, and each variant ran its own objective
    runs = {(v, k): root / v / f"seed-{k}" for v in ("sft", "masked_thought", "remask") for k in (0, 1)}
    init = load_file(root / "init_model" / "model.safetensors")
    for run_dir in runs.values():
        resolved = (run_dir / "config.yaml").read_text()
        assert str(root / "init_model") in resolved
    assert "name: remask_cot" in (runs[("remask", 0)] / "config.yaml").read_text()
    assert "p_in: 0.3" in (runs[("masked_thought", 1)] / "config.yaml").read_text()
    assert "seed: 8" in (runs[("sft", 1)] / "config.yaml").read_text()
    # ... value for value: what each run's own config loads before its first step is init_model/
    # exactly (no token added, nothing re-initialised by seed or objective), and training moved it
    for run_dir in runs.values():
        config = Config.model_validate(yaml.safe_load((run_dir / "config.yaml").read_text()))
        prepared = prepare_model_and_tokenizer(config, config.run.seed)
        assert prepared.new_ids == []
        start = prepared.model.state_dict()
        assert init.keys() <= start.keys()  # the file leaves out the head tied to the embeddings
        for name, tensor in init.items():
            assert torch.equal(start[name], tensor), f"{run_dir}: {name} differs from init_model"
        trained = load_file(run_dir / "model" / "model.safetensors")
        assert not torch.equal(trained["model.embed_tokens.weight"], init["model.embed_tokens.weight"])


def test_unknown_variant_is_an_error(tmp_path, user_files, capsys):
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "ablation")
    assert main(["ablate", str(config), "--variants", "sft,kto", "--test", str(user_files / "test.jsonl")]) == 2
    assert "unknown variant(s) kto" in capsys.readouterr().err


PAIRS = Path(__file__).resolve().parents[2] / "examples" / "data" / "arithmetic-pairs.jsonl"


def test_ablate_compares_sft_with_preference_objectives_on_pairs(tmp_path, user_files):
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "ablation", max_steps=2)
    assert (
        main(
            [
                "ablate",
                str(config),
                "--variants",
                "sft,dpo,simpo",
                "--seeds",
                "1",
                "--test",
                str(user_files / "test.jsonl"),
                "--set",
                f"data.datasets=[{{path: {PAIRS}, val_split: 0.1}}]",
            ]
        )
        == 0
    )
    root = tmp_path / "ablation"
    result = json.loads((root / "ablation.json").read_text())
    assert [row["label"] for row in result["variants"]] == ["SFT", "DPO", "SimPO"]
    assert (root / "dpo" / "seed-0" / "reference" / "reference_logps.json").is_file()
    assert "name: simpo" in (root / "simpo" / "seed-0" / "config.yaml").read_text()


def test_preference_variant_without_pairs_data_stops_before_training(tmp_path, user_files, capsys):
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "ablation")
    assert main(["ablate", str(config), "--variants", "sft,dpo", "--test", str(user_files / "test.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "--variants dpo: dpo trains on ranked responses (pairs records), but data.datasets are cot" in err
    assert not (tmp_path / "ablation" / "init_model").exists()
