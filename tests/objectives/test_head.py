"""The head at label positions only, in chunks (objectives/head.py), against the plain
full-logits computation: the same loss and gradients for every objective, and no logits for
positions no loss reads."""

from __future__ import annotations

import pytest
import torch

from lmforge.models.presets import ARCHITECTURE_DEFAULTS
from lmforge.objectives import build_objective, head
from lmforge.objectives.ce import row_nll
from lmforge.objectives.forward import forward_outputs
from tests.train.conftest import PAD, VOCAB, tiny_model
from tests.train.objective_batches import OBJECTIVE_PARAMS, objective_batch


def tiny_cohere(logit_scale: float = 1.0, seed: int = 0):
    """A tiny model of the PaLM presets' architecture (models/presets.py: Cohere, parallel
    block, multi-query, head_dim apart from hidden / heads); logit_scale 0.25 exercises
    the scaled head a Command-R checkpoint has."""
    from transformers import CohereConfig, CohereForCausalLM

    torch.manual_seed(seed)
    config = CohereConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=24,
        max_position_embeddings=64,
        pad_token_id=PAD,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
        **{**ARCHITECTURE_DEFAULTS, "logit_scale": logit_scale},
    )
    return CohereForCausalLM(config)


MODELS = {"llama": tiny_model, "palm": tiny_cohere, "cohere-scaled": lambda: tiny_cohere(logit_scale=0.25)}


def _loss_and_grads(
    name, batch, monkeypatch, head_path: bool, chunk: int = 7, model_name: str = "llama", keep: bool = False
):
    monkeypatch.setattr(head, "CHUNK", chunk)  # several chunks even in a tiny batch
    # kept: the label positions' logits in one piece, not recomputed; else chunked
    monkeypatch.setattr(head, "KEEP_LOGITS_BYTES", 2**40 if keep else 0)
    monkeypatch.setattr(head, "label_head_supported", lambda model: head_path)
    torch.manual_seed(0)
    model = MODELS[model_name]()
    objective = build_objective(name, OBJECTIVE_PARAMS[name])
    counter = getattr(objective, "count_items", None)
    loss, _ = objective(model, batch, counter([batch]) if counter else batch["labels"][:, 1:].ne(-100).sum())
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("keep", [False, True], ids=["chunked", "kept"])
@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("name", list(OBJECTIVE_PARAMS))
def test_every_objective_equals_the_full_logits_computation(name, model_name, keep, monkeypatch):
    batch = objective_batch(name)
    plain_loss, plain_grads = _loss_and_grads(name, batch, monkeypatch, head_path=False, model_name=model_name)
    head_loss, head_grads = _loss_and_grads(name, batch, monkeypatch, head_path=True, model_name=model_name, keep=keep)
    torch.testing.assert_close(head_loss, plain_loss, atol=1e-5, rtol=1e-5)
    assert head_grads.keys() == plain_grads.keys()
    for key in plain_grads:
        torch.testing.assert_close(head_grads[key], plain_grads[key], atol=1e-5, rtol=1e-5, msg=key)


@pytest.mark.parametrize("name", ["rank", "dpo"])
def test_shared_prompt_rows_equal_the_full_logits_computation(name, monkeypatch):
    from lmforge.data.collate import CandidateCollator
    from tests.objectives.test_preference import _shared_prompt_rows

    batch = CandidateCollator(0)(
        [{**row, "reference_logps": [-20.0 - i for i in range(4)]} for row in _shared_prompt_rows(4)]
    )
    plain_loss, plain_grads = _loss_and_grads(name, batch, monkeypatch, head_path=False)
    head_loss, head_grads = _loss_and_grads(name, batch, monkeypatch, head_path=True)
    torch.testing.assert_close(head_loss, plain_loss, atol=1e-5, rtol=1e-5)
    for key in plain_grads:
        torch.testing.assert_close(head_grads[key], plain_grads[key], atol=1e-5, rtol=1e-5, msg=key)


@pytest.mark.parametrize("model_name", list(MODELS))
def test_evaluation_nll_equals_the_full_logits_computation(model_name):
    model, batch = MODELS[model_name]().eval(), objective_batch("ce")
    with torch.no_grad():
        outputs = forward_outputs(model, batch)
        assert isinstance(outputs, head.HiddenStates)  # every one of these takes the head path
        sums, counts = row_nll(outputs, batch["labels"])
        full_sums, full_counts = row_nll(
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch["labels"]
        )
    torch.testing.assert_close(sums, full_sums, atol=1e-6, rtol=1e-6)
    assert counts.tolist() == full_counts.tolist()


def test_the_head_sees_label_positions_only_in_chunks(monkeypatch):
    """The model's own call of its head gets zero positions; the losses call it on at most
    CHUNK label positions at a time, in total once per label position (plus the backward's
    recomputation)."""
    monkeypatch.setattr(head, "CHUNK", 5)
    monkeypatch.setattr(head, "KEEP_LOGITS_BYTES", 0)
    model, batch = tiny_model(), objective_batch("ce")
    rows_seen = []
    handle = model.get_output_embeddings().register_forward_hook(
        lambda module, args, output: rows_seen.append(args[0].reshape(-1, args[0].shape[-1]).shape[0])
    )
    try:
        loss, _ = build_objective("ce", {})(model, batch, None)
    finally:
        handle.remove()
    labels = int(batch["labels"][:, 1:].ne(-100).sum())
    assert rows_seen[0] == 0 and max(rows_seen[1:]) <= 5 and sum(rows_seen[1:]) == labels
    assert labels < batch["input_ids"].numel()  # prompt and padding positions were never scored


def test_small_label_logits_are_computed_once_and_kept(monkeypatch):
    """Under KEEP_LOGITS_BYTES the head runs once over all label positions, and the backward
    pass does not run it again."""
    model, batch = tiny_model(), objective_batch("ce")
    labels = int(batch["labels"][:, 1:].ne(-100).sum())
    monkeypatch.setattr(head, "KEEP_LOGITS_BYTES", labels * VOCAB * 4)  # exactly fits
    rows_seen = []
    handle = model.get_output_embeddings().register_forward_hook(
        lambda module, args, output: rows_seen.append(args[0].reshape(-1, args[0].shape[-1]).shape[0])
    )
    try:
        loss, _ = build_objective("ce", {})(model, batch, None)
        loss.backward()
    finally:
        handle.remove()
    assert rows_seen == [0, labels]


def test_models_outside_the_plain_head_list_get_logits():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=48, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    assert not head.label_head_supported(model)
    outputs = forward_outputs(model, {"input_ids": torch.tensor([[1, 2, 3]])})
    assert isinstance(outputs, torch.Tensor) and outputs.shape == (1, 3, 48)
    assert head.label_head_supported(tiny_model())
