"""Answer extraction and verification. Verifiers are plain functions
`(response_text, gold_answer) -> Verdict`; a user can name their own as `module:function`.
Model output is only ever parsed as text: never executed, never `eval`-ed.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from lmforge.errors import LmforgeError
from lmforge.eval.answers import ANSWER_TAG

_GSM8K = re.compile(r"####\s*(\S+)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


@dataclass(frozen=True)
class Verdict:
    valid: bool
    """The response has a rationale and an answer at all."""
    correct: bool
    answer: str | None


def split_response(text: str, fallbacks: tuple[str, ...] = ()) -> tuple[str, str | None]:
    """(rationale, answer) of a generated response.

    The answer is the `<|answer|>` segment; with fallbacks "gsm8k" (`#### n`) and/or
    "last_number", a response without the tag may still yield one.

    >>> split_response("3 + 4 = 7.\\n<|answer|>\\n7\\n")
    ('3 + 4 = 7.', '7')
    >>> split_response("3 + 4 = 7.\\n#### 7", fallbacks=("gsm8k",))
    ('3 + 4 = 7.', '7')
    >>> split_response("so it is 7 apples", fallbacks=("last_number",))
    ('so it is 7 apples', '7')
    >>> split_response("no answer here")
    ('no answer here', None)
    """
    if ANSWER_TAG in text:
        rationale, answer = text.split(ANSWER_TAG, 1)
        return rationale.strip(), answer.strip() or None
    if "gsm8k" in fallbacks:
        match = _GSM8K.search(text)
        if match:
            return text[: match.start()].strip(), match.group(1).strip()
    if "last_number" in fallbacks:
        numbers = _NUMBER.findall(text)
        if numbers:
            return text.strip(), numbers[-1]
    return text.strip(), None


def parse_number(text: str) -> Fraction | None:
    """Exact value of a numeric answer: thousands commas, trailing zeros, fractions,
    negatives, a trailing period or a leading `$`.

    >>> parse_number("1,080") == parse_number("1080.00")
    True
    >>> parse_number("-3/4") == Fraction(-3, 4), parse_number("$5."), parse_number("five")
    (True, Fraction(5, 1), None)
    """
    cleaned = text.strip().removeprefix("$").rstrip(".").replace(",", "").strip()
    if not re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)(/\d+)?", cleaned):
        return None
    try:
        if "/" in cleaned:
            numerator, denominator = cleaned.split("/")
            return Fraction(numerator) / Fraction(denominator)
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def answers_match(predicted: str, gold: str) -> bool:
    """Numeric equality when both parse as numbers, else whitespace/case-normalised text.

    >>> answers_match("12.0", "12"), answers_match("1,000", "1000"), answers_match("Paris", " paris ")
    (True, True, True)
    >>> answers_match("13", "12")
    False
    """
    a, b = parse_number(predicted), parse_number(gold)
    if a is not None and b is not None:
        return a == b
    return " ".join(predicted.lower().split()) == " ".join(gold.lower().split())


def numeric_verifier(fallbacks: tuple[str, ...] = ()) -> Callable[[str, str], Verdict]:
    """The default verifier: a rationale and an answer must both be present."""

    def verify(response: str, gold: str) -> Verdict:
        rationale, answer = split_response(response, fallbacks)
        if not rationale or answer is None:
            return Verdict(False, False, answer)
        return Verdict(True, answers_match(answer, gold), answer)

    return verify


def math_verify_verifier(fallbacks: tuple[str, ...] = ()) -> Callable[[str, str], Verdict]:
    """Symbolic equivalence with the `math-verify` package (optional extra)."""
    try:
        from math_verify import parse, verify as symbolic_equal
    except ImportError as exc:
        raise LmforgeError("bootstrap.verifier: 'math_verify' needs the math-verify package "
                           "(pip install math-verify)") from exc

    def verify(response: str, gold: str) -> Verdict:
        rationale, answer = split_response(response, fallbacks)
        if not rationale or answer is None:
            return Verdict(False, False, answer)
        return Verdict(True, answers_match(answer, gold) or bool(symbolic_equal(parse(gold), parse(answer))), answer)

    return verify


BUILTIN = {"numeric": numeric_verifier, "math_verify": math_verify_verifier}


def load_verifier(name: str, fallbacks: tuple[str, ...] = ()) -> Callable[[str, str], Verdict]:
    """A built-in verifier name, or `module:function` returning a Verdict (or a bool,
    counted as valid)."""
    if name in BUILTIN:
        return BUILTIN[name](fallbacks)
    module_name, sep, function_name = name.partition(":")
    if not sep:
        raise LmforgeError(f"bootstrap.verifier: '{name}' is neither a built-in ({', '.join(BUILTIN)}) "
                           "nor module:function")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise LmforgeError(f"bootstrap.verifier: cannot import '{name}': {exc}") from exc

    def verify(response: str, gold: str) -> Verdict:
        result = function(response, gold)
        return result if isinstance(result, Verdict) else Verdict(True, bool(result), None)

    return verify
