"""Rank objectives on hand-computed values.

Scores (length-normalised log-probs) of one group, best first: s = (-1, -2, -3).
PRO = [-log(e^-1 / (e^-1 + e^-2 + e^-3))] + [-log(e^-2 / (e^-2 + e^-3))]
    = log(1 + e^-1 + e^-2) + log(1 + e^-1)
    = log(1.503215) + log(1.367879) = 0.407606 + 0.313262 = 0.720868
One pair (s_c, s_i) = (-1, -2): -log sigmoid(1) = log(1 + e^-1) = 0.313262.
"""

from __future__ import annotations

import math

import pytest
import torch

from lmforge.objectives import build_objective
from lmforge.objectives.rank import (
    count_rank_items,
    pro_loss,
    rank_loss,
    sequence_logps,
)


def test_pro_three_candidates_hand_value():
    scores = torch.tensor([-2.0, -1.0, -3.0])  # stored out of order; `order` says which is best
    loss = pro_loss(scores, group=torch.tensor([0, 0, 0]), order=torch.tensor([1, 0, 2]))
    assert loss.item() == pytest.approx(0.720868, abs=1e-6)


def test_pro_pair_is_log_sigmoid_and_groups_are_ragged():
    scores = torch.tensor([-1.0, -2.0, -2.0, -1.0, -3.0])
    group = torch.tensor([0, 0, 1, 1, 1])
    order = torch.tensor([0, 1, 1, 0, 2])
    # group 0: pair (-1, -2) -> 0.313262; group 1: best first (-1, -2, -3) -> 0.720868
    assert pro_loss(scores, group, order).item() == pytest.approx(0.313262 + 0.720868, abs=1e-6)
    assert pro_loss(scores[:2], group[:2], order[:2]).item() == pytest.approx(
        -math.log(1 / (1 + math.exp(-1.0))), abs=1e-6
    )


def test_pro_ties_are_not_each_others_negatives():
    """orders (0, 0, 1): each of the tied best competes only with itself and the worse one."""
    scores = torch.tensor([-1.0, -2.0, -3.0])
    expected = (math.log(math.exp(-1) + math.exp(-3)) + 1) + (math.log(math.exp(-2) + math.exp(-3)) + 2)
    assert pro_loss(scores, torch.tensor([0, 0, 0]), torch.tensor([0, 0, 1])).item() == pytest.approx(expected)
    # all tied, or alone: nothing to rank
    assert pro_loss(scores, torch.tensor([0, 0, 1]), torch.tensor([1, 1, 0])).item() == 0.0


def test_groups_without_two_ranks_are_not_in_the_normaliser():
    batch = {
        "labels": torch.ones(5, 4, dtype=torch.long),
        "group": torch.tensor([0, 0, 1, 1, 2]),
        "order": torch.tensor([0, 1, 0, 0, 0]),
        "is_gold": torch.zeros(5, dtype=torch.bool),
    }
    # group 0 ranks two responses; group 1 only ties; group 2 has one candidate
    assert int(count_rank_items([batch])["groups"]) == 1


def test_sequence_logps_sum_and_count_label_tokens():
    logits = torch.zeros(2, 4, 5)  # uniform: log p = -log 5 for every token
    labels = torch.tensor([[-100, 1, 2, 3], [-100, -100, 4, -100]])
    sums, counts = sequence_logps(logits, labels)
    assert counts.tolist() == [3, 1]
    torch.testing.assert_close(sums, torch.tensor([-3 * math.log(5), -math.log(5)]))


def _rank_batch():
    """Group 0: gold + 2 candidates; group 1: no gold, 2 candidates (CE on its best)."""
    labels = torch.tensor(
        [
            [-100, 1, 2, -100],  # g0 gold (2 tokens)
            [-100, 1, 3, -100],  # g0 candidate, best
            [-100, 4, 3, 2],  # g0 candidate, worse
            [-100, -100, 2, 2],  # g1 candidate, best (2 tokens)
            [-100, 3, 3, -100],  # g1 candidate, worse
        ]
    )
    return {
        "labels": labels,
        "group": torch.tensor([0, 0, 0, 1, 1]),
        "order": torch.tensor([0, 0, 1, 0, 1]),
        "is_gold": torch.tensor([True, False, False, False, False]),
    }


def test_rank_loss_combines_ce_on_gold_and_pro_over_candidates():
    torch.manual_seed(0)
    logits = torch.randn(5, 4, 6)
    batch = _rank_batch()
    loss, metrics = rank_loss(logits, batch, weight=5.0)
    sums, counts = sequence_logps(logits, batch["labels"])
    scores = sums / counts
    ce = -(sums[0] + sums[3]) / (counts[0] + counts[3])
    pro = (
        pro_loss(scores[1:3], torch.tensor([0, 0]), torch.tensor([0, 1]))
        + pro_loss(scores[3:], torch.tensor([1, 1]), torch.tensor([0, 1]))
    ) / 2
    torch.testing.assert_close(loss, ce + 5.0 * pro)
    assert metrics["tokens"].item() == 4
    assert count_rank_items([batch, batch]) == {"gold_tokens": torch.tensor(8), "groups": torch.tensor(4)}


def test_rank_objective_normalises_by_the_window_counts_and_falls_back_to_ce_on_plain_batches():
    from tests.train.conftest import tiny_model

    model = tiny_model()
    batch = _rank_batch()
    batch["input_ids"] = batch["labels"].clamp_min(0) + 3
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    objective = build_objective("rank", {"weight": 5.0})
    whole, _ = objective(model, batch, objective.count_items([batch]))
    own, _ = objective(model, batch, None)
    torch.testing.assert_close(whole, own)
    half, _ = objective(model, batch, objective.count_items([batch, batch]))
    torch.testing.assert_close(half, own / 2)
    plain = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    torch.testing.assert_close(objective(model, plain, None)[0], build_objective("ce", {})(model, plain, None)[0])
