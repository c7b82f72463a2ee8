"""Adapters on the tiny model: update scale, target checks, added tokens' rows, saving and
loading exactly, every objective training only the adapter, the base as reference."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmforge.errors import LmforgeError
from lmforge.models import adapters
from lmforge.models.adapters import (
    added_token_rows,
    attach_adapter,
    check_target_modules,
    linear_module_names,
    load_adapter,
    resize_for,
    trainable_summary,
    update_scale,
)
from tests.train.conftest import tiny_model
from tests.train.objective_batches import OBJECTIVE_PARAMS, objective_and_count, objective_batch

VOCAB = 48


def spec(**changes) -> dict:
    return {
        "type": "lora",
        "r": 4,
        "alpha": 8.0,
        "dropout": 0.0,
        "target_modules": "all-linear",
        "rslora": False,
        "modules_to_save": [],
        **changes,
    }


def untied_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            tie_word_embeddings=False,
        )
    )


def test_update_scale_is_alpha_over_r_or_over_sqrt_r():
    assert update_scale(spec(r=16, alpha=32.0)) == 2.0
    assert update_scale(spec(r=16, alpha=32.0, rslora=True)) == 8.0  # 32 / sqrt(16)
    assert "alpha/r = 8/4 = 2" in trainable_summary(attach_adapter(tiny_model(), spec(), [], False), spec())
    assert "alpha/sqrt(r) = 8/sqrt(4) = 4" in trainable_summary(tiny_model(), spec(rslora=True))


def test_trainable_summary_counts_only_the_adapter():
    model = attach_adapter(tiny_model(), spec(), [], False)
    # LoRA on q,k,v,o (32->32) and gate,up (32->64), down (64->32), 2 layers, r=4: A is r x in, B is out x r
    per_layer = 4 * (4 * 32 + 32 * 4) + 2 * (4 * 32 + 64 * 4) + (4 * 64 + 32 * 4)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 2 * per_layer
    total = sum(p.numel() for p in tiny_model().parameters()) + trainable
    assert (
        trainable_summary(model, None) == f"{trainable:,} of {total:,} parameters train "
        f"({100 * trainable / total:.2f}%)"
    )


def test_target_modules_that_match_nothing_name_the_existing_ones():
    model = tiny_model()
    assert linear_module_names(model) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    check_target_modules(model, ["q_proj", "v_proj"])
    with pytest.raises(
        LmforgeError,
        match=r"'qproj' matches no module of LlamaForCausalLM; its linear layers are "
        r"down_proj, gate_proj, k_proj",
    ):
        check_target_modules(model, ["q_proj", "qproj"])


def test_a_module_peft_cannot_wrap_is_a_one_line_error():
    with pytest.raises(LmforgeError, match="model.adapter: peft cannot wrap LlamaForCausalLM") as error:
        attach_adapter(tiny_model(), spec(target_modules=["input_layernorm"]), [], False)
    assert "\n" not in str(error.value)


def test_quantization_without_bitsandbytes_names_the_install(monkeypatch):
    real = adapters.importlib.util.find_spec
    monkeypatch.setattr(
        adapters.importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a)
    )
    with pytest.raises(LmforgeError, match=r"model.quantization: needs bitsandbytes.*pip install 'lmforge\[qlora\]'"):
        adapters.quantization_config({"bits": 4, "type": "nf4", "double_quant": True, "compute_dtype": "fp32"})


def test_added_token_rows_follow_tying_and_modules_to_save():
    assert added_token_rows(tiny_model(), [], []) == {}
    assert added_token_rows(tiny_model(), [45, 46], []) == {"model.embed_tokens": [45, 46]}  # peft follows the tie
    assert added_token_rows(untied_model(), [45], []) == {"model.embed_tokens": [45], "lm_head": [45]}
    assert added_token_rows(untied_model(), [45], ["lm_head"]) == {"model.embed_tokens": [45]}


def _grow(model, rows: int = 3) -> list[int]:
    old = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(old + rows, mean_resizing=False)
    return list(range(old, old + rows))


@pytest.mark.parametrize("make", [tiny_model, untied_model], ids=["tied", "untied"])
@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_adapter_with_added_tokens_saves_and_loads_exactly(tmp_path, make, kind):
    make().save_pretrained(tmp_path / "base")  # the base on disk lacks the added tokens
    model = make()
    new_ids = _grow(model)
    model = attach_adapter(model, spec(type=kind), new_ids, False)
    ids = torch.tensor([[5, new_ids[0], 7, new_ids[2], 9]])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    trained = model(input_ids=ids).logits
    model.save_pretrained(tmp_path / "adapter", save_embedding_layers=False)

    base = LlamaForCausalLM.from_pretrained(tmp_path / "base")
    resize_for(base, VOCAB + 3)
    loaded = load_adapter(base, tmp_path / "adapter", trainable=False).eval()
    torch.testing.assert_close(loaded(input_ids=ids).logits, trained, rtol=0, atol=0)
    merged = loaded.merge_and_unload()
    torch.testing.assert_close(merged(input_ids=ids).logits, trained, rtol=1e-5, atol=1e-5)


def test_disabled_adapter_is_the_base_without_a_second_copy():
    """Reference log-probs (preference objectives, bootstrap) come from the same weights with
    the adapter switched off."""
    base = tiny_model()
    new_ids = _grow(base, 1)
    ids = torch.tensor([[5, 6, new_ids[0], 8]])
    base.eval()
    reference = base(input_ids=ids).logits.detach().clone()
    model = attach_adapter(base, spec(), new_ids, False)
    for parameter in model.parameters():  # a trained adapter: every adapter weight moved
        if parameter.requires_grad:
            parameter.data.add_(0.1)
    model.eval()
    assert not torch.allclose(model(input_ids=ids).logits, reference)
    with model.disable_adapter():
        torch.testing.assert_close(model(input_ids=ids).logits, reference, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(OBJECTIVE_PARAMS))
def test_every_objective_trains_only_the_adapter(name):
    model = attach_adapter(tiny_model(), spec(), [], False)
    model.train()
    batch = objective_batch(name)
    objective, count = objective_and_count(name, batch, neftune_alpha=5.0)
    loss, _ = objective(model, batch, count)
    assert torch.isfinite(loss)
    loss.backward()
    for parameter_name, parameter in model.named_parameters():
        if "lora_B" in parameter_name:  # B starts at zero, so only B has a gradient at step 0
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, parameter_name
        elif not parameter.requires_grad:
            assert parameter.grad is None, parameter_name
    assert math.isfinite(loss.item())
