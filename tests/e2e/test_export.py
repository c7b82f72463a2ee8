"""`lmforge export` on CPU: the demo model's bitsandbytes 8-bit (and 4-bit) copy loads with
plain transformers and writes the same greedy answers to held-out problems as the model it
came from; a LoRA run merged into full weights, cast to bf16, or copied as an adapter; and
each bad input as a one-line error that writes nothing."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.cli import main
from lmforge.data.conversation import Segment
from lmforge.data.formats import get_format
from lmforge.data.tokenize import wants_bos
from lmforge.demo.arithmetic import make_splits
from lmforge.demo.pipeline import DIFFICULTY, SIZES, run_demo
from lmforge.eval.answers import extract_strict_answer
from lmforge.eval.checkpoint import load_checkpoint
from lmforge.eval.generate import generate, stop_token_ids
from tests.e2e.conftest import write_config

# The full demo's model (Llama, hidden 128, 2 layers, 4 heads, MLP 512, BPE vocabulary 512:
# sizes bitsandbytes' 4-bit CPU kernel accepts) trained 40 steps instead of 1200: ~10 s on
# two cores. It has learnt the format and writes varied rationales, but few right answers.
DEMO = replace(SIZES["full"], n_train=1000, n_test=16, max_steps=40, global_batch_size=16, micro_batch_size=16)
DEMO_SEED = 0
HELD_OUT = 64


def _export(capsys, *argv: str) -> Path:
    capsys.readouterr()
    code = main(["export", *argv])
    err = capsys.readouterr().err
    assert code == 0, err
    output = Path(argv[argv.index("--output") + 1])
    # staging and scratch directories are gone; the parent holds the export alone
    assert [p.name for p in output.parent.iterdir()] == [output.name]
    return output


def _export_record(directory: Path) -> dict:
    meta = json.loads((directory / "lmforge.json").read_text())
    assert meta["prompt_format"]  # the run's own metadata travels with the export
    assert (directory / "README.md").read_text().startswith("---\n")  # a model card with front matter
    return meta


# ------------------------------------------------------------------ the demo model, quantized


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    """`lmforge demo`'s pipeline on the DEMO size: its run directory."""
    root = tmp_path_factory.mktemp("export-demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SIZES, "export-test", DEMO)
        run_demo(str(root / "demo"), size="export-test", seed=DEMO_SEED)
    return root / "demo" / "run"


@pytest.fixture(scope="module")
def held_out(demo_run) -> list[dict]:
    """HELD_OUT problems from the demo's own test stream (none appears in its training set)."""
    _, problems = make_splits(DEMO.n_train, HELD_OUT, DEMO_SEED, DIFFICULTY)
    demo_test = [json.loads(line) for line in (demo_run.parent / "inputs" / "test.jsonl").read_text().splitlines()]
    assert problems[: len(demo_test)] == demo_test
    return problems


def greedy_outputs(model, model_dir: Path, problems: list[dict]) -> list[str]:
    """Greedy continuations in the prompt format lmforge.json names, built as `lmforge
    generate` builds them: rationale, then '<|answer|>' and the answer."""
    meta = json.loads((model_dir / "lmforge.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt_format = get_format(meta["prompt_format"])
    prompts = [
        prompt_format.generation_prompt((Segment("user", p["question"]),), tokenizer, cot=meta["cot"]) for p in problems
    ]
    return generate(
        model,
        tokenizer,
        prompts,
        stop_token_ids(tokenizer, meta["stop_strings"]),
        max_new_tokens=64,
        batch_size=len(prompts),
        add_bos=wants_bos(tokenizer, prompt_format),
    )


@pytest.fixture(scope="module")
def unquantized_outputs(demo_run, held_out) -> list[str]:
    model_dir = demo_run / "model"
    outputs = greedy_outputs(AutoModelForCausalLM.from_pretrained(model_dir), model_dir, held_out)
    # agreement means little if the model wrote one string for every problem (measured: 47 distinct)
    assert len(set(outputs)) >= HELD_OUT // 4
    return outputs


# Measured (64 held-out problems; demo seeds 0-3, one and two CPU threads): the 8-bit copy
# writes the identical whole output (rationale and answer) for 0.92-0.98 of the problems and
# the identical final answer for 0.92-1.0; NF4 loses more (whole outputs 0.62-0.67, final
# answers 0.77-0.95), still far above the ~0 of a broken copy.
@pytest.mark.parametrize(
    "bits, layer, min_same_output, min_same_answer",
    [
        ("8bit", "Linear8bitLt", 0.85, 0.85),
        ("4bit", "Linear4bit", 0.5, 0.65),
    ],
)
def test_quantized_demo_model_answers_as_the_unquantized_one(
    demo_run, held_out, unquantized_outputs, tmp_path, capsys, bits, layer, min_same_output, min_same_answer
):
    output = _export(capsys, str(demo_run), "--output", str(tmp_path / f"demo-{bits}"), "--quantize", bits)
    assert _export_record(output)["export"] == {
        "source": str(demo_run),
        "merged": False,
        "adapter": False,
        "dtype": "float32",
        "quantize": bits,
    }
    assert json.loads((output / "config.json").read_text())["quantization_config"][f"load_in_{bits}"] is True

    model = AutoModelForCausalLM.from_pretrained(output)  # as is: no quantization_config passed
    linears = {
        name: type(module).__name__ for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)
    }
    assert linears.pop("lm_head") == "Linear"  # transformers keeps the output head unquantized
    assert set(linears.values()) == {layer}

    quantized = greedy_outputs(model, output, held_out)
    same_output = sum(a == b for a, b in zip(unquantized_outputs, quantized)) / HELD_OUT
    same_answer = (
        sum(extract_strict_answer(a) == extract_strict_answer(b) for a, b in zip(unquantized_outputs, quantized))
        / HELD_OUT
    )
    with capsys.disabled():
        print(
            f"\n[export {bits}] identical greedy outputs {same_output:.3f}, identical final answers "
            f"{same_answer:.3f} on {HELD_OUT} held-out problems"
        )
    assert same_output >= min_same_output and same_answer >= min_same_answer, (same_output, same_answer)


# ------------------------------------------------------------------ a LoRA run


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, user_files) -> Path:
    """A fresh tiny Llama with a LoRA adapter (the user tokenizer lacks the prompt format's
    tokens: their rows train with the adapter); lr high enough that the adapter matters."""
    root = tmp_path_factory.mktemp("export-lora")
    path = write_config(root / "config.yaml", user_files, root / "run", optimizer={"lr": 2e-2})
    config = yaml.safe_load(path.read_text())
    config["defaults"]["model"]["adapter"] = {"r": 8, "alpha": 16}
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def probe(lora_run) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(lora_run / "model")
    text = "<s><|user|>\nTom has 3 apples. He buys 4 more.\n<|rationale|>\n3 + 4 = 7.\n<|answer|>\n7</s>"
    return tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]  # (1, T)


