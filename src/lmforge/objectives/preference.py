"""What every preference objective shares: the candidate batch, its ordered pairs, the
normalisation over an accumulation window, and the one builder that turns a per-pair loss
into an objective.

A candidate batch (data/collate.py's CandidateCollator, or bootstrap's rank rows) holds S
sequences: per sequence its labels (the response tokens), `group` (which prompt), `order`
(0 = best; equal orders are ties), `is_gold` (bootstrap's dataset answer, trained with CE by
`rank` only) and, for objectives with a reference, `reference_logps` (the summed log-prob of
the sequence under the frozen reference, computed before training).

Pairs: every (better, worse) pair of non-gold candidates of one prompt whose orders differ,
so `chosen` > `rejected_1` > `rejected_2` gives three pairs and tied candidates are never
each other's negatives. A pairwise loss is averaged over the pairs of the whole global batch
(all micro-batches and processes of one optimizer step, `count_pairs`), as cross-entropy is
over its tokens, so accumulation and process counts do not change the update.

Evaluation batches (validation data: the chosen responses alone) score plain cross-entropy,
so validation loss and perplexity mean what they mean for every other objective.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lmforge.data.tokenize import IGNORE_INDEX
from lmforge.objectives.ce import cross_entropy_loss, normaliser
from lmforge.objectives.forward import forward_outputs
from lmforge.objectives.rank import sequence_logps
from lmforge.objectives.shared_prefix import ResponseGroup, response_logps
from lmforge.strict import Strict


class ReferenceSettings(Strict):
    """Settings of an objective that compares with a frozen reference."""

    reference: str | None = None
    """The frozen reference model (a directory or hub name with the policy's tokenizer);
    default: the model this run starts from (with an adapter, its base)."""


# (policy, reference or None, better rows, worse rows) -> loss per pair [P]
PairLoss = Callable[["SequenceScores", "torch.Tensor | None", torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SequenceScores:
    """Summed log-probabilities of each sequence's label tokens and their counts."""

    sums: torch.Tensor
    counts: torch.Tensor

    @property
    def means(self) -> torch.Tensor:
        """Length-normalised log-probabilities (SimPO, ORPO)."""
        return self.sums / self.counts.clamp_min(1)


def prompt_groups(batch: dict[str, torch.Tensor]) -> list[ResponseGroup] | None:
    """The batch's sequences as prompts with their responses (group-major, in row order),
    when every group's sequences are consecutive rows with the same tokens before their
    first label; None otherwise (they are then scored one row each)."""
    group = batch["group"].tolist()
    if group != sorted(group):
        return None
    ids, labels = batch["input_ids"].tolist(), batch["labels"].tolist()
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    groups: list[ResponseGroup] = []
    for row, (row_group, length) in enumerate(zip(group, lengths)):
        first = next((t for t in range(1, length) if labels[row][t] != IGNORE_INDEX), None)
        if first is None:
            return None
        prompt = ids[row][:first]
        if row == 0 or row_group != group[row - 1]:
            groups.append(ResponseGroup(prompt, [], []))
        elif prompt != groups[-1].prompt:
            return None
        groups[-1].responses.append(ids[row][first:length])
        groups[-1].labels.append(labels[row][first:length])
    return groups


def candidate_scores(model, batch: dict[str, torch.Tensor], neftune_alpha: float | None = None) -> SequenceScores:
    """Summed log-probs of every sequence of a candidate batch. Each prompt is computed once
    for all its responses (objectives/shared_prefix.py) where the model allows it; with
    NEFTune (its noise is drawn per row segment) or prompts that differ, one row each."""
    groups = prompt_groups(batch) if neftune_alpha is None else None
    if groups is not None:
        return SequenceScores(*response_logps(model, groups))
    return SequenceScores(*sequence_logps(forward_outputs(model, batch, neftune_alpha=neftune_alpha), batch["labels"]))


def ordered_pairs(group: torch.Tensor, order: torch.Tensor, is_gold: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices (better, worse) of every pair of candidates of one group with different
    orders; gold rows take no part.

    >>> better, worse = ordered_pairs(torch.tensor([0, 0, 0, 1, 1]), torch.tensor([0, 1, 1, 0, 1]),
    ...                               torch.zeros(5, dtype=torch.bool))
    >>> better.tolist(), worse.tolist()
    ([0, 0, 3], [1, 2, 4])
    """
    candidate = ~is_gold
    same_group = group.unsqueeze(1) == group.unsqueeze(0)
    ranked_above = order.unsqueeze(1) < order.unsqueeze(0)
    both = candidate.unsqueeze(1) & candidate.unsqueeze(0)
    better, worse = (same_group & ranked_above & both).nonzero(as_tuple=True)
    return better, worse


def best_rows(group: torch.Tensor, order: torch.Tensor, is_gold: torch.Tensor) -> torch.Tensor:
    """Each group's best-ranked candidates (the chosen responses), as a mask [S]."""
    candidate = ~is_gold
    masked = torch.where(candidate, order, torch.full_like(order, torch.iinfo(order.dtype).max))
    best = torch.full(
        (int(group.max()) + 1,), torch.iinfo(order.dtype).max, dtype=order.dtype, device=order.device
    ).scatter_reduce(0, group, masked, reduce="amin")
    return candidate & (order == best[group])


def count_pairs(batches: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Normalisers of a whole accumulation window: pairs, and the chosen responses' tokens."""
    pairs, chosen_tokens = 0, 0
    for batch in batches:
        pairs += ordered_pairs(batch["group"], batch["order"], batch["is_gold"])[0].numel()
        counts = batch["labels"][:, 1:].ne(-100).sum(dim=1)
        chosen_tokens = chosen_tokens + counts[best_rows(batch["group"], batch["order"], batch["is_gold"])].sum()
    return {"pairs": torch.as_tensor(pairs), "chosen_tokens": torch.as_tensor(chosen_tokens)}


def preference_objective(
    pair_loss: PairLoss, uses_reference: bool, chosen_ce_weight: float = 0.0, neftune_alpha: float | None = None
):
    """An objective: one forward over the candidate batch, the per-pair loss averaged over
    the window's pairs, plus `chosen_ce_weight` x cross-entropy on the chosen responses
    (ORPO's supervised term) averaged over their tokens."""

    def objective(model, batch, num_items=None):
        if "group" not in batch or not model.training:
            return cross_entropy_loss(forward_outputs(model, batch, neftune_alpha=neftune_alpha), batch["labels"], None)
        policy = candidate_scores(model, batch, neftune_alpha)
        sums, counts = policy.sums, policy.counts
        better, worse = ordered_pairs(batch["group"], batch["order"], batch["is_gold"])
        reference = batch["reference_logps"].to(sums.dtype) if uses_reference else None
        pair_norm = (
            torch.as_tensor(better.numel() if num_items is None else num_items["pairs"], device=sums.device)
            .clamp_min(1)
            .to(sums.dtype)
        )
        preference = pair_loss(policy, reference, better, worse).sum() / pair_norm
        chosen = best_rows(batch["group"], batch["order"], batch["is_gold"])
        token_norm = normaliser(counts[chosen], None if num_items is None else num_items["chosen_tokens"])
        chosen_nll = -sums[chosen].sum()
        loss = preference + (chosen_ce_weight * chosen_nll / token_norm if chosen_ce_weight else 0.0)
        return loss, {
            "nll_sum": chosen_nll.detach(),
            "tokens": counts[chosen].sum(),
            "preference": preference.detach(),
            **reward_metrics(policy, reference, better, worse),
        }

    objective.count_items = count_pairs
    return objective


LOGGED_METRICS = ("rewards_chosen", "rewards_rejected", "reward_margin", "preference_accuracy")
"""What the trainer logs for a preference objective at every logging step (means over the
micro-batches since the last log)."""


def reward_metrics(
    policy: SequenceScores, reference: torch.Tensor | None, better: torch.Tensor, worse: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The implicit rewards r(y) of the better and worse responses of every pair, their
    margin and the preference accuracy (share of pairs with r(better) > r(worse)). r(y) is
    log pi(y) - log ref(y) with a reference; without one, the mean log-probability per
    token (SimPO's reward up to beta, the quantity ORPO's odds come from).

    >>> scores = SequenceScores(torch.tensor([-1.0, -3.0, -2.0]), torch.tensor([1, 1, 1]))
    >>> m = reward_metrics(scores, torch.tensor([-2.0, -2.0, -2.0]), torch.tensor([0, 2]), torch.tensor([1, 1]))
    >>> [round(float(m[k]), 3) for k in LOGGED_METRICS]
    [0.5, -1.0, 1.5, 1.0]
    """
    rewards = (policy.sums - reference if reference is not None else policy.means).detach()
    if better.numel() == 0:
        return {}
    chosen, rejected = rewards[better], rewards[worse]
    return {
        "rewards_chosen": chosen.mean(),
        "rewards_rejected": rejected.mean(),
        "reward_margin": (chosen - rejected).mean(),
        "preference_accuracy": (chosen > rejected).float().mean(),
    }


def log_ratio_margin(
    policy: SequenceScores, reference: torch.Tensor, better: torch.Tensor, worse: torch.Tensor
) -> torch.Tensor:
    """(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l)) per pair: DPO's h."""
    ratio = policy.sums - reference
    return ratio[better] - ratio[worse]
