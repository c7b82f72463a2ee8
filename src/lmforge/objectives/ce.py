"""Cross-entropy and MixCE (docs/methods.md) on shifted causal-LM logits.

Both return the *sum* of per-token losses divided by `num_items`: the number of label
tokens in the whole global batch (all micro-batches and processes of one optimizer step).
That makes micro-batch 8 x accumulation 1 and micro-batch 1 x accumulation 8 identical:
a per-micro-batch mean would weight short examples more.

Only label positions are pushed through the softmax: prompt and padding positions, often
most of a chat batch, cost nothing beyond the model's own forward pass.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from lmforge.data.tokenize import IGNORE_INDEX
from lmforge.objectives.head import log_probs, select_positions, token_nll  # noqa: F401 (log_probs: re-exported)
from lmforge.strict import Strict


class CEConfig(Strict):
    name: Literal["ce"] = "ce"


class MixCEConfig(Strict):
    name: Literal["mixce"]
    ratio: float = Field(0.75, ge=0.0, le=1.0)
    """eta in MixCE's weight (eta + (1 - eta) * sg(p)) * -log p; 1.0 is plain cross-entropy."""


def label_positions(outputs, labels: torch.Tensor):
    """The outputs at the positions that predict a label, and those labels.

    outputs: logits [B, T, V] or the head path's HiddenStates (objectives/head.py); labels [B, T]
    -> selected (logits [N, V] or SelectedHidden), targets [N], mask [B, T-1]
    (position t predicts labels[t + 1]).
    """
    mask = labels[:, 1:].ne(IGNORE_INDEX)
    return select_positions(outputs, mask), labels[:, 1:][mask], mask


def normaliser(mask: torch.Tensor, num_items: torch.Tensor | int | None) -> torch.Tensor:
    count = mask.sum() if num_items is None else torch.as_tensor(num_items, device=mask.device)
    return count.clamp_min(1).float()


def row_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL and label-token count of each row: [B, T, V], [B, T] -> [B] (float64), [B].

    Per row, so evaluation can drop the rows a multi-process loader repeats to even out
    its last batch (accelerate's gather_for_metrics works on the batch dimension)."""
    selected, targets, mask = label_positions(logits, labels)
    nll = token_nll(selected, targets).double()
    rows = mask.nonzero()[:, 0]
    sums = torch.zeros(labels.shape[0], dtype=torch.float64, device=nll.device).index_add_(0, rows, nll)
    return sums, mask.sum(dim=1)


def cross_entropy_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items: torch.Tensor | int | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    selected, targets, mask = label_positions(logits, labels)
    total = token_nll(selected, targets).sum()
    return total / normaliser(mask, num_items), {"nll_sum": total.detach(), "tokens": mask.sum()}


def mixce_loss(
    logits: torch.Tensor, labels: torch.Tensor, ratio: float, num_items: torch.Tensor | int | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """MixCE: loss_t = (eta + (1 - eta) * sg(p_t)) * (-log p_t); eta = `ratio`.

    The (1 - eta) part is the reverse-CE term of Zhang et al. 2023 ("MixCE: Training
    Autoregressive Language Models by Mixing Forward and Reverse Cross-Entropies")
    approximated, as in their code, by weighting the token NLL with the model's own
    probability (no gradient through the weight).
    """
    selected, targets, mask = label_positions(logits, labels)
    nll = token_nll(selected, targets)
    weight = ratio + (1.0 - ratio) * torch.exp(-nll.detach())
    total = (weight * nll).sum()
    return total / normaliser(mask, num_items), {"nll_sum": nll.sum().detach(), "tokens": mask.sum()}
