"""Bootstrap verification: the rationale/answer split and the verifiers, built from the named
answer rules of lmforge.eval.answers."""

from __future__ import annotations

import pytest

from lmforge.bootstrap.verify import Verdict, load_verifier, split_response
from lmforge.errors import LmforgeError


def test_split_on_the_answer_tag_ignores_fallbacks():
    assert split_response("3 + 4 = 7.\n<|answer|>\n7\n", ("harness_strict",)) == ("3 + 4 = 7.", "7")
    assert split_response("3 + 4 = 7.\n#### 7\n<|answer|>\n", ("harness_strict",)) == ("3 + 4 = 7.\n#### 7", None)


def test_two_answer_tags_split_at_the_last_like_the_evaluator():
    assert split_response("a\n<|answer|>\n7\n<|answer|>\n8") == ("a\n<|answer|>\n7", "8")


def test_harness_strict_fallback_rationale_stops_before_the_marker():
    assert split_response("3 + 4 = 7.\n#### 7", ("harness_strict",)) == ("3 + 4 = 7.", "7")
    assert split_response("3 + 4 = 7.\n####7", ("harness_strict",)) == ("3 + 4 = 7.\n####7", None)


def test_fallbacks_are_tried_in_order():
    text = "6 + 1 = 7 so\n#### 7 apples, 8"
    assert split_response(text, ("harness_strict", "last_number")) == ("6 + 1 = 7 so", "7")
    assert split_response(text, ("last_number", "harness_strict")) == (text, "8")
    assert split_response("So the answer is (B).", ("harness_strict", "the_answer_is")) == (
        "So the answer is (B).",
        "(B)",
    )
    assert split_response("so it is 7 apples") == ("so it is 7 apples", None)


def test_unknown_fallback_is_one_line_error_naming_the_rules():
    for build in (
        lambda: split_response("x", ("gsm8k",)),
        lambda: load_verifier("numeric", ("gsm8k",)),
        lambda: load_verifier("tests.e2e.test_bootstrap:parity_verifier", ("gsm8k",)),
    ):
        with pytest.raises(LmforgeError) as error:
            build()
        message = str(error.value)
        assert "\n" not in message and "'gsm8k'" in message
        assert "answer_segment, harness_strict, flexible, last_number, the_answer_is" in message


def test_numeric_verifier():
    verify = load_verifier("numeric", ("harness_strict",))
    assert verify("2 * 540 = 1080\n<|answer|>\n$1,080.", "1080") == Verdict(True, True, "$1,080.")
    assert verify("2 * 540 = 1080\n#### 1,080", "1080") == Verdict(True, True, "1,080")
    assert verify("2 * 540 = 1081\n<|answer|>\n1081", "1080") == Verdict(True, False, "1081")
    assert verify("<|answer|>\n1080", "1080") == Verdict(False, False, "1080")  # no rationale
    assert verify("2 * 540 = 1080", "1080") == Verdict(False, False, None)  # no answer
