"""Preference objectives: hand-computed loss values for one pair each, the pairs a ranking
gives (ties are not negatives), and normalisation over an accumulation window."""

from __future__ import annotations

import math

import pytest
import torch

from lmforge.objectives import build_objective
from lmforge.objectives.dpo import dpo_pair_loss
from lmforge.objectives.ipo import ipo_pair_loss
from lmforge.objectives.orpo import log_odds, orpo_pair_loss
from lmforge.objectives.preference import SequenceScores, best_rows, count_pairs, ordered_pairs
from lmforge.objectives.simpo import simpo_pair_loss
from tests.train.conftest import tiny_model
from tests.train.objective_batches import OBJECTIVE_PARAMS, PREFERENCE, objective_batch

# One pair: chosen row 0 (sum log p -1 over 2 tokens), rejected row 1 (-3 over 4 tokens);
# the reference gives both -2.
POLICY = SequenceScores(torch.tensor([-1.0, -3.0]), torch.tensor([2, 4]))
REFERENCE = torch.tensor([-2.0, -2.0])
BETTER, WORSE = torch.tensor([0]), torch.tensor([1])


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_dpo_hand_value():
    # h = (-1 - -2) - (-3 - -2) = 2; beta 0.5: -log sigmoid(1)
    loss = dpo_pair_loss(0.5)(POLICY, REFERENCE, BETTER, WORSE)
    assert loss.item() == pytest.approx(-math.log(sigmoid(1.0)), abs=1e-6) == pytest.approx(0.313262, abs=1e-6)


def test_ipo_hand_value_uses_token_means():
    # per-token log-ratios: chosen (-1 + 2) / 2 = 0.5, rejected (-3 + 2) / 4 = -0.25: h = 0.75
    assert ipo_pair_loss(1.0)(POLICY, REFERENCE, BETTER, WORSE).item() == pytest.approx((0.75 - 0.5) ** 2)
    assert ipo_pair_loss(2 / 3)(POLICY, REFERENCE, BETTER, WORSE).item() == pytest.approx(0.0, abs=1e-12)


def test_simpo_hand_value():
    # means -0.5 and -0.75; beta 2, gamma 0.5: 2 * 0.25 - 0.5 = 0 -> log 2
    assert simpo_pair_loss(2.0, 0.5)(POLICY, None, BETTER, WORSE).item() == pytest.approx(math.log(2.0))
    assert simpo_pair_loss(2.0, 0.0)(POLICY, None, BETTER, WORSE).item() == pytest.approx(-math.log(sigmoid(0.5)))


def test_orpo_hand_value():
    # log odds(m) = m - log(1 - e^m): -0.5 -> 0.432752, -0.75 -> -0.110647; difference 0.543399
    odds_chosen = -0.5 - math.log(1 - math.exp(-0.5))
    odds_rejected = -0.75 - math.log(1 - math.exp(-0.75))
    assert (odds_chosen, odds_rejected) == (pytest.approx(0.432752, abs=1e-6), pytest.approx(-0.110647, abs=1e-6))
    assert log_odds(torch.tensor([-0.5, -0.75])).tolist() == pytest.approx([odds_chosen, odds_rejected])
    expected = 0.1 * -math.log(sigmoid(odds_chosen - odds_rejected))
    assert (
        orpo_pair_loss(0.1)(POLICY, None, BETTER, WORSE).item()
        == pytest.approx(expected)
        == pytest.approx(0.0457913, abs=1e-6)
    )


def test_pairs_follow_the_ranking_and_ties_are_not_negatives():
    group = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    order = torch.tensor([0, 1, 1, 2, 1, 0, 0])
    is_gold = torch.tensor([False, False, False, False, False, False, False])
    better, worse = ordered_pairs(group, order, is_gold)
    assert sorted(zip(better.tolist(), worse.tolist())) == [(0, 1), (0, 2), (0, 3), (1, 3), (2, 3), (5, 4)]
    assert best_rows(group, order, is_gold).tolist() == [True, False, False, False, False, True, True]
    gold = torch.tensor([True, False, False, False, False, False, False])  # a gold row takes no part
    better, worse = ordered_pairs(group, order, gold)
    assert sorted(zip(better.tolist(), worse.tolist())) == [(1, 3), (2, 3), (5, 4)]


