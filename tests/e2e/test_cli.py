"""CPU end-to-end runs of the CLI on a tiny model, and each bad input the CLI must turn
into a one-line error with exit code 2."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.cli import main
from tests.e2e.conftest import write_config


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, user_files):
    root = tmp_path_factory.mktemp("cli")
    config = write_config(root / "config.yaml", user_files, root / "run", eval_every=2, save_every=2)
    assert main(["train", str(config)]) == 0
    return root / "run"


def test_train_writes_a_complete_run_directory(trained_run):
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "loss_curve.png",
        "run.json",
        "model/model.safetensors",
        "model/tokenizer.json",
        "model/lmforge.json",
    ):
        assert (trained_run / name).is_file(), name
    run = json.loads((trained_run / "run.json").read_text())
    assert run["status"] == "finished" and run["global_step"] == 4
    assert {"torch", "transformers", "lmforge"} <= run["versions"].keys()
    assert len(next(iter(run["data_sha256"].values()))) == 64
    assert run["final_metrics"]["eval_perplexity"] == pytest.approx(
        float(torch.tensor(run["final_metrics"]["eval_loss"]).exp()), rel=1e-6
    )
    rows = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    assert any("eval_loss" in r for r in rows)
    assert sorted(p.name for p in trained_run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    resolved = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert resolved["train"]["max_steps"] == 4 and resolved["data"]["prompt_format"] == "remask"


def test_saved_model_loads_and_generates_with_plain_transformers(trained_run):
    model_dir = trained_run / "model"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert "<|rationale|>" in tokenizer.get_vocab() and len(tokenizer) == model.get_input_embeddings().num_embeddings
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Tom has 3 apples."}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<|user|>\nTom has 3 apples.\n<|rationale|>\n"  # CoT-trained: rationale first
    ids = tokenizer(tokenizer.bos_token + prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert tokenizer.eos_token_id in model.generation_config.eos_token_id


def test_generate_command_uses_the_models_prompt_format(trained_run, capsys):
    model_dir = trained_run / "model"
    assert main(["generate", str(model_dir), "--prompt", "Tom has 3 apples.", "--max-new-tokens", "6"]) == 0
    printed = capsys.readouterr().out.strip()
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = tokenizer("<s><|user|>\nTom has 3 apples.\n<|rationale|>\n", return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=6, do_sample=False)[0, ids["input_ids"].shape[1] :].tolist()
    stops = set(model.generation_config.eos_token_id)
    out = out[: next((i for i, t in enumerate(out) if t in stops), len(out))]
    assert printed == tokenizer.decode(out, skip_special_tokens=False).strip()


def test_config_show_prints_the_resolved_config(tmp_path, user_files, capsys):
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run")
    assert main(["config", "show", str(config), "defaults", "--set", "train.optimizer.lr=0.5"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["optimizer"]["lr"] == 0.5
    assert shown["train"]["objective"] == {"name": "ce"}


def test_config_show_with_a_missing_tokenizer_prints_no_half_config(tmp_path, capsys):
    # the parameter count of a fresh model needs its tokenizer: the error comes before any output
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"preset": "palm-150m", "tokenizer": str(tmp_path / "none")}}))
    assert main(["config", "show", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip().endswith("does not exist") and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- bad input


def _error(capsys, argv) -> str:
    capsys.readouterr()  # forget what earlier commands printed
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _config_with_data(tmp_path, user_files, data_path, **data):
    path = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run")
    config = yaml.safe_load(path.read_text())
    config["defaults"]["data"]["datasets"] = [{"path": str(data_path), "val_split": 0.0}]
    config["defaults"]["data"].update(data)
    path.write_text(yaml.safe_dump(config))
    return path


def test_missing_data_file(tmp_path, user_files, capsys):
    config = _config_with_data(tmp_path, user_files, tmp_path / "nope.jsonl")
    assert "nope.jsonl: data file not found" in _error(capsys, ["train", str(config)])
    assert not (tmp_path / "run" / "model").exists()


def test_malformed_json_line_reports_file_and_line(tmp_path, user_files, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"question": "a", "rationale": "b", "answer": "1"}\n\n{"question": "a", "rationale"\n')
    message = _error(capsys, ["train", str(_config_with_data(tmp_path, user_files, data))])
    assert f"{data}:3: truncated record: the line ends before the JSON object is complete" in message


def test_record_missing_fields_names_them(tmp_path, user_files, capsys):
    data = tmp_path / "missing.jsonl"
    data.write_text('{"question": "a", "rationale": "b", "answer": "1"}\n{"question": "a", "rationale": "b"}\n')
    message = _error(capsys, ["train", str(_config_with_data(tmp_path, user_files, data))])
    assert f"{data}:2" in message and "'answer'" in message


def test_empty_dataset_after_filtering(tmp_path, user_files, capsys):
    config = _config_with_data(tmp_path, user_files, user_files / "train.jsonl", max_length=10)
    message = _error(capsys, ["train", str(config)])
    assert "data.datasets[0]" in message and "no training examples left" in message and "too_long" in message


def test_finished_run_is_not_overwritten_without_asking(tmp_path, user_files, capsys):
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run", max_steps=1)
    assert main(["train", str(config)]) == 0
    weights = (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
    assert "holds a finished run; pass --overwrite" in _error(capsys, ["train", str(config)])
    assert (tmp_path / "run" / "model" / "model.safetensors").read_bytes() == weights
    assert main(["train", str(config), "--overwrite", "--set", "run.seed=8"]) == 0


def test_output_dir_that_is_not_a_run_is_never_deleted(tmp_path, user_files, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "precious.txt").write_text("keep me")
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run", max_steps=1)
    assert "is not an lmforge run" in _error(capsys, ["train", str(config), "--overwrite"])
    assert (tmp_path / "run" / "precious.txt").read_text() == "keep me"


def test_model_path_that_does_not_exist(tmp_path, user_files, capsys):
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run")
    message = _error(capsys, ["train", str(config), "--set", f"model.name_or_path={tmp_path}/no-model"])
    assert "model.name_or_path" in message and "does not exist" in message


def test_unknown_config_key(tmp_path, user_files, capsys):
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run")
    message = _error(capsys, ["train", str(config), "--set", "train.lr=1"])
    assert "unknown key 'train.lr'" in message


def test_generate_on_a_directory_without_weights(tmp_path, user_files, capsys):
    message = _error(capsys, ["generate", str(user_files / "tokenizer"), "--prompt", "hi"])
    assert "holds no model weights" in message


def test_debug_shows_the_traceback(tmp_path, user_files):
    config = _config_with_data(tmp_path, user_files, tmp_path / "nope.jsonl")
    with pytest.raises(Exception, match="data file not found"):
        main(["--debug", "train", str(config)])


def test_generate_accepts_a_finished_run_directory(trained_run, capsys):
    assert main(["generate", str(trained_run), "--prompt", "Tom has 3 apples.", "--max-new-tokens", "4"]) == 0


def test_generate_refuses_an_unfinished_run(tmp_path, user_files, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"status": "running"}')
    assert "the run is running, it has no final model yet" in _error(capsys, ["generate", str(run), "--prompt", "x"])


def test_schedule_plot_writes_a_png(tmp_path, user_files, capsys):
    config = write_config(
        tmp_path / "c.yaml",
        user_files,
        tmp_path / "run",
        max_steps=40,
        schedule={"name": "one_cycle", "warmup_ratio": 0.3},
    )
    out = tmp_path / "lr.png"
    assert main(["schedule", "plot", str(config), "--output", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert "one_cycle schedule, peak lr 0.003, 40 steps" in capsys.readouterr().out


def test_schedule_plot_estimates_steps_from_the_data(tmp_path, user_files, capsys):
    # 160 records, val_split 0.1 -> 144 train examples / global batch 8 = 18 steps per epoch
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run", max_steps=None, epochs=2)
    assert main(["schedule", "plot", str(config), "--output", str(tmp_path / "lr.png")]) == 0
    assert "36 steps" in capsys.readouterr().out


def test_impossible_schedule_is_a_config_error(tmp_path, user_files, capsys):
    config = write_config(
        tmp_path / "c.yaml",
        user_files,
        tmp_path / "run",
        max_steps=10,
        schedule={"name": "wsd", "warmup_ratio": 0.5, "decay_ratio": 0.6},
    )
    assert "train.schedule: wsd: 5 warmup + 6 decay steps exceed 10 total steps" in _error(
        capsys, ["schedule", "plot", str(config), "--output", str(tmp_path / "lr.png")]
    )
    assert "train.schedule: wsd" in _error(capsys, ["train", str(config)])
