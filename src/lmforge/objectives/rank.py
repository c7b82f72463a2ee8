"""Ranking objectives over whole responses (docs/methods.md; seed 000, Memphis-CoT).

A rank batch holds S sequences from G prompts ("groups"): per sequence its labels (the
response tokens), `group` (which prompt, 0..G-1) and `order` (0 = best). Optionally one
sequence per group is the dataset's gold response (`is_gold`), trained with CE.

- PRO (Song et al. 2023, "Preference Ranking Optimization"): with length-normalised scores
  s_1 > s_2 > ... > s_n (best first), L_rank = sum_{k<n} -log( exp(s_k) / sum_{j>=k} exp(s_j) ).
  For one (correct, incorrect) pair this is -log sigmoid(s_c - s_i).

The pairwise preference objectives (DPO, IPO, SPIN, ORPO, SimPO) have a module each.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from lmforge.objectives.ce import label_positions, normaliser
from lmforge.objectives.head import token_nll
from lmforge.strict import Strict


class RankConfig(Strict):
    """CE on the gold response + weight x PRO rank loss over ranked generations."""

    name: Literal["rank"]
    weight: float = Field(5.0, ge=0.0)


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of log p over each sequence's label tokens, and the label-token counts.

    logits [S, T, V], labels [S, T] -> sums [S], counts [S]
    """
    selected, targets, mask = label_positions(logits, labels)
    logp = -token_nll(selected, targets)  # [N]
    rows = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(mask)[mask]  # [N]
    sums = torch.zeros(labels.shape[0], dtype=logp.dtype, device=logp.device).index_add(0, rows, logp)
    return sums, mask.sum(dim=1)


def pro_loss(scores: torch.Tensor, group: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Sum over groups of the PRO listwise loss. Ragged: groups may have any number of
    candidates. Ties (equal `order`) are not each other's negatives: a candidate's softmax
    runs over itself and the candidates ranked strictly below it, so with distinct orders
    this is PRO's sum_{k<n} -log(exp(s_k) / sum_{j>=k} exp(s_j)), and a group with one
    candidate, or only tied ones, adds nothing. scores, group, order: [S] -> scalar."""
    total = scores.new_zeros(())
    for g in torch.unique(group):
        mine, ranks = scores[group == g], order[group == g]
        below = ranks.unsqueeze(0) > ranks.unsqueeze(1)  # [i, j]: j ranked strictly below i
        has_below = below.any(dim=1)
        if not has_below.any():
            continue
        competitors = torch.where(
            below | torch.eye(len(mine), dtype=torch.bool, device=mine.device),
            mine.unsqueeze(0).expand(len(mine), -1),
            torch.full_like(mine, float("-inf")),
        )
        total = total + (torch.logsumexp(competitors, dim=1) - mine)[has_below].sum()
    return total


def ranked_groups(group: torch.Tensor, order: torch.Tensor, candidates: torch.Tensor) -> int:
    """Groups whose candidates have at least two different orders: the ones PRO trains."""
    return sum(int(torch.unique(order[candidates & (group == g)]).numel() >= 2) for g in torch.unique(group))


def rank_loss(
    logits: torch.Tensor,
    batch: dict[str, torch.Tensor],
    weight: float,
    num_items: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CE on the gold responses (token mean over the global batch) + weight * PRO over the
    ranked generated responses (mean over the groups of the global batch).

    When a group has no gold response, the CE is taken on its best-ranked candidate.
    """
    return rank_loss_from_scores(*sequence_logps(logits, batch["labels"]), batch, weight, num_items)


def rank_loss_from_scores(
    sums: torch.Tensor,
    counts: torch.Tensor,
    batch: dict[str, torch.Tensor],
    weight: float,
    num_items: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`rank_loss` from each sequence's summed log-prob and label count."""
    group, order = batch["group"], batch["order"]
    scores = sums / counts.clamp_min(1)  # length-normalised log-probability
    is_gold = batch["is_gold"]
    candidates = ~is_gold
    ce_rows = is_gold | _best_without_gold(group, order, is_gold)
    gold_tokens = counts[ce_rows].sum()
    groups = ranked_groups(group, order, candidates)
    token_norm = normaliser(counts[ce_rows], None if num_items is None else num_items["gold_tokens"])
    group_norm = (
        torch.as_tensor(max(groups, 1) if num_items is None else num_items["groups"], device=sums.device)
        .clamp_min(1)
        .float()
    )
    ce = -sums[ce_rows].sum() / token_norm
    ranking = pro_loss(scores[candidates], group[candidates], order[candidates]) / group_norm
    loss = ce + weight * ranking
    return loss, {
        "nll_sum": -sums[ce_rows].sum().detach(),
        "tokens": gold_tokens,
        "ce": ce.detach(),
        "rank": ranking.detach(),
    }


def _best_without_gold(group: torch.Tensor, order: torch.Tensor, is_gold: torch.Tensor) -> torch.Tensor:
    """Rows that are the best candidate of a group that has no gold response."""
    best = torch.zeros_like(is_gold)
    for g in torch.unique(group):
        rows = (group == g).nonzero().squeeze(1)
        if not is_gold[rows].any():
            best[rows[torch.argmin(order[rows])]] = True
    return best


def count_rank_items(batches: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Normalisers of a whole accumulation window: CE tokens and ranked groups."""
    gold_tokens, groups = 0, 0
    for batch in batches:
        counts = batch["labels"][:, 1:].ne(-100).sum(dim=1)
        ce_rows = batch["is_gold"] | _best_without_gold(batch["group"], batch["order"], batch["is_gold"])
        gold_tokens = gold_tokens + counts[ce_rows].sum()
        groups += ranked_groups(batch["group"], batch["order"], ~batch["is_gold"])
    return {"gold_tokens": torch.as_tensor(gold_tokens), "groups": torch.as_tensor(groups)}
