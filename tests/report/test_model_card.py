"""The model card of a tiny CPU run: front matter parsed back and checked against what the
run holds, the body's sections and numbers, export cards, eval records in model-index, the
one-line error of an unfinished run, and `lmforge eval` refreshing the card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from lmforge import rundir
from lmforge.cli import main
from lmforge.errors import LmforgeError
from lmforge.report.model_card import model_card, write_model_card
from tests.e2e.conftest import user_files, write_config  # noqa: F401 (fixture re-exported)


@pytest.fixture(scope="module")
def run(tmp_path_factory, user_files) -> Path:  # noqa: F811 (user_files is the e2e fixture)
    """4 steps of MixCE (ratio 0.5) with 1 warmup step, NEFTune alpha 5 and card metadata."""
    root = tmp_path_factory.mktemp("card")
    path = write_config(
        root / "config.yaml",
        user_files,
        root / "tiny-run",
        eval_every=2,
        objective={"name": "mixce", "ratio": 0.5},
        schedule={"warmup_steps": 1},
        neftune_alpha=5.0,
    )
    config = yaml.safe_load(path.read_text())
    config["defaults"]["run"]["card"] = {
        "license": "apache-2.0",
        "language": ["en"],
        "tags": ["arithmetic"],
        "model_name": "tiny-arith",
    }
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    return root / "tiny-run"


def parse(card: str) -> tuple[dict, str]:
    """(front matter, body) of a README.md."""
    assert card.startswith("---\n")
    end = card.index("\n---\n", 4)
    return yaml.safe_load(card[4:end]), card[end + 5 :]


def copy_run(run: Path, tmp_path: Path) -> Path:
    copied = tmp_path / "tiny-run"
    shutil.copytree(run, copied)
    return copied


def edit_config(run_dir: Path, edit) -> None:
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    edit(config)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))


def test_front_matter_holds_what_the_run_holds(run):
    matter, _ = parse(model_card(run))
    final = json.loads((run / "run.json").read_text())["final_metrics"]
    assert matter["license"] == "apache-2.0" and matter["language"] == ["en"]
    assert "base_model" not in matter  # a freshly built model has no base
    assert matter["library_name"] == "transformers" and matter["pipeline_tag"] == "text-generation"
    assert matter["datasets"] == ["train.jsonl"]  # a local file: its name, not its path
    assert matter["tags"] == ["lmforge", "mixce", "arithmetic"]
    [entry] = matter["model-index"]
    assert entry["name"] == "tiny-arith"
    [result] = entry["results"]
    assert result["task"] == {"type": "text-generation", "name": "Text Generation"}
    assert result["dataset"] == {
        "name": "validation split of the training data",
        "type": "train.jsonl",
        "split": "validation",
    }
    assert result["metrics"] == [
        {"type": "loss", "value": round(final["eval_loss"], 4), "name": "loss (validation)"},
        {"type": "perplexity", "value": round(final["eval_perplexity"], 4), "name": "perplexity (validation)"},
    ]


def test_body_tells_the_procedure_with_the_runs_numbers(run):
    _, body = parse(model_card(run))
    sections = [line for line in body.splitlines() if line.startswith("#")]
    assert sections == [
        "# tiny-arith",
        "## Training data",
        "## Training procedure",
        "## Prompt format",
        "## Evaluation",
        "## Loss curve",
        "## How to use",
        "## Training config",
    ]
    # 160 records, val_split 0.1: 16 validation, 144 train
    assert "160 records → 160 examples; 144 train / 16 validation / 0 test; dropped: none" in body
    for line in (
        "- Objective: MixCE",
        "- MixCE ratio (eta): 0.5",
        "- Learning rate: 0.003",
        "- Learning rate schedule: cosine (min_lr_ratio 0), warmup 1 step",
        # global 8 = micro 4 x 1 process x 2 accumulation steps
        "- Batch size: 4 per process × 1 process, accumulated to 8 (2 accumulation steps)",
        "- Training sequence length: 160 tokens (longer examples dropped)",
        "- Steps: max_steps 4 (4 optimizer steps",
        "- NEFTune noise: alpha 5",
        "- Seed: 7",
        "- Hardware: 1 process; python ",
        "- Wall time: ",
    ):
        assert f"\n{line}" in body, line
    # CoT data: the saved model answers rationale first, in the remask tags
    assert "<|user|>\n[instruction]\n<|rationale|>\n[reasoning]\n<|answer|>\n[answer]\n</s>" in body
    assert "| validation split, end of training | validation |  | loss |" in body
    assert "![loss curve](loss_curve.png)" in body
    assert "AutoModelForCausalLM.from_pretrained(path)" in body and "peft" not in body


def test_adapter_run_names_its_hub_base_and_loads_with_peft(run, tmp_path):
    run_dir = copy_run(run, tmp_path)

    def adapter(config):
        config["model"].update(
            name_or_path="EleutherAI/pythia-70m",
            quantization={"bits": 4, "type": "nf4", "double_quant": True, "compute_dtype": "bf16"},
            adapter={
                "type": "lora",
                "r": 16,
                "alpha": 32.0,
                "dropout": 0.05,
                "target_modules": ["q_proj", "v_proj"],
                "rslora": False,
                "modules_to_save": ["lm_head"],
            },
        )

    edit_config(run_dir, adapter)
    matter, body = parse(model_card(run_dir))
    assert matter["base_model"] == "EleutherAI/pythia-70m" and matter["library_name"] == "peft"
    assert matter["tags"] == ["lmforge", "mixce", "lora", "qlora", "4-bit", "bitsandbytes", "arithmetic"]
    assert "a LoRA adapter (rank 16) for [EleutherAI/pythia-70m](https://huggingface.co/EleutherAI/pythia-70m)" in body
    # scale alpha / r = 32 / 16 = 2
    assert "- Adapter: LoRA, r 16, alpha 32 (update scale alpha/r = 2), dropout 0.05, on q_proj, v_proj" in body
    assert "- Trained in full and saved with the adapter: lm_head" in body
    assert "- Base quantization (QLoRA): 4-bit NF4, double quantization, bf16 compute (bitsandbytes)" in body
    assert 'base = AutoModelForCausalLM.from_pretrained("EleutherAI/pythia-70m")' in body
    assert "model = PeftModel.from_pretrained(base, path)" in body

    edit_config(run_dir, lambda config: config["model"]["adapter"].update(rslora=True))
    # rank-stabilized: alpha / sqrt(r) = 32 / 4 = 8
    assert "(update scale alpha/sqrt(r) = 8 (rank-stabilized))" in model_card(run_dir)

    merged, body = parse(model_card(run_dir, {"merged": True, "dtype": "bf16", "source": str(run_dir)}))
    assert merged["library_name"] == "transformers" and "PeftModel" not in body
    assert "- The adapter merged into the base weights: a plain transformers model, no peft needed" in body


def test_export_card_says_what_the_export_is_and_links_its_curve(run, tmp_path):
    export = {"merged": True, "dtype": "bf16", "quantize": "8bit", "source": str(run)}
    card = write_model_card(run, tmp_path / "export", export)
    assert card == tmp_path / "export" / "README.md"
    assert sorted(p.name for p in card.parent.iterdir()) == ["README.md", "loss_curve.png"]  # no .tmp left
    assert (card.parent / "loss_curve.png").read_bytes() == (run / "loss_curve.png").read_bytes()
    matter, body = parse(card.read_text())
    assert matter["tags"] == ["lmforge", "mixce", "8-bit", "bitsandbytes", "arithmetic"]
    assert matter["library_name"] == "transformers"
    assert "This folder is an export of that run" in body
    assert f"- Exported from the run `{run}`" in body and "- Weights saved in bf16" in body
    assert "- Quantized to 8-bit (LLM.int8()) with bitsandbytes" in body
    assert "model = AutoModelForCausalLM.from_pretrained(path)  # bitsandbytes weights" in body


def test_eval_records_join_model_index_and_the_table(run, tmp_path):
    run_dir = copy_run(run, tmp_path)
    task = {
        "name": "gsm8k",
        "kind": "generate",
        "source": "gsm8k",
        "shots": 5,
        "prompt_format": "remask",
        "metrics": {"exact_match_strict": 0.25, "exact_match_strict_stderr": 0.1, "n": 8},
    }
    (run_dir / "eval").mkdir()
    (run_dir / "eval" / "final.json").write_text(json.dumps({"model": {"step": None}, "tasks": [task]}))
    (run_dir / "eval" / "ckpt.json").write_text(json.dumps({"model": {"step": 2}, "tasks": [task]}))
    edit_config(
        run_dir,
        lambda config: config["train"].update(eval_tasks=[{"task": "/data/arith.jsonl", "every": 2, "shots": 0}]),
    )
    with (run_dir / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps({"step": 4, "loss": 1.0, "eval_arith_exact_match_strict": 0.5}) + "\n")
    matter, body = parse(model_card(run_dir))
    _, gsm8k = matter["model-index"][0]["results"]  # the checkpoint's record is not this model
    assert gsm8k == {
        "task": {"type": "text-generation", "name": "Text Generation"},
        "dataset": {
            "name": "gsm8k",
            "type": "openai/gsm8k",
            "config": "main",
            "split": "test",
            "args": {"num_few_shot": 5},
        },
        "metrics": [{"type": "exact_match_strict", "value": 0.25, "name": "exact_match_strict (gsm8k, 5-shot)"}],
    }
    assert "| during training, step 4 | arith | 0 | exact_match_strict | 50.00% |" in body
    assert "| lmforge eval (final.json) | gsm8k | 5 | exact_match_strict | 25.00% ± 10.00% |" in body
    assert "| lmforge eval (ckpt.json, checkpoint step 2) | gsm8k | 5 | exact_match_strict | 25.00% ± 10.00% |" in body


def test_missing_optional_files_leave_their_sections_out(run, tmp_path):
    run_dir = copy_run(run, tmp_path)
    for name in ("config.yaml", "metrics.jsonl", "loss_curve.png", "model/lmforge.json"):
        (run_dir / name).unlink()
    matter, body = parse(model_card(run_dir))
    assert matter["license"] == "other" and matter["datasets"] == ["train.jsonl"]  # from run.json's reports
    assert matter["tags"] == ["lmforge", "ce"]
    assert "## Loss curve" not in body and "## Prompt format" not in body and "## Training config" not in body
    assert "144 train / 16 validation" in body and "- Wall time: " in body


def test_an_unfinished_run_is_a_one_line_error(run, tmp_path):
    run_dir = copy_run(run, tmp_path)
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**record, "status": "running"}))
    with pytest.raises(LmforgeError) as error:
        model_card(run_dir)
    assert str(error.value) == f"{run_dir}: the run is running; a model card needs a finished run"
    with pytest.raises(LmforgeError, match="not an lmforge run directory"):
        write_model_card(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_lmforge_eval_keeps_results_in_the_run_and_refreshes_its_card(run, tmp_path, capsys):
    run_dir = copy_run(run, tmp_path)
    task = tmp_path / "sums.jsonl"
    task.write_text("".join(json.dumps({"text": f"{a} plus {a} is {2 * a}."}) + "\n" for a in range(4)))
    output = tmp_path / "results" / "sums.json"
    assert main(["eval", str(run_dir / "model"), "--task", str(task), "--output", str(output)]) == 0
    record = json.loads(output.read_text())
    assert json.loads((run_dir / "eval" / "sums.json").read_text()) == record
    matter, body = parse((run_dir / "model" / "README.md").read_text())
    sums = matter["model-index"][0]["results"][1]
    assert sums["dataset"] == {"name": "sums", "type": "sums"}
    perplexity = record["tasks"][0]["metrics"]["perplexity"]
    assert {"type": "perplexity", "value": round(perplexity, 4), "name": "perplexity (sums)"} in sums["metrics"]
    assert "| lmforge eval (sums.json) | sums | 0 | perplexity |" in body
    assert (run_dir / "model" / "loss_curve.png").is_file()
    assert "model card updated" in capsys.readouterr().out
    assert json.loads((run_dir / "model" / "lmforge.json").read_text())["evals"]["sums.json"] == record


def test_the_final_model_says_how_it_was_made(run):
    meta = json.loads((run / "model" / "lmforge.json").read_text())
    record = json.loads((run / "run.json").read_text())
    assert meta["prompt_format"] == "remask" and meta["stop_strings"] and meta["cot"] is True  # kept as before
    assert meta["run_name"] == "tiny-run"
    assert meta["run"] == record and meta["run"]["status"] == "finished"
    assert meta["run"]["versions"] == rundir.library_versions() and "git_hash" in meta["run"]
    assert meta["run"]["data_sha256"] and meta["run"]["final_metrics"]["eval_loss"] > 0
    assert meta["config"] == yaml.safe_load((run / "config.yaml").read_text())
    assert meta["config"]["train"]["objective"] == {"name": "mixce", "ratio": 0.5}
    assert [row["step"] for row in meta["training_evals"]] == [2, 4, 4]  # eval_every 2 of 4 steps, then the final
    assert meta["evals"] == {}


def test_the_card_is_made_again_from_the_model_directory_alone(run, tmp_path, capsys):
    from lmforge.eval.cli import keep_in_run
    from lmforge.report.model_card import main as card_main

    run_dir = copy_run(run, tmp_path)
    task = {
        "name": "gsm8k",
        "kind": "generate",
        "source": "gsm8k",
        "shots": 5,
        "prompt_format": "remask",
        "metrics": {"exact_match_strict": 0.25, "exact_match_strict_stderr": 0.1, "n": 8},
    }
    record = {"model": {"step": None}, "tasks": [task]}
    keep_in_run(run_dir / "model", tmp_path / "elsewhere" / "final.json", record)  # as `lmforge eval` does
    assert json.loads((run_dir / "model" / "lmforge.json").read_text())["evals"] == {"final.json": record}
    in_run = (run_dir / "model" / "README.md").read_text()
    assert in_run == model_card(run_dir)
    copied = tmp_path / "shipped" / "my-model"
    shutil.copytree(run_dir / "model", copied)
    shutil.rmtree(run_dir)
    (copied / "README.md").unlink()
    assert card_main([str(copied)]) == 0
    again = (copied / "README.md").read_text()
    matter, body = parse(again)
    assert matter["tags"] == ["lmforge", "mixce", "arithmetic"] and "- Objective: MixCE" in body
    digest = next(iter(json.loads((copied / "lmforge.json").read_text())["run"]["data_sha256"].values()))
    assert f"sha256 `{digest[:12]}…`" in body
    assert f"transformers {rundir.library_versions()['transformers']}" in body
    assert "| lmforge eval (final.json) | gsm8k | 5 | exact_match_strict | 25.00% ± 10.00% |" in body
    assert "## Training config" in body and "## Loss curve" in body
    assert again == in_run  # the same card, fact for fact and byte for byte


def test_a_model_directory_without_its_run_record_is_a_one_line_error(run, tmp_path):
    copied = tmp_path / "model"
    shutil.copytree(run / "model", copied)
    meta = json.loads((copied / "lmforge.json").read_text())
    (copied / "lmforge.json").write_text(json.dumps({k: meta[k] for k in ("prompt_format", "cot", "stop_strings")}))
    with pytest.raises(LmforgeError, match="not an lmforge run directory"):
        model_card(copied)