@pytest.mark.parametrize("name", PREFERENCE)
def test_loss_is_a_mean_over_the_windows_pairs(name):
    """Two micro-batches normalised by the window's pair count give the gradient of the
    whole batch (as for cross-entropy and its tokens)."""
    torch.manual_seed(0)
    model = tiny_model()
    objective = build_objective(name, OBJECTIVE_PARAMS[name])
    batch = objective_batch(name)
    whole, _ = objective(model, batch, count_pairs([batch]))
    whole.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    halves = [
        {k: (v[:3] if k != "group" else v[:3]) for k, v in batch.items()},
        {k: (v[3:] if k != "group" else v[3:] - 1) for k, v in batch.items()},
    ]
    window = count_pairs(halves)
    assert int(window["pairs"]) == int(count_pairs([batch])["pairs"]) == 5  # 3 + 2 (the tie gives none)
    for half in halves:
        loss, _ = objective(model, half, window)
        loss.backward()
    for got, want in zip((p.grad for p in model.parameters()), expected):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", PREFERENCE)
def test_evaluation_batches_score_cross_entropy(name):
    from lmforge.objectives.ce import cross_entropy_loss
    from lmforge.objectives.forward import forward_logits

    model = tiny_model().eval()
    batch = objective_batch(name)
    loss, _ = build_objective(name, OBJECTIVE_PARAMS[name])(model, batch, None)
    torch.testing.assert_close(loss, cross_entropy_loss(forward_logits(model, batch), batch["labels"], None)[0])


def _shared_prompt_rows(n_responses: int, seed: int = 0) -> list[dict]:
    """Three prompts of ragged lengths, each with n responses of ragged lengths (chosen first)."""
    generator = torch.Generator().manual_seed(seed)

    def tokens(count: int) -> list[int]:
        return torch.randint(1, 40, (count,), generator=generator).tolist()

    rows = []
    for prompt_length in (4, 7, 2):
        prompt = tokens(prompt_length)
        sequences = []
        for _ in range(n_responses):
            response = tokens(int(torch.randint(2, 9, (1,), generator=generator)))
            sequences.append((prompt + response, [-100] * prompt_length + response))
        rows.append(
            {
                "input_ids": sequences[0][0],
                "labels": sequences[0][1],
                "rejected_input_ids": [s[0] for s in sequences[1:]],
                "rejected_labels": [s[1] for s in sequences[1:]],
            }
        )
    return rows


@pytest.mark.parametrize("n_responses", [2, 8])
@pytest.mark.parametrize("name", [*PREFERENCE, "rank"])
def test_shared_prompts_give_the_unshared_loss_and_gradients(name, n_responses, monkeypatch):
    """Each prompt computed once for all its responses (one row, 4-D mask) against one row
    per response: the same loss and gradients."""
    from lmforge.data.collate import CandidateCollator
    from lmforge.objectives import preference
    from lmforge.objectives.shared_prefix import supports_shared_prefix

    batch = CandidateCollator(0)(
        [
            {**row, "reference_logps": [-20.0 - i for i in range(n_responses)]}
            for row in _shared_prompt_rows(n_responses)
        ]
    )
    assert preference.prompt_groups(batch) is not None
    params = OBJECTIVE_PARAMS[name]
    counts = build_objective(name, params).count_items([batch])

    def loss_and_grads(shared: bool):
        torch.manual_seed(0)
        model = tiny_model()
        assert supports_shared_prefix(model)
        if not shared:
            monkeypatch.setattr(preference, "prompt_groups", lambda batch: None)
        calls = []
        real = preference.response_logps
        monkeypatch.setattr(preference, "response_logps", lambda *a, **k: calls.append(1) or real(*a, **k))
        loss, _ = build_objective(name, params)(model, batch, counts)
        loss.backward()
        assert bool(calls) == shared  # the shared rows were (not) used
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    shared_loss, shared_grads = loss_and_grads(True)
    unshared_loss, unshared_grads = loss_and_grads(False)
    torch.testing.assert_close(shared_loss, unshared_loss, atol=1e-5, rtol=1e-5)
    for got, want in zip(shared_grads, unshared_grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_prompts_that_differ_are_scored_one_row_each():
    from lmforge.data.collate import CandidateCollator
    from lmforge.objectives.preference import prompt_groups

    rows = _shared_prompt_rows(2)
    rows[1]["rejected_input_ids"][0][0] += 1  # another prompt token in one response
    assert prompt_groups(CandidateCollator(0)(rows)) is None
