"""Scoring functions, each a plain function of predictions and references: multiple-choice
selection (acc / acc_norm / acc_bytes), perplexities, BLEU / chrF (sacrebleu) and
SQuAD-style token F1. The lm-evaluation-harness 0.4.x definitions are followed where the
harness has one, so numbers are comparable with the ones people quote."""

from __future__ import annotations

import collections
import math
import re
import string
from collections.abc import Sequence

from lmforge.errors import LmforgeError


def argmax(values: Sequence[float]) -> int:
    """Index of the first maximum (numpy's tie rule, which the harness relies on)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def choice_predictions(logliks: Sequence[float], choices: Sequence[str]) -> dict[str, int]:
    """The chosen index under each multiple-choice rule.

    acc: the highest continuation log-likelihood. acc_norm: log-likelihood divided by the
    choice's length in characters, as lm-evaluation-harness 0.4.x does (the length of the
    choice text itself, without the space that joins it to the question). acc_bytes: divided
    by its length in UTF-8 bytes.

    Hand check: lls (-4, -6), choices ("a", "ccc"): raw -4 > -6 picks 0; per character
    -4/1 = -4 < -6/3 = -2 picks 1.

    >>> choice_predictions([-4.0, -6.0], ["a", "ccc"])
    {'acc': 0, 'acc_norm': 1, 'acc_bytes': 1}

    "éé" is 2 characters but 4 bytes: per character -3 < -1.5 picks 1, per byte -1.5 ties
    -1.5 and a tie goes to the first.

    >>> choice_predictions([-6.0, -4.5], ["éé", "abc"])
    {'acc': 1, 'acc_norm': 1, 'acc_bytes': 0}
    """
    return {
        "acc": argmax(logliks),
        "acc_norm": argmax([ll / max(len(c), 1) for ll, c in zip(logliks, choices)]),
        "acc_bytes": argmax([ll / max(len(c.encode("utf-8")), 1) for ll, c in zip(logliks, choices)]),
    }


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def stderr_of_mean(values: Sequence[float]) -> float:
    """Standard error of a mean of per-item scores (sample sd / sqrt n), as the harness reports."""
    n = len(values)
    if n < 2:
        return float("nan")
    mu = mean(values)
    return math.sqrt(sum((v - mu) ** 2 for v in values) / (n - 1) / n)


def perplexities(loglik_sum: float, tokens: int, words: int, n_bytes: int) -> dict[str, float]:
    """Token perplexity, and the harness's word_perplexity, byte_perplexity and bits_per_byte.

    >>> p = perplexities(-2 * math.log(2), tokens=2, words=1, n_bytes=2)
    >>> round(p["perplexity"], 6), round(p["word_perplexity"], 6), p["bits_per_byte"]
    (2.0, 4.0, 1.0)
    """

    def safe_exp(x: float) -> float:
        return math.exp(min(x, 700.0))

    return {
        "perplexity": safe_exp(-loglik_sum / max(tokens, 1)),
        "word_perplexity": safe_exp(-loglik_sum / max(words, 1)),
        "byte_perplexity": safe_exp(-loglik_sum / max(n_bytes, 1)),
        "bits_per_byte": -loglik_sum / max(n_bytes, 1) / math.log(2),
        "nll_per_token": -loglik_sum / max(tokens, 1),
    }


def count_words(text: str) -> int:
    """Words as the harness counts them for word_perplexity."""
    return len(re.split(r"\s+", text))


def bleu_chrf(predictions: list[str], references: list[str], target_lang: str | None = None) -> dict[str, float]:
    """Corpus BLEU and chrF (sacrebleu defaults; Chinese targets use its `zh` tokenizer)."""
    try:
        import sacrebleu
    except ImportError:  # pragma: no cover - sacrebleu is a runtime dependency
        raise LmforgeError("BLEU/chrF need sacrebleu (pip install sacrebleu)") from None
    tokenize = "zh" if (target_lang or "").lower().startswith("zh") else "13a"
    bleu = sacrebleu.corpus_bleu(predictions, [references], tokenize=tokenize)
    chrf = sacrebleu.corpus_chrf(predictions, [references])
    return {"bleu": bleu.score, "chrf": chrf.score}


# ---------------------------------------------------------------- SQuAD (v1.1 evaluate script)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and the articles a/an/the, collapse whitespace.

    >>> normalize_answer("The  Eiffel Tower!")
    'eiffel tower'
    """
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, gold: str) -> float:
    """Harmonic mean of token precision and recall after `normalize_answer`.

    Hand check: "eiffel tower paris" vs "the eiffel tower": common 2, precision 2/3,
    recall 2/2, F1 = 2 * (2/3 * 1) / (2/3 + 1) = 0.8.

    >>> token_f1("Eiffel Tower, Paris", "the Eiffel Tower")
    0.8
    >>> token_f1("", ""), token_f1("x", "")
    (1.0, 0.0)
    """
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((collections.Counter(pred) & collections.Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_scores(prediction: str, golds: Sequence[str]) -> dict[str, float]:
    """Best F1 and exact match over the gold answers (SQuAD takes the max).

    >>> squad_scores("Paris", ["paris.", "the city of Paris"])
    {'f1': 1.0, 'exact_match': 1.0}
    """
    golds = list(golds) or [""]
    return {
        "f1": max(token_f1(prediction, g) for g in golds),
        "exact_match": max(float(normalize_answer(prediction) == normalize_answer(g)) for g in golds),
    }
