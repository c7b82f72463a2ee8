"""Final-answer extraction and strict exact match. Model output is only ever parsed as
text, never executed."""

from __future__ import annotations

import re

ANSWER_TAG = "<|answer|>"
_GSM8K_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
# lm-evaluation-harness 0.4.x gsm8k.yaml: "flexible-extract" takes the last match of this.
_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
# ...and its exact_match metric deletes these from prediction and reference alike, in this
# order, then lower-cases both.
_HARNESS_IGNORE = (re.compile(","), re.compile(r"\$"), re.compile(r"(?s).*#### "), re.compile(r"\.$"))


def extract_tagged_answer(text: str) -> str | None:
    """Text after the last `<|answer|>` tag (ReMask format), stripped.

    >>> extract_tagged_answer("3 + 5 = 8.\\n<|answer|>\\n8\\n")
    '8'
    >>> extract_tagged_answer("no tag here") is None
    True
    """
    if ANSWER_TAG not in text:
        return None
    return text.rsplit(ANSWER_TAG, 1)[1].strip()


def extract_strict(text: str) -> str | None:
    """The harness's "strict-match" filter: the first `#### n` match, stripped, unchanged.

    >>> extract_strict("4 + 4 = 8.\\n#### 8.\\n\\nQuestion: #### 9")
    '8.'
    >>> extract_strict("the answer is 8") is None
    True
    """
    match = _GSM8K_STRICT.search(text)
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
    """The harness's "flexible-extract" filter: the last number-like span in the text.

    >>> extract_flexible("3 + 4 = 7, so she has $1,080.")
    '$1,080.'
    >>> extract_flexible("<|answer|>\\n7\\n"), extract_flexible("none") is None
    ('7', True)
    """
    matches = _FLEXIBLE.findall(text)
    if not matches:
        return None
    return next(group for group in matches[-1] if group).strip()


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
    """Exact match after `harness_normalize`; a missing prediction never matches (the
    harness puts "[invalid]" there).

    >>> harness_match("1,080", "#### 1080"), harness_match("8.", "8"), harness_match(None, "8")
    (True, True, False)
    """
    return prediction is not None and harness_normalize(prediction) == harness_normalize(gold)
