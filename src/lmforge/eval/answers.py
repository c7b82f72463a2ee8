"""Final-answer extraction and strict exact match. Model output is only ever parsed as
text, never executed."""

from __future__ import annotations

import re

ANSWER_TAG = "<|answer|>"
_GSM8K_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")


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


def extract_gsm8k_answer(text: str) -> str | None:
    """The number after `#### ` (GSM8K's official regex), commas removed.

    >>> extract_gsm8k_answer("so 1,080 in all\\n#### 1,080")
    '1080'
    """
    match = _GSM8K_STRICT.search(text)
    return match.group(1).replace(",", "") if match else None


def extract_answer(text: str) -> str | None:
    tagged = extract_tagged_answer(text)
    return tagged if tagged is not None else extract_gsm8k_answer(text)


def strict_match(prediction: str | None, gold: str) -> bool:
    """Exact string equality after trimming whitespace.

    >>> strict_match(" 12", "12"), strict_match("12.0", "12"), strict_match(None, "12")
    (True, False, False)
    """
    return prediction is not None and prediction.strip() == gold.strip()
