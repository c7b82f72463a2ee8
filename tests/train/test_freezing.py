"""Frozen embeddings: old rows never change; rows of newly added tokens do."""

from __future__ import annotations

import pytest
import torch

from lmforge.models.freezing import embedding_parameters, freeze_embeddings
from tests.train.conftest import VOCAB, make_trainer, tiny_model, token_rows

NEW_ROWS = [VOCAB - 2, VOCAB - 1]


def _rows_using_new_tokens():
    rows = token_rows(16)
    for row in rows:  # make sure the new tokens appear as inputs and as labels
        row["input_ids"][-2:] = NEW_ROWS
        row["labels"][-2:] = NEW_ROWS
    return rows


@pytest.mark.parametrize("optimizer", ["adamw", "adalite", "lilith"])
def test_only_new_rows_train(tmp_path, optimizer):
    model = tiny_model()
    partial = freeze_embeddings(model, NEW_ROWS)
    [embeddings] = embedding_parameters(model)  # tied input/output
    before = embeddings.detach().clone()
    other_before = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    trainer = make_trainer(
        model,
        _rows_using_new_tokens(),
        tmp_path,
        micro_batch=4,
        accumulation=1,
        max_steps=3,
        optimizer=optimizer,
        lr=1e-2,
        weight_decay=0.1,
        no_decay_params=partial,
    )
    trainer.train()
    old = [i for i in range(VOCAB) if i not in NEW_ROWS]
    assert torch.equal(embeddings[old], before[old])
    assert not torch.equal(embeddings[NEW_ROWS], before[NEW_ROWS])
    assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, other_before)


def test_no_new_rows_freezes_embeddings_entirely():
    model = tiny_model()
    assert freeze_embeddings(model, []) == []
    assert not model.get_input_embeddings().weight.requires_grad
    assert not model.get_output_embeddings().weight.requires_grad
