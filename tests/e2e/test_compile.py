"""train.compile: the compiled transformer body trains as the eager one does (same losses
and weights to float rounding), saves the eager model's parameter names, generates eager,
and refuses what it does not support."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from lmforge.cli import main
from lmforge.config.loader import load_config
from lmforge.errors import LmforgeError
from lmforge.train.compile import compile_decoder
from tests.e2e.conftest import write_config


def _losses(run_dir) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


def test_compiled_training_equals_eager_training(tmp_path, user_files):
    from torch._dynamo.utils import counters

    counters.clear()
    for name, compiled in (("eager", False), ("compiled", True)):
        path = write_config(tmp_path / f"{name}.yaml", user_files, tmp_path / name, compile=compiled)
        assert main(["train", str(path)]) == 0
    assert counters["stats"]["unique_graphs"] > 0  # the compiled run did run compiled graphs
    assert len(_losses(tmp_path / "eager")) == 4
    assert _losses(tmp_path / "compiled") == pytest.approx(_losses(tmp_path / "eager"), abs=1e-4)
    eager = AutoModelForCausalLM.from_pretrained(tmp_path / "eager" / "model")
    compiled = AutoModelForCausalLM.from_pretrained(tmp_path / "compiled" / "model")
    compiled_weights = dict(compiled.named_parameters())
    assert compiled_weights.keys() == dict(eager.named_parameters()).keys()  # no _orig_mod. prefixes
    for key, weight in eager.named_parameters():
        torch.testing.assert_close(compiled_weights[key], weight, atol=1e-4, rtol=0, msg=key)


def test_generation_runs_the_compiled_body_eager():
    """A KV cache growing a token at a time would recompile the body at every length."""
    from torch._dynamo.utils import counters

    from lmforge.eval.generate import generate
    from tests.eval.conftest import _llama, _tokenizer

    tokenizer = _tokenizer()
    model = _llama(tokenizer, hidden=32)
    eager_text = generate(model, tokenizer, ["Question: 1 + 2"], [tokenizer.eos_token_id], max_new_tokens=6)
    compile_decoder(model)
    frames = counters["frames"]["total"]
    assert generate(model, tokenizer, ["Question: 1 + 2"], [tokenizer.eos_token_id], max_new_tokens=6) == eager_text
    assert counters["frames"]["total"] == frames  # dynamo never saw a frame


def test_compile_refuses_sharded_training(tmp_path, user_files):
    path = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run", compile=True, fsdp={})
    with pytest.raises(LmforgeError, match=r"train\.compile: not with train\.fsdp"):
        load_config(path)


def test_a_model_without_a_separate_body_is_refused():
    with pytest.raises(LmforgeError, match=r"train\.compile: the .* model has no separate transformer body"):
        compile_decoder(torch.nn.Linear(2, 2))
