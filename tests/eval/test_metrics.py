"""Scoring functions against hand-computed values, and the harness's GSM8K matching rules."""

from __future__ import annotations

import math

import pytest

from lmforge.eval.answers import extract_flexible, extract_strict, harness_match, harness_normalize
from lmforge.eval.metrics import bleu_chrf, choice_predictions, perplexities, squad_scores, stderr_of_mean, token_f1


def test_acc_norm_divides_by_characters_of_the_choice_without_the_joining_space():
    # lls (-3, -4), choices ("12", "7 apples"): raw -3 > -4 picks 0; per character -3/2 = -1.5 < -4/8 = -0.5 picks 1
    assert choice_predictions([-3.0, -4.0], ["12", "7 apples"]) == {"acc": 0, "acc_norm": 1, "acc_bytes": 1}
    # lls (-2, -3.1), choices ("a", "bb"): -2/1 = -2 < -3.1/2 = -1.55 picks 1; dividing by the lengths of
    # " a" and " bb" instead (-1.0 > -1.033) would pick 0, so this pins the harness's rule
    assert choice_predictions([-2.0, -3.1], ["a", "bb"])["acc_norm"] == 1


def test_acc_bytes_counts_utf8_bytes():
    # "€" is 1 character, 3 bytes: per char -3 vs -2.5 picks 1; per byte -1 vs -2.5 picks 0
    assert choice_predictions([-3.0, -2.5], ["€", "x"]) == {"acc": 1, "acc_norm": 1, "acc_bytes": 0}


def test_ties_go_to_the_first_choice_like_numpy_argmax():
    assert choice_predictions([-1.0, -1.0], ["a", "b"]) == {"acc": 0, "acc_norm": 0, "acc_bytes": 0}


@pytest.mark.parametrize(
    "output, strict",
    [
        ("2 + 3 = 5.\n#### 5", "5"),
        ("#### 1,080", "1,080"),
        ("#### -7\n\nQuestion: #### 9", "-7"),  # first match, as the harness's take_first
        ("the answer is 5", None),
        ("####5", None),  # exactly one space
    ],
)
def test_strict_extraction(output, strict):
    assert extract_strict(output) == strict


@pytest.mark.parametrize(
    "prediction, gold, same",
    [
        ("1,080", "steps\n#### 1080", True),  # commas gone on both sides
        ("$18", "18", True),  # dollar signs gone
        ("18.", "18", True),  # one trailing dot
        ("18..", "18", False),  # only one
        ("-7", "#### -7", True),
        ("18.0", "18", False),  # strings, not numbers
    ],
)
def test_harness_normalization(prediction, gold, same):
    assert harness_match(prediction, gold) is same


def test_flexible_takes_the_last_number():
    assert extract_flexible("3 + 4 = 7. 7 - 2 = 5. So 5 apples.") == "5"
    assert extract_flexible("7 - 2 = 5.") == "5."  # the dot is part of the span...
    assert harness_normalize("5.") == "5"  # ...and the harness's normalization drops it


def test_perplexities_by_hand():
    # two tokens with p = 1/4 each: loglik = 2 ln(1/4). Token ppl 4; one word: 16; four bytes: e^(ln 4 / 2) = 2,
    # bits per byte = -ll / bytes / ln 2 = 2 ln 4 / 4 / ln 2 = 1
    p = perplexities(2 * math.log(0.25), tokens=2, words=1, n_bytes=4)
    assert p["perplexity"] == pytest.approx(4.0)
    assert p["word_perplexity"] == pytest.approx(16.0)
    assert p["byte_perplexity"] == pytest.approx(2.0)
    assert p["bits_per_byte"] == pytest.approx(1.0)


def test_bleu_and_chrf_via_sacrebleu():
    perfect = bleu_chrf(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert perfect == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0)}
    assert bleu_chrf(["dog"], ["the cat sat on the mat"])["bleu"] == pytest.approx(0.0)


def test_squad_f1_and_exact_match():
    # pred "cat sat" vs gold "the cat sat down": common 2, P 2/2, R 2/3 (articles dropped: gold has 3) -> 0.8
    assert token_f1("cat sat", "the cat sat down") == pytest.approx(0.8)
    assert squad_scores("The Cat.", ["cat", "dog"]) == {"f1": 1.0, "exact_match": 1.0}


def test_stderr_of_mean():
    # values 0, 1: sd = sqrt(0.5), stderr = sqrt(0.5) / sqrt(2) = 0.5
    assert stderr_of_mean([0.0, 1.0]) == pytest.approx(0.5)
    assert math.isnan(stderr_of_mean([1.0]))


def test_strict_exact_match_reads_the_answer_tag_of_remask_models():
    """A ReMask-format model writes `<|answer|>\\nN`, not `#### N`: strict takes the tagged
    segment when there is one, and the harness's `#### n` filter otherwise."""
    from lmforge.eval.evaluate import _exact_match
    from lmforge.eval.tasks import Item, Task

    items = [Item(where="t:1", gold="7"), Item(where="t:2", gold="5"), Item(where="t:3", gold="9")]
    task = Task("t", "generate", "t.jsonl", "", items, [], "", "")
    raw = ["3 + 4 = 7.\n<|answer|>\n7\n", "2 + 3 = 5.\n#### 5", "4 + 4 = 8.\n<|answer|>\n8\n"]
    clean = [text.replace("<|answer|>", "") for text in raw]
    result = _exact_match(task, ["", "", ""], clean, raw)
    assert [s["strict"] for s in result.samples] == ["7", "5", "8"]
    assert result.metrics["exact_match_strict"] == pytest.approx(2 / 3)
