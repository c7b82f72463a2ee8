"""Cross-entropy and MixCE (DESIGN §3.1) on shifted causal-LM logits.

Both return the *sum* of per-token losses divided by `num_items`: the number of label
tokens in the whole global batch (all micro-batches and processes of one optimizer step).
That makes micro-batch 8 x accumulation 1 and micro-batch 1 x accumulation 8 identical:
a per-micro-batch mean would weight short examples more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmforge.data.tokenize import IGNORE_INDEX


def shifted_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token negative log-likelihood of labels[t+1] given logits[t].

    logits: [B, T, V], labels: [B, T] -> nll: [B, T-1] (0 where ignored), mask: [B, T-1] bool.
    """
    logits = logits[:, :-1].float()
    targets = labels[:, 1:]
    mask = targets.ne(IGNORE_INDEX)
    nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    ).view_as(targets)
    return nll, mask


def _normaliser(mask: torch.Tensor, num_items: torch.Tensor | int | None) -> torch.Tensor:
    count = mask.sum() if num_items is None else torch.as_tensor(num_items, device=mask.device)
    return count.clamp_min(1).float()


def cross_entropy_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items: torch.Tensor | int | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    nll, mask = shifted_nll(logits, labels)
    total = nll[mask].sum()
    return total / _normaliser(mask, num_items), {"nll_sum": total.detach(), "tokens": mask.sum()}


def mixce_loss(
    logits: torch.Tensor, labels: torch.Tensor, ratio: float, num_items: torch.Tensor | int | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """MixCE: loss_t = (eta + (1 - eta) * sg(p_t)) * (-log p_t); eta = `ratio`.

    The (1 - eta) part is the reverse-CE term of Zhang et al. 2023 ("MixCE: Training
    Autoregressive Language Models by Mixing Forward and Reverse Cross-Entropies")
    approximated, as in their code, by weighting the token NLL with the model's own
    probability (no gradient through the weight).
    """
    nll, mask = shifted_nll(logits, labels)
    weight = ratio + (1.0 - ratio) * torch.exp(-nll.detach())
    total = (weight * nll)[mask].sum()
    return total / _normaliser(mask, num_items), {"nll_sum": nll[mask].sum().detach(), "tokens": mask.sum()}