@pytest.fixture(scope="module")
def adapter_logits(lora_run, probe) -> torch.Tensor:
    """The run as lmforge's evaluation loads it (base + adapter, merged in memory)."""
    with torch.no_grad():
        return load_checkpoint(lora_run).model(probe).logits  # (1, T, V)


def test_merged_export_loads_without_peft_and_matches_the_adapter_run(
    lora_run, probe, adapter_logits, tmp_path, capsys
):
    from peft import PeftModel

    from lmforge.models.adapters import adapter_base, resize_for

    output = _export(capsys, str(lora_run), "--output", str(tmp_path / "merged"), "--merge")
    meta = _export_record(output)
    assert "adapter" not in meta  # full weights: nothing for a loader to attach
    assert meta["export"] == {
        "source": str(lora_run),
        "merged": True,
        "adapter": False,
        "dtype": "float32",
        "quantize": None,
    }
    assert not (output / "adapter_config.json").exists() and not (output / "base").exists()

    model, info = AutoModelForCausalLM.from_pretrained(output, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not any("lora" in name for name, _ in model.named_modules())
    with torch.no_grad():
        merged = model(probe).logits
    torch.testing.assert_close(merged, adapter_logits, atol=1e-5, rtol=0)

    # the same against the adapter applied in the forward pass, not merged, and its base
    base = AutoModelForCausalLM.from_pretrained(adapter_base(lora_run / "model"))
    resize_for(base, len(AutoTokenizer.from_pretrained(output)))
    unmerged = PeftModel.from_pretrained(base, str(lora_run / "model"))
    with torch.no_grad():
        torch.testing.assert_close(merged, unmerged(probe).logits, atol=1e-5, rtol=0)
        with unmerged.disable_adapter():
            assert (merged - unmerged(probe).logits).abs().max() > 1e-2  # the adapter changed the model


def test_merged_export_in_bf16(lora_run, probe, adapter_logits, tmp_path, capsys):
    output = _export(capsys, str(lora_run), "--output", str(tmp_path / "bf16"), "--merge", "--dtype", "bf16")
    assert _export_record(output)["export"]["dtype"] == "bfloat16"
    with safe_open(str(output / "model.safetensors"), "pt") as weights:
        assert {weights.get_slice(name).get_dtype() for name in weights.keys()}  # noqa: SIM118 (safe_open has no __iter__) == {"BF16"}
    model = AutoModelForCausalLM.from_pretrained(output, dtype="auto")
    assert model.dtype == torch.bfloat16
    with torch.no_grad():
        logits = model(probe).logits.float()
    assert (logits.argmax(-1) == adapter_logits.argmax(-1)).float().mean() >= 0.9


def test_adapter_export_copies_the_adapter_and_its_fresh_base(lora_run, probe, adapter_logits, tmp_path, capsys):
    output = _export(capsys, str(lora_run), "--output", str(tmp_path / "adapter"))
    meta = _export_record(output)
    assert meta["adapter"] and meta["export"]["adapter"] is True and meta["export"]["merged"] is False
    for name in ("adapter_config.json", "adapter_model.safetensors", "base/config.json", "tokenizer.json"):
        assert (output / name).is_file(), name
    assert not (output / "training_args.bin").exists()
    loaded = load_checkpoint(output)
    assert Path(loaded.source.weights_dir) == output
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(probe).logits, adapter_logits, atol=1e-6, rtol=0)


