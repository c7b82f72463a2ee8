"""Gradient checkpointing (non-reentrant) changes memory, never gradients: for every
objective, with frozen embeddings whose added rows train and with NEFTune, the gradients
equal those without it."""

from __future__ import annotations

import copy

import pytest
import torch

from lmforge.cli import main
from lmforge.models.freezing import freeze_embeddings
from lmforge.objectives.forward import NoiseSeeds
from tests.e2e.conftest import write_config
from tests.train.conftest import VOCAB, tiny_model
from tests.train.objective_batches import OBJECTIVE_PARAMS, objective_and_count, objective_batch

NEW_ROWS = [VOCAB - 3, VOCAB - 2]


def _gradients(model, name, batch) -> dict[str, torch.Tensor]:
    model.train()
    objective, count = objective_and_count(name, batch, neftune_alpha=5.0)
    loss, _ = objective(model, batch, count)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", list(OBJECTIVE_PARAMS))
def test_checkpointing_leaves_gradients_unchanged(name):
    plain = tiny_model()
    checkpointed = copy.deepcopy(plain)
    for model in (plain, checkpointed):  # (a deep copy would not carry the gradient hooks)
        freeze_embeddings(model, NEW_ROWS)
    checkpointed.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert checkpointed.model.gradient_checkpointing
    batch = NoiseSeeds(seed=3)(objective_batch(name))  # per-example NEFTune noise: the same in both runs
    expected, actual = _gradients(plain, name, batch), _gradients(checkpointed, name, batch)
    assert expected.keys() == actual.keys()
    assert any(n.endswith("embed_tokens.weight") for n in expected)  # the added rows train
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], atol=1e-6, rtol=1e-5, msg=key)


def test_training_with_checkpointing_and_frozen_embeddings(tmp_path, user_files):
    config = write_config(
        tmp_path / "c.yaml",
        user_files,
        tmp_path / "run",
        max_steps=2,
        gradient_checkpointing=True,
        objective={"name": "remask_cot"},
    )
    assert main(["train", str(config), "--set", "model.freeze_embeddings=true"]) == 0
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
