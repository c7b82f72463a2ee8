"""Each named answer rule of lmforge.eval.answers against hand-worked responses."""

from __future__ import annotations

import re

import pytest

from lmforge.eval.answers import MATCHES, RULES, extract_strict_answer


def test_the_registries_name_every_rule():
    assert list(RULES) == ["answer_segment", "harness_strict", "flexible", "last_number", "the_answer_is"]
    assert list(MATCHES) == ["harness_match", "numeric_match"]


@pytest.mark.parametrize(
    "text, answer",
    [
        ("3 + 5 = 8.\n<|answer|>\n8\n", "8"),
        ("a <|answer|> 7 <|answer|> 8", "8"),  # the last tag
        ("3 + 5 = 8.\n<|answer|>\n", ""),  # a tag with nothing after it
        ("3 + 5 = 8.\n#### 8", None),
    ],
)
def test_answer_segment(text, answer):
    assert RULES["answer_segment"](text) == answer


@pytest.mark.parametrize(
    "text, answer",
    [
        ("4 + 4 = 8.\n#### 8.\n\nQuestion: #### 9", "8."),  # first match, trailing period kept
        ("#### -1,080", "-1,080"),
        ("####8", None),  # exactly one space after ####
        ("#### $8", None),
        ("#### 3/4", "3"),  # the class stops at '/'
        ("#### eight", None),
    ],
)
def test_harness_strict(text, answer):
    assert RULES["harness_strict"](text) == answer


@pytest.mark.parametrize(
    "text, answer",
    [
        ("3 + 4 = 7, so she has $1,080.", "$1,080."),
        ("so it is 7 apples", "7"),
        ("3/4 of them", "4"),
        ("Wait...", "..."),
        ("x = -5", "-5"),
        ("none", None),
    ],
)
def test_flexible(text, answer):
    assert RULES["flexible"](text) == answer


@pytest.mark.parametrize(
    "text, answer",
    [
        ("so it is 7 apples", "7"),
        ("she pays $1,080.", "1,080"),
        ("3/4 of them", "3/4"),
        ("from 2 to -.5", "-.5"),
        ("2 then 1,234.56 m", "1,234.56"),
        ("Wait...", None),
    ],
)
def test_last_number(text, answer):
    assert RULES["last_number"](text) == answer


@pytest.mark.parametrize(
    "text, answer",
    [
        ("So the answer is False.", "False"),
        ("So the answer is (A).\nQ: next", "(A)"),  # stops at the line end
        ("the answer is (A).\nso the answer is (B).", "(A)"),  # two occurrences: the first
        ("the answer is 5, so the answer is 6.", "5, so the answer is 6"),  # one line: one greedy match
        ("So the answer is False", "Fals"),  # the last character is always dropped
        ("So the answer is  valid.  ", "valid."),  # stripped after the cut
        ("The answer is No.", None),  # case-sensitive
        ("So the answer is\nNo.", None),  # needs the space and the same line
        ("no answer here", None),
    ],
)
def test_the_answer_is(text, answer):
    assert RULES["the_answer_is"](text) == answer


def test_the_answer_is_is_the_harness_regex_first_findall_match():
    harness = re.compile(r"(?<=the answer is )(.*)(?=.)")
    for text in ["So the answer is Yes.", "the answer is 12 apples.\nthe answer is 13.", "x the answer is ab"]:
        assert RULES["the_answer_is"](text) == harness.findall(text)[0].strip()


def test_strict_answer_is_answer_segment_else_harness_strict():
    assert extract_strict_answer("#### 9\n<|answer|>\n8") == "8"
    assert extract_strict_answer("so\n#### 9") == "9"
    assert extract_strict_answer("so 9") is None


@pytest.mark.parametrize(
    "prediction, gold, expected",
    [
        ("1,080", "#### 1080", True),
        ("$1,080.", "1080", True),
        ("8.", "8", True),
        ("8.0", "8", False),  # text, not numbers
        ("TRUE", "true", True),
        (None, "8", False),
    ],
)
def test_harness_match(prediction, gold, expected):
    assert MATCHES["harness_match"](prediction, gold) is expected


@pytest.mark.parametrize(
    "prediction, gold, expected",
    [
        ("12.0", "12", True),
        ("1,000", "1000", True),
        ("$5.", "5", True),
        ("6/8", "0.75", True),
        ("-3/4", "-0.75", True),
        ("13", "12", False),
        ("1/0", "1/0", True),  # neither parses: equal text
        ("Paris", " paris ", True),
        ("New  York", "new york", True),
        ("8 apples", "8", False),
        (None, "12", False),
    ],
)
def test_numeric_match(prediction, gold, expected):
    assert MATCHES["numeric_match"](prediction, gold) is expected
