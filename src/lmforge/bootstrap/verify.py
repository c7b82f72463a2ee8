"""Verification of generated responses against gold answers. Verifiers are plain functions
`(response_text, gold_answer) -> Verdict`; a user can name their own as `module:function`.
The answer rules themselves (extraction and comparison) are the named rules of
`lmforge.eval.answers`, the ones the evaluator uses. Model output is only ever parsed as
text: never executed, never `eval`-ed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from lmforge.errors import LmforgeError
from lmforge.eval.answers import ANSWER_TAG, HARNESS_STRICT, RULES, extract_tagged_answer, numeric_match


@dataclass(frozen=True)
class Verdict:
    valid: bool
    """The response has a rationale and an answer at all."""
    correct: bool
    answer: str | None


def check_fallbacks(fallbacks: tuple[str, ...] | list[str]) -> None:
    """Every fallback must name an extraction rule of `lmforge.eval.answers.RULES`."""
    for name in fallbacks:
        if name not in RULES:
            raise LmforgeError(f"bootstrap.answer_fallbacks: unknown answer rule '{name}'; valid: {', '.join(RULES)}")


def _rationale(rule: str, text: str) -> str:
    # `harness_strict` answers after a `#### ` marker, which the rationale stops before; the
    # other fallback rules find the answer inside the prose, which is all rationale.
    if rule == "harness_strict":
        return text[: HARNESS_STRICT.search(text).start()]
    return text


def split_response(text: str, fallbacks: tuple[str, ...] = ()) -> tuple[str, str | None]:
    """(rationale, answer) of a generated response: the rationale is what precedes the answer.

    The answer is rule `answer_segment` (what follows the last `<|answer|>` tag, as the
    evaluator reads it; the ReMask format has one tag per response), and the rationale is
    what precedes that tag. A response without the tag may still yield an answer from the
    `fallbacks`, names of rules of `lmforge.eval.answers.RULES`, tried in the order given:
    with `harness_strict` the rationale is what precedes its `#### `, with the others
    (`flexible`, `last_number`, `the_answer_is`) the whole response.

    >>> split_response("3 + 4 = 7.\\n<|answer|>\\n7\\n")
    ('3 + 4 = 7.', '7')
    >>> split_response("3 + 4 = 7.\\n#### 7", fallbacks=("harness_strict",))
    ('3 + 4 = 7.', '7')
    >>> split_response("so it is 7 apples", fallbacks=("last_number",))
    ('so it is 7 apples', '7')
    >>> split_response("no answer here")
    ('no answer here', None)
    """
    check_fallbacks(fallbacks)
    if ANSWER_TAG in text:
        answer = extract_tagged_answer(text)
        return text.rsplit(ANSWER_TAG, 1)[0].strip(), answer or None
    for rule in fallbacks:
        answer = RULES[rule](text)
        if answer:
            return _rationale(rule, text).strip(), answer
    return text.strip(), None


def numeric_verifier(fallbacks: tuple[str, ...] = ()) -> Callable[[str, str], Verdict]:
    """The default verifier: a rationale and an answer must both be present; the answer is
    compared with rule `numeric_match`."""
    check_fallbacks(fallbacks)

    def verify(response: str, gold: str) -> Verdict:
        rationale, answer = split_response(response, fallbacks)
        if not rationale or answer is None:
            return Verdict(False, False, answer)
        return Verdict(True, numeric_match(answer, gold), answer)

    return verify


def math_verify_verifier(fallbacks: tuple[str, ...] = ()) -> Callable[[str, str], Verdict]:
    """Rule `numeric_match`, else symbolic equivalence with the `math-verify` package
    (optional extra)."""
    check_fallbacks(fallbacks)
    try:
        from math_verify import parse, verify as symbolic_equal
    except ImportError as exc:
        raise LmforgeError(
            "bootstrap.verifier: 'math_verify' needs the math-verify package (pip install math-verify)"
        ) from exc

    def verify(response: str, gold: str) -> Verdict:
        rationale, answer = split_response(response, fallbacks)
        if not rationale or answer is None:
            return Verdict(False, False, answer)
        return Verdict(True, numeric_match(answer, gold) or bool(symbolic_equal(parse(gold), parse(answer))), answer)

    return verify


BUILTIN = {"numeric": numeric_verifier, "math_verify": math_verify_verifier}


def load_verifier(name: str, fallbacks: tuple[str, ...] = ()) -> Callable[[str, str], Verdict]:
    """A built-in verifier name, or `module:function` returning a Verdict (or a bool,
    counted as valid). `fallbacks` are checked whichever it is."""
    check_fallbacks(fallbacks)
    if name in BUILTIN:
        return BUILTIN[name](fallbacks)
    module_name, sep, function_name = name.partition(":")
    if not sep:
        raise LmforgeError(
            f"bootstrap.verifier: '{name}' is neither a built-in ({', '.join(BUILTIN)}) nor module:function"
        )
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise LmforgeError(f"bootstrap.verifier: cannot import '{name}': {exc}") from exc

    def verify(response: str, gold: str) -> Verdict:
        result = function(response, gold)
        return result if isinstance(result, Verdict) else Verdict(True, bool(result), None)

    return verify