def test_overwrite_replaces_a_previous_export(lora_run, tmp_path, capsys):
    output = _export(capsys, str(lora_run), "--output", str(tmp_path / "out"))
    assert (output / "adapter_config.json").is_file()
    _export(capsys, str(lora_run), "--output", str(output), "--merge", "--overwrite")
    assert (output / "model.safetensors").is_file() and not (output / "adapter_config.json").exists()


# ------------------------------------------------------------------ bad input


def _refused(capsys, argv: list[str]) -> str:
    """The one-line message of an export that must fail with exit code 2, leaving no staging."""
    capsys.readouterr()
    code = main(["export", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    output = Path(argv[argv.index("--output") + 1])
    assert not output.with_name(output.name + ".tmp").exists()
    assert not list(output.parent.glob(".export-*"))
    return lines[0]


def test_merge_needs_an_adapter(demo_run, tmp_path, capsys):
    message = _refused(capsys, [str(demo_run), "--output", str(tmp_path / "out"), "--merge"])
    assert "--merge" in message and "has no adapter to merge" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("status", ["running", "failed"])
def test_an_unfinished_run_is_refused(lora_run, tmp_path, capsys, status):
    run = tmp_path / "run"
    shutil.copytree(lora_run, run)
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "status": status}))
    message = _refused(capsys, [str(run), "--output", str(tmp_path / "out")])
    assert f"the run is {status}; an export needs a finished run" in message
    assert not (tmp_path / "out").exists()


def test_a_directory_that_is_not_a_run_is_refused(user_files, tmp_path, capsys):
    message = _refused(capsys, [str(user_files), "--output", str(tmp_path / "out")])
    assert "not an lmforge run directory (no run.json)" in message
    assert not (tmp_path / "out").exists()


def test_quantizing_an_adapter_needs_merge(lora_run, tmp_path, capsys):
    message = _refused(capsys, [str(lora_run), "--output", str(tmp_path / "out"), "--quantize", "8bit"])
    assert "--quantize" in message and "add --merge" in message
    assert not (tmp_path / "out").exists()


def test_a_non_empty_output_needs_overwrite(lora_run, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    message = _refused(capsys, [str(lora_run), "--output", str(tmp_path / "out")])
    assert "exists and is not empty; pass --overwrite" in message
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_overwrite_never_deletes_a_directory_that_is_not_an_export(lora_run, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    message = _refused(capsys, [str(lora_run), "--output", str(tmp_path / "out"), "--overwrite"])
    assert "is not an lmforge export" in message
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_output_that_is_a_file_is_refused(lora_run, tmp_path, capsys):
    (tmp_path / "out").write_text("mine")
    message = _refused(capsys, [str(lora_run), "--output", str(tmp_path / "out"), "--overwrite"])
    assert "is a file" in message
    assert (tmp_path / "out").read_text() == "mine"


@pytest.mark.parametrize("where", ["export", "."])
def test_output_inside_the_run_directory_is_refused(lora_run, capsys, where):
    before = sorted(p.relative_to(lora_run) for p in lora_run.rglob("*"))
    message = _refused(capsys, [str(lora_run), "--output", str(lora_run / where)])
    assert "lies inside the run directory" in message
    assert sorted(p.relative_to(lora_run) for p in lora_run.rglob("*")) == before


def test_quantize_without_bitsandbytes(demo_run, tmp_path, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else find_spec(name, *a)
    )
    message = _refused(capsys, [str(demo_run), "--output", str(tmp_path / "out"), "--quantize", "8bit"])
    assert "--quantize: needs bitsandbytes, which is not installed (pip install 'lmforge[qlora]')" in message
    assert not (tmp_path / "out").exists()


def test_output_in_a_directory_that_does_not_exist_yet(demo_run, tmp_path, capsys):
    output = _export(capsys, str(demo_run), "--output", str(tmp_path / "new" / "deeper" / "out"), "--quantize", "8bit")
    assert (output / "model.safetensors").is_file()
