"""Frozen embeddings (seed 000): input and output embeddings stay fixed; if tokens were
added, only their rows stay trainable."""

from __future__ import annotations

import torch
from torch import nn


def embedding_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Input and output embedding weights, once each (they may be tied)."""
    params: list[nn.Parameter] = []
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is not None and all(module.weight is not p for p in params):
            params.append(module.weight)
    return params


def freeze_embeddings(model: nn.Module, trainable_rows: list[int]) -> list[nn.Parameter]:
    """Freeze the embeddings; return the parameters that keep some trainable rows.

    With trainable rows, the weights keep requires_grad and a gradient hook zeroes every
    other row, so optimizer moments of frozen rows stay exactly zero. Callers must keep
    these parameters out of weight decay (decay would still move frozen rows).
    """
    partially_trainable = []
    for weight in embedding_parameters(model):
        if not trainable_rows:
            weight.requires_grad_(False)
            continue
        keep = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
        keep[torch.as_tensor(trainable_rows, device=weight.device)] = 1
        weight.register_hook(lambda grad, keep=keep: grad * keep)
        partially_trainable.append(weight)
    return partially_trainable
