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


def test_ablate_scores_each_run_at_its_best_validation_checkpoint(tmp_path, user_files, capsys):
    """With --select-on the same file as --test, the chosen checkpoint's test score must equal
    its validation score, and the last checkpoint's test score the sweep's last row."""
    problems = str(user_files / "test.jsonl")
    config = write_config(
        tmp_path / "c.yaml", user_files, tmp_path / "ablation", max_steps=6, save_every=2, save_total_limit=10
    )
    argv = ["ablate", str(config), "--variants", "sft,neftune", "--seeds", "1", "--select-on", problems]
    assert main([*argv, "--test", problems]) == 0
    printed = capsys.readouterr().out
    root = tmp_path / "ablation"
    result = json.loads((root / "ablation.json").read_text())
    assert result["select_on"] == problems and result["validation_problems"] == result["test_problems"] > 0
    for row in result["variants"]:
        sweep = json.loads((root / row["variant"] / "seed-0" / "sweep" / "sweep.json").read_text())
        assert [r["step"] for r in sweep["rows"]] == [2, 4, 6]
        assert row["best_steps"] == [sweep["best"]["step"]]
        assert row["val_accuracies"] == [sweep["best"]["value"]]
        assert row["accuracies"] == row["val_accuracies"]
        last = sweep["rows"][-1]["metrics"]["test"]["exact_match_strict"]
        assert row["last_accuracies"] == [last]
        assert result["val_curves"][row["variant"]] == [
            [[r["step"], r["metrics"]["test"]["exact_match_strict"]] for r in sweep["rows"]]
        ]
    assert "neftune_alpha: 5.0" in (root / "neftune" / "seed-0" / "config.yaml").read_text()
    assert "neftune_alpha: null" in (root / "sft" / "seed-0" / "config.yaml").read_text()
    header = "| Model | Test exact match | Validation exact match | Best step | Test exact match, last checkpoint |"
    assert header in printed and "| NEFTune |" in printed
    assert (root / "ablation_curves.png").stat().st_size > 1000


def test_ablate_without_test_scores_validation_only(tmp_path, user_files, capsys):
    config = write_config(
        tmp_path / "c.yaml", user_files, tmp_path / "ablation", max_steps=4, save_every=2, save_total_limit=10
    )
    argv = ["ablate", str(config), "--variants", "sft", "--seeds", "1"]
    assert main([*argv, "--select-on", str(user_files / "test.jsonl")]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "ablation" / "ablation.json").read_text())
    (row,) = result["variants"]
    assert row["accuracies"] == [] and row["last_accuracies"] == [] and len(row["val_accuracies"]) == 1
    assert "no test split scored" in printed and "Test exact match" not in printed


def test_ablate_needs_test_or_validation_and_checkpoints_to_select(tmp_path, user_files, capsys):
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "ablation")
    assert main(["ablate", str(config), "--variants", "sft"]) == 2
    assert "give --test (held-out problems to score), --select-on, or both" in capsys.readouterr().err
    assert main(["ablate", str(config), "--variants", "sft", "--select-on", str(user_files / "test.jsonl")]) == 2
    assert "--select-on: train.save_every is not set" in capsys.readouterr().err
    assert not (tmp_path / "ablation").exists()
