"""The batched scorer against the obvious one-sequence-at-a-time computation, and the
rolling windows against one forward over the whole text."""

from __future__ import annotations

import random

import pytest
import torch

from lmforge.eval import loglik
from tests.train.conftest import VOCAB, tiny_model


def plain_loglik(model, ids: list[int], scored: list[bool]) -> tuple[float, bool]:
    """One unpadded forward; sum log p(ids[p] | ids[:p]) over scored p."""
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
    total, greedy = 0.0, True
    for p in range(1, len(ids)):
        if scored[p]:
            total += logprobs[p - 1, ids[p]].item()
            greedy &= logprobs[p - 1].argmax().item() == ids[p]
    return total, greedy


def test_batched_scores_equal_one_sequence_at_a_time():
    model = tiny_model().eval()
    rng = random.Random(0)
    rows = []
    for _ in range(9):  # different lengths, so batches are right-padded
        n = rng.randint(3, 20)
        ids = [rng.randint(3, VOCAB - 1) for _ in range(n)]
        rows.append(loglik.Row(ids, [False] + [rng.random() < 0.6 for _ in range(n - 1)]))
    rows[0] = loglik.Row(rows[0].ids, [False] * len(rows[0].ids))  # nothing scored
    scored = loglik.score_rows(model, rows, pad_id=0, batch_size=4)
    for row, got in zip(rows, scored):
        expected, greedy = plain_loglik(model, row.ids, row.scored)
        assert got.loglik == pytest.approx(expected, abs=1e-4)
        assert got.tokens == sum(row.scored[1:])
        assert got.is_greedy == greedy


def test_rolling_windows_score_every_token_once_with_full_context():
    tokens = list(range(3, 3 + 10))
    rows = loglik.rolling_rows(tokens, prefix_id=1, max_length=4)
    # the harness's docstring example: inputs [BOS 0 1 2] [3 4 5 6] [5 6 7 8], predictions 0-3, 4-7, 8-9
    assert [r.ids[:-1] for r in rows] == [[1, 3, 4, 5], [6, 7, 8, 9], [8, 9, 10, 11]]
    predicted = [t for r in rows for t, s in zip(r.ids, r.scored) if s]
    assert predicted == tokens
    assert all(len(r.ids) - 1 <= 4 for r in rows)


def test_rolling_equals_one_forward_when_the_text_fits():
    model = tiny_model().eval()
    tokens = [5, 9, 12, 7, 30, 2, 44, 18]
    [row] = loglik.rolling_rows(tokens, prefix_id=1, max_length=64)
    [got] = loglik.score_rows(model, [row], pad_id=0)
    expected, _ = plain_loglik(model, [1, *tokens], [False] + [True] * len(tokens))
    assert got.loglik == pytest.approx(expected, abs=1e-4)


def test_encode_pair_moves_trailing_spaces_to_the_continuation(tokenizer):
    context, continuation = loglik.encode_pair(tokenizer, "What is 3 times 4? ", "12")
    assert context == loglik.encode(tokenizer, "What is 3 times 4?")
    assert context + continuation == loglik.encode(tokenizer, "What is 3 times 4? 12")


def test_pair_row_left_truncates_the_context():
    row = loglik.pair_row(list(range(10)), [20, 21], max_length=5)
    assert row.ids == [6, 7, 8, 9, 20, 21] and row.scored == [False] * 4 + [True] * 2
