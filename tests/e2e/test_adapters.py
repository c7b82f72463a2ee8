"""Adapter runs end to end on a tiny model: LoRA, DoRA and QLoRA (4- and 8-bit) with the
objectives, NEFTune, gradient checkpointing and frozen embeddings plus added tokens; the
saved adapter reloads to the trained model's exact outputs; exact resume; sweep, eval and
bootstrap accept adapter runs; the bad inputs."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import TrainerCallback

from lmforge.cli import main
from lmforge.config import load_config
from lmforge.eval.checkpoint import load_checkpoint
from lmforge.train.pipeline import run_training
from lmforge.rundir import read_run
from tests.e2e.conftest import write_config
from tests.e2e.test_resume import Interrupt

LORA = {"r": 4, "alpha": 8}
QLORA4 = {"bits": 4, "type": "nf4", "double_quant": True, "compute_dtype": "fp32"}
PROBE = [[1, 5, 9, 13, 17, 21]]


def adapter_config(tmp_path, user_files, name, adapter, quantization=None, model=None, **train):
    path = write_config(tmp_path / f"{name}.yaml", user_files, tmp_path / name, **train)
    config = yaml.safe_load(path.read_text())
    config["defaults"]["model"].update(adapter=adapter, quantization=quantization, **(model or {}))
    # bitsandbytes' 4-bit CPU kernel wants output sizes divisible by 32 and input sizes by 64
    config["defaults"]["model"]["size"].update(hidden_size=64, intermediate_size=128)
    path.write_text(yaml.safe_dump(config))
    return path


class KeepModel(TrainerCallback):
    """The trained model's logits on a probe, at the end of training."""

    def on_train_end(self, args, state, control, model=None, **kwargs):
        model.eval()
        with torch.no_grad():
            self.logits = model(input_ids=torch.tensor(PROBE)).logits.float()


