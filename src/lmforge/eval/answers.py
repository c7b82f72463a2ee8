r"""Every answer rule of lmforge, by name: how a final answer is read out of model output
(`RULES`) and how an answer is compared with the gold one (`MATCHES`). The evaluator and
bootstrap verification both take their rules from here. Model output is only ever parsed
as text, never executed.

Extraction rules, `RULES[name](text) -> str | None` (None: the rule finds no answer):

================  ========================================================  ===============================
name              what it returns                                           where it comes from
================  ========================================================  ===============================
`answer_segment`  the text after the LAST `<|answer|>` tag, stripped ("" if  the ReMask response format (one
                  nothing follows the tag)                                  answer tag per response)
`harness_strict`  the FIRST match of `#### (\-?[0-9\.\,]+)`, stripped       lm-evaluation-harness 0.4.x
                                                                            gsm8k.yaml, "strict-match"
`flexible`        the LAST match of `(-?[$0-9.,]{2,})|(-?[0-9]+)`: its      lm-evaluation-harness 0.4.x
                  non-empty group, stripped                                 gsm8k.yaml, "flexible-extract"
`last_number`     the LAST number: optional `-`, digits with thousands      lmforge bootstrap's
                  commas, optional decimals, optional `/denominator`        "last number" fallback
`the_answer_is`   the FIRST match of `(?<=the answer is )(.*)(?=.)`,        lm-evaluation-harness 0.4.x
                  stripped: the rest of that line after "the answer is ",   bbh/cot_fewshot, "get-answer"
                  less the line's last character (its final period)
================  ========================================================  ===============================

Comparison rules, `MATCHES[name](prediction, gold) -> bool` (a None prediction never matches):

================  ========================================================  ===============================
`harness_match`   equal after `harness_normalize`: `,` and `$` removed,     lm-evaluation-harness 0.4.x
                  all up to the last `#### ` removed, one final `.`         gsm8k.yaml, exact_match
                  removed, lower case
`numeric_match`   equal values when both parse as numbers (`parse_number`:  lmforge bootstrap verification
                  commas, fractions, `$`, a final `.`), else equal text
                  after whitespace and case normalisation
================  ========================================================  ===============================

`flexible` and `last_number` are two rules because they disagree: on "she pays $1,080."
flexible gives "$1,080." and last_number "1,080"; on "3/4 of them" flexible gives "4" and
last_number "3/4"; on "Wait..." flexible gives "..." and last_number nothing.
`extract_strict_answer`, the evaluator's strict answer, is `answer_segment`, else
`harness_strict`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction

ANSWER_TAG = "<|answer|>"
# lm-evaluation-harness 0.4.x gsm8k.yaml: "strict-match" takes the first match of this.
HARNESS_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
# ...and "flexible-extract" the last match of this.
_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
# ...and its exact_match metric deletes these from prediction and reference alike, in this
# order, then lower-cases both.
_HARNESS_IGNORE = (re.compile(","), re.compile(r"\$"), re.compile(r"(?s).*#### "), re.compile(r"\.$"))
# lm-evaluation-harness 0.4.x bbh/cot_fewshot/_cot_fewshot_template_yaml, filter "get-answer".
_THE_ANSWER_IS = re.compile(r"(?<=the answer is )(.*)(?=.)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def extract_tagged_answer(text: str) -> str | None:
    """Rule `answer_segment`: the text after the last `<|answer|>` tag (ReMask format),
    stripped; "" when nothing follows the tag.

    >>> extract_tagged_answer("3 + 5 = 8.\\n<|answer|>\\n8\\n")
    '8'
    >>> extract_tagged_answer("a <|answer|> 7 <|answer|> 8"), extract_tagged_answer("no tag here") is None
    ('8', True)
    """
    if ANSWER_TAG not in text:
        return None
    return text.rsplit(ANSWER_TAG, 1)[1].strip()


def extract_strict(text: str) -> str | None:
    """Rule `harness_strict`, the harness's "strict-match" filter: the first `#### n`
    match, stripped, unchanged.

    >>> extract_strict("4 + 4 = 8.\\n#### 8.\\n\\nQuestion: #### 9")
    '8.'
    >>> extract_strict("the answer is 8") is None, extract_strict("####8") is None
    (True, True)
    """
    match = HARNESS_STRICT.search(text)
    return match.group(1).strip() if match else None


def extract_strict_answer(text: str) -> str | None:
    """The strict answer of a generated response: its `<|answer|>` segment when the model
    answers in the ReMask format, else the harness's `#### n` filter. `text` must still
    hold the special tokens.

    >>> extract_strict_answer("3 + 4 = 7.\\n<|answer|>\\n7\\n"), extract_strict_answer("so\\n#### 7")
    ('7', '7')
    """
    tagged = extract_tagged_answer(text)
    return tagged if tagged is not None else extract_strict(text)


def extract_flexible(text: str) -> str | None:
    """Rule `flexible`, the harness's "flexible-extract" filter: the last number-like span.

    >>> extract_flexible("3 + 4 = 7, so she has $1,080.")
    '$1,080.'
    >>> extract_flexible("<|answer|>\\n7\\n"), extract_flexible("none") is None
    ('7', True)
    """
    matches = _FLEXIBLE.findall(text)
    if not matches:
        return None
    return next(group for group in matches[-1] if group).strip()


def extract_last_number(text: str) -> str | None:
    """Rule `last_number`: the last number in the text, as written (commas, decimals and a
    fraction kept; a `$` or a final period left out).

    >>> extract_last_number("so it is 7 apples"), extract_last_number("she pays $1,080.")
    ('7', '1,080')
    >>> extract_last_number("3/4 of -2.5"), extract_last_number("3/4 of them"), extract_last_number("Wait...")
    ('-2.5', '3/4', None)
    """
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def extract_the_answer_is(text: str) -> str | None:
    """Rule `the_answer_is`, the harness's BBH chain-of-thought filter: the first match of
    `(?<=the answer is )(.*)(?=.)`, stripped. `.` stops at a line end and `(?=.)` needs one
    more character on the line, so the answer is the rest of that line less its last
    character; the phrase is case-sensitive.

    >>> extract_the_answer_is("So the answer is False."), extract_the_answer_is("so the answer is (A).\\nmore")
    ('False', '(A)')
    >>> extract_the_answer_is("So the answer is False"), extract_the_answer_is("The answer is No.") is None
    ('Fals', True)
    """
    matches = _THE_ANSWER_IS.findall(text)
    return matches[0].strip() if matches else None


RULES: dict[str, Callable[[str], str | None]] = {
    "answer_segment": extract_tagged_answer,
    "harness_strict": extract_strict,
    "flexible": extract_flexible,
    "last_number": extract_last_number,
    "the_answer_is": extract_the_answer_is,
}
"""The extraction rules by name (see the module's table)."""


def harness_normalize(text: str) -> str:
    """What lm-evaluation-harness 0.4.x compares for GSM8K exact match: `,` and `$`
    removed, everything up to the last `#### ` removed, one trailing `.` removed, lower case.

    >>> harness_normalize("$1,080."), harness_normalize("Tom pays 2 * 3 = 6.\\n#### 1,080")
    ('1080', '1080')
    >>> harness_normalize("8..")
    '8.'
    """
    for pattern in _HARNESS_IGNORE:
        text = pattern.sub("", text)
    return text.lower()


def harness_match(prediction: str | None, gold: str) -> bool:
    """Rule `harness_match`: exact match after `harness_normalize`; a missing prediction
    never matches (the harness puts "[invalid]" there).

    >>> harness_match("1,080", "#### 1080"), harness_match("8.", "8"), harness_match(None, "8")
    (True, True, False)
    """
    return prediction is not None and harness_normalize(prediction) == harness_normalize(gold)


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


def numeric_match(prediction: str | None, gold: str) -> bool:
    """Rule `numeric_match`: numeric equality when both parse as numbers, else
    whitespace/case-normalised text; a missing prediction never matches.

    >>> numeric_match("12.0", "12"), numeric_match("$1,000.", "1000"), numeric_match("6/8", "0.75")
    (True, True, True)
    >>> numeric_match("13", "12"), numeric_match("Paris", " paris "), numeric_match(None, "12")
    (False, True, False)
    """
    if prediction is None:
        return False
    a, b = parse_number(prediction), parse_number(gold)
    if a is not None and b is not None:
        return a == b
    return " ".join(prediction.lower().split()) == " ".join(gold.lower().split())


MATCHES: dict[str, Callable[[str | None, str], bool]] = {
    "harness_match": harness_match,
    "numeric_match": numeric_match,
}
"""The comparison rules by name (see the module's table)."""