CASES = {
    "lora-ce-checkpointing-frozen": dict(
        adapter=LORA, model={"freeze_embeddings": True}, train={"gradient_checkpointing": True}
    ),
    "dora-mixce": dict(adapter={**LORA, "type": "dora"}, train={"objective": {"name": "mixce", "ratio": 0.75}}),
    "qlora4-remask_cot-neftune-checkpointing": dict(
        adapter={**LORA, "rslora": True},
        quantization=QLORA4,
        train={"objective": {"name": "remask_cot"}, "neftune_alpha": 5.0, "gradient_checkpointing": True},
    ),
    "qlora8-remask": dict(
        adapter={**LORA, "target_modules": ["q_proj", "v_proj"]},
        quantization={"bits": 8},
        train={"objective": {"name": "remask", "fused": False}},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_adapter_run_trains_saves_and_reloads_exactly(tmp_path, user_files, case, capsys):
    spec = CASES[case]
    path = adapter_config(
        tmp_path,
        user_files,
        "run",
        spec["adapter"],
        spec.get("quantization"),
        spec.get("model"),
        max_steps=4,
        **spec["train"],
    )
    keep = KeepModel()
    result = run_training(load_config(path), extra_callbacks=[keep])
    out = capsys.readouterr().out
    assert "parameters train (" in out and "update scale" in out
    run = read_run(result.run_dir)
    assert run["status"] == "finished" and run["adapter"]["r"] == 4
    assert run["added_tokens"]  # the remask format's tokens: their rows train with the adapter
    model_dir = result.model_dir
    assert (model_dir / "adapter_config.json").is_file() and not (model_dir / "model.safetensors").exists()
    adapter = load_file(model_dir / "adapter_model.safetensors")
    base = load_file(model_dir / "base" / "model.safetensors")  # the fresh base travels with the model
    assert sum(t.numel() for t in adapter.values()) < sum(t.numel() for t in base.values()) / 2
    assert any("trainable_tokens" in key for key in adapter)
    meta = json.loads((model_dir / "lmforge.json").read_text())
    assert meta["adapter"]["quantization"] == (
        None if "quantization" not in spec else load_config(path).model.quantization.model_dump()
    )
    # the saved adapter, loaded onto its base (quantized as in training), is the trained model
    loaded = load_checkpoint(result.run_dir)
    with torch.no_grad():
        logits = loaded.model(input_ids=torch.tensor(PROBE)).logits.float()
    tolerance = 1e-5 if "quantization" not in spec else 1e-4  # a merged LoRA sums in another order
    torch.testing.assert_close(logits, keep.logits, atol=tolerance, rtol=tolerance)
    assert loaded.tokenizer.convert_tokens_to_ids("<|rationale|>") in run["added_tokens"]


def test_adapter_resume_is_exact(tmp_path, user_files):
    train = {
        "max_steps": 8,
        "save_every": 4,
        "objective": {"name": "remask_cot"},
        "neftune_alpha": 10.0,
        "schedule": {"name": "cosine", "warmup_ratio": 0.25},
    }
    straight = load_config(adapter_config(tmp_path, user_files, "straight", {**LORA, "type": "dora"}, **train))
    run_training(straight)
    resumed = load_config(adapter_config(tmp_path, user_files, "resumed", {**LORA, "type": "dora"}, **train))
    with pytest.raises(KeyboardInterrupt):
        run_training(resumed, extra_callbacks=[Interrupt(at_step=4)])
    checkpoint = tmp_path / "resumed" / "checkpoint-4"
    assert (checkpoint / "adapter_model.safetensors").is_file() and not (checkpoint / "model.safetensors").exists()
    run_training(resumed, resume=True)
    a = load_file(tmp_path / "straight" / "model" / "adapter_model.safetensors")
    b = load_file(tmp_path / "resumed" / "model" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=1e-6, msg=name)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, user_files):
    root = tmp_path_factory.mktemp("lora")
    path = adapter_config(root, user_files, "run", LORA, max_steps=4, save_every=2)
    assert main(["train", str(path)]) == 0
    return root / "run"


def test_sweep_and_eval_take_adapter_checkpoints(lora_run, user_files, capsys):
    assert (
        main(
            [
                "sweep",
                str(lora_run),
                "--task",
                str(user_files / "test.jsonl"),
                "--limit",
                "4",
                "--max-new-tokens",
                "8",
                "--copy-best",
            ]
        )
        == 0
    )
    report = json.loads((lora_run / "sweep" / "sweep.json").read_text())
    assert [row["step"] for row in report["rows"]] == [2, 4]
    best = lora_run / "best"
    assert (best / "adapter_config.json").is_file()
    moved = lora_run.parent / "moved-best"
    best.rename(moved)  # a self-contained model directory: it holds its fresh base
    assert (moved / "base" / "model.safetensors").is_file()
    assert load_checkpoint(moved).model is not None
    output = lora_run.parent / "eval.json"
    assert (
        main(
            [
                "eval",
                str(lora_run / "checkpoint-2"),
                "--task",
                str(user_files / "test.jsonl"),
                "--limit",
                "2",
                "--max-new-tokens",
                "8",
                "--output",
                str(output),
            ]
        )
        == 0
    )
    assert json.loads(output.read_text())["tasks"][0]["metrics"]["n"] == 2


def test_bootstrap_keeps_training_the_adapter(tmp_path, user_files, lora_run):
    from tests.e2e.test_bootstrap import _bootstrap_config

    path = _bootstrap_config(tmp_path, user_files, lora_run / "model", "boot", rounds=2)
    config = yaml.safe_load(path.read_text())
    config["defaults"]["model"] = {"name_or_path": str(lora_run / "model")}
    path.write_text(yaml.safe_dump(config))
    assert main(["bootstrap", str(path)]) == 0
    start = load_file(lora_run / "model" / "adapter_model.safetensors")
    for round_index in (1, 2):
        model_dir = tmp_path / "boot" / f"round-{round_index}" / "train" / "model"
        settings = json.loads((model_dir / "adapter_config.json").read_text())
        assert settings["r"] == 4 and settings["lora_alpha"] == 8
        trained = load_file(model_dir / "adapter_model.safetensors")
        assert trained.keys() == start.keys()
        assert any(not torch.equal(trained[k], start[k]) for k in start)
        # every round's adapter sits on the fresh base that travels with the starting model
        assert json.loads((model_dir / "lmforge.json").read_text())["adapter"]["base"] == str(
            lora_run / "model" / "base"
        )


def test_an_adapter_model_refuses_a_second_adapter(tmp_path, user_files, lora_run, capsys):
    path = adapter_config(tmp_path, user_files, "again", LORA, model={"name_or_path": str(lora_run / "model")})
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmforge: error: model.adapter:") and "already holds an adapter" in err
    assert "\n" not in err


@pytest.mark.parametrize(
    "adapter, quantization, size, message",
    [
        (
            {**LORA, "target_modules": ["q_proj", "query"]},
            None,
            {},
            "model.adapter.target_modules: 'query' matches no module of LlamaForCausalLM; its linear layers are down_proj",
        ),
        (
            LORA,
            QLORA4,
            {"intermediate_size": 40},
            "model.quantization: bitsandbytes' 4-bit CPU kernel needs output sizes divisible by 32 and input sizes by 64, "
            "but model.layers.0.mlp.gate_proj is 64 -> 40",
        ),
        (None, QLORA4, {}, "quantization: a quantized base trains only through an adapter"),
    ],
    ids=["target-matches-nothing", "4bit-shape", "quantization-without-adapter"],
)
def test_bad_adapter_configs_are_one_line_errors(tmp_path, user_files, capsys, adapter, quantization, size, message):
    path = adapter_config(tmp_path, user_files, "bad", adapter, quantization)
    config = yaml.safe_load(path.read_text())
    config["defaults"]["model"]["size"].update(size)
    path.write_text(yaml.safe_dump(config))
    if size and not any(getattr(m, "support_avx512bf16_for_cpu", False) for m in _one_4bit_layer()):
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes takes a path without the 32-row blocks")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "bad" / "model").exists()


def _one_4bit_layer():
    import bitsandbytes as bnb

    return [bnb.nn.Linear4bit(32, 32)]


def test_the_model_cards_usage_code_runs(lora_run, monkeypatch):
    """The card's 'How to use' block, run as written (path set to the model folder): it
    loads the fresh base, grows it for the added tokens, and generates."""
    card = (lora_run / "model" / "README.md").read_text()
    code = card.split("## How to use", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace("max_new_tokens=256", "max_new_tokens=4")
    monkeypatch.chdir(lora_run)
    namespace: dict = {}
    exec(compile(code.replace('path = "run"', 'path = "model"'), "README.md", "exec"), namespace)
    assert namespace["output"].shape[1] > namespace["inputs"]["input_ids"].shape[1]
