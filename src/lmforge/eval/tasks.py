"""Evaluation tasks: a data file (or a known dataset name) becomes a `Task` of one kind,
told from the records' fields, with one `Item` per record.

    kind              record fields (FORMATS.md)                         metrics
    perplexity        {"text"} or {"messages": [...]}                    perplexity (+ word/byte)
    generate          GSM8K {"question", "answer": "...#### n"} or CoT   exact match, strict / flexible
                      {"question", "rationale", "answer"}
    multiple_choice   ARC {"question", "choices": {"text", "label"},     acc, acc_norm, acc_bytes
                      "answerKey"} or {"question", "choices": [..], "gold": i}
    translation       {"translation": {"de": .., "en": ..}} or           BLEU, chrF
                      {"source", "target"}
    qa                SQuAD {"context", "question", "answers": {"text"}}  F1, exact match
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.data.conversation import Conversation, Segment
from lmforge.data.sources import file_sha256, read_records
from lmforge.errors import LmforgeError

PRIMARY_METRIC = {"perplexity": "perplexity", "generate": "exact_match_strict", "multiple_choice": "acc_norm",
                  "translation": "bleu", "qa": "f1"}
LOWER_IS_BETTER = frozenset({"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "nll_per_token"})


@dataclass(frozen=True)
class Item:
    """One evaluation record. Prompted kinds read `user` (a chat turn) or `plain` (the
    harness-style query, e.g. "Question: ...\\nAnswer:"), and `target`, the gold response as
    a few-shot example shows it; `response` is the same as role-tagged segments."""

    where: str
    user: str = ""
    plain: str = ""
    target: str = ""
    response: tuple[Segment, ...] = ()
    gold: Any = None
    """generate: the gold answer; multiple_choice: the gold index; translation: the
    reference; qa: the list of acceptable answers."""
    choices: tuple[str, ...] = ()
    text: str | None = None
    conversation: Conversation | None = None


@dataclass
class Task:
    name: str
    kind: str
    source: str
    sha256: str
    items: list[Item]
    pool: list[Item]
    """Few-shot examples: a separate file's, or all the task file's records (an item never
    gets itself)."""
    pool_source: str
    pool_sha256: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def primary_metric(self) -> str:
        return PRIMARY_METRIC[self.kind]


# ------------------------------------------------------------------------ record parsers


def _get(record: dict[str, Any], name: str, where: str, kind: str, types: type | tuple = str) -> Any:
    value = record.get(name)
    if value is None:
        raise LmforgeError(f"{where}: {kind} record has no '{name}' (fields present: {', '.join(sorted(record))})")
    if isinstance(value, (int, float)) and types is str and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, types):
        raise LmforgeError(f"{where}: field '{name}' of a {kind} record has the wrong type ({type(value).__name__})")
    return value


def question_plain(question: str) -> str:
    return f"Question: {question}\nAnswer:"


def parse_text(record, where, options) -> Item:
    return Item(where, text=_get(record, "text", where, "text"))


def parse_messages(record, where, options) -> Item:
    from lmforge.data.records import from_messages

    return Item(where, conversation=from_messages(record, where))


def parse_gsm8k(record, where, options) -> Item:
    question, answer = _get(record, "question", where, "gsm8k"), _get(record, "answer", where, "gsm8k")
    rationale, marker, final = answer.rpartition("#### ")
    response = ((Segment("rationale", rationale.rstrip("\n")), Segment("answer", final.strip())) if marker
                else (Segment("assistant", answer),))
    return Item(where, user=question, plain=question_plain(question), target=answer, response=response, gold=answer)


def parse_cot(record, where, options) -> Item:
    question = _get(record, "question", where, "cot")
    rationale, answer = _get(record, "rationale", where, "cot"), _get(record, "answer", where, "cot")
    return Item(where, user=question, plain=question_plain(question), target=f"{rationale}\n#### {answer}",
                response=(Segment("rationale", rationale), Segment("answer", answer)), gold=answer)


def parse_choices(record, where, options) -> Item:
    question = _get(record, "question", where, "multiple-choice") if "question" in record else _get(
        record, "query", where, "multiple-choice")
    choices = record.get("choices")
    if isinstance(choices, dict):  # ARC: parallel lists; labels may be digits
        texts, labels = choices.get("text"), choices.get("label")
        if not isinstance(texts, list) or not isinstance(labels, list) or len(texts) != len(labels):
            raise LmforgeError(f"{where}: ARC 'choices' needs parallel lists 'text' and 'label'")
        key = str(_get(record, "answerKey", where, "ARC"))
        if key not in [str(label) for label in labels]:
            raise LmforgeError(f"{where}: answerKey {key!r} is not one of the labels {labels}")
        gold = [str(label) for label in labels].index(key)
    elif isinstance(choices, list):
        texts = choices
        gold = record.get("gold", record.get("label", record.get("answer")))
        if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(texts):
            raise LmforgeError(f"{where}: 'gold' must be the index of the right choice (0..{len(texts) - 1})")
    else:
        raise LmforgeError(f"{where}: 'choices' must be a list or ARC's {{text, label}} lists")
    if len(texts) < 2 or not all(isinstance(t, str) for t in texts):
        raise LmforgeError(f"{where}: a multiple-choice record needs at least two choices, all strings")
    return Item(where, user=question, plain=question_plain(question), target=texts[gold],
                response=(Segment("assistant", texts[gold]),), gold=gold, choices=tuple(texts))


def _direction(pair: dict[str, Any], where: str, options: dict[str, Any]) -> tuple[str, str]:
    langs = options.get("langs")
    if langs:
        src, _, tgt = langs.partition("-")
    elif len(pair) == 2 and "en" in pair:
        src, tgt = next(k for k in pair if k != "en"), "en"
    else:
        raise LmforgeError(f"{where}: translation languages {sorted(pair)}: say the direction with --langs SRC-TGT")
    if src not in pair or tgt not in pair:
        raise LmforgeError(f"{where}: --langs {src}-{tgt} but the record has languages {sorted(pair)}")
    return src, tgt


def parse_translation(record, where, options) -> Item:
    if "translation" in record:
        pair = _get(record, "translation", where, "translation", dict)
        src, tgt = _direction(pair, where, options)
        source, reference = str(pair[src]), str(pair[tgt])
    else:
        src, tgt = (options.get("langs") or "source-target").partition("-")[::2]
        source, reference = _get(record, "source", where, "translation"), _get(record, "target", where, "translation")
    return Item(where, user=f"Translate from {src} to {tgt}:\n{source}", plain=f"{src}: {source}\n{tgt}:",
                target=reference, response=(Segment("assistant", reference),), gold=reference)


def parse_squad(record, where, options) -> Item:
    context, question = _get(record, "context", where, "SQuAD"), _get(record, "question", where, "SQuAD")
    answers = record.get("answers")
    texts = answers.get("text") if isinstance(answers, dict) else answers
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise LmforgeError(f"{where}: SQuAD 'answers' must be {{\"text\": [...]}} or a list of strings")
    texts = texts or [""]  # SQuAD v2 unanswerable
    return Item(where, user=f"{context}\n\nQuestion: {question}", plain=f"Context: {context}\nQuestion: {question}\nAnswer:",
                target=texts[0], response=(Segment("assistant", texts[0]),), gold=texts)


Parser = Callable[[dict[str, Any], str, dict[str, Any]], Item]

# (fields that identify the format, kind, parser), checked in this order
FORMATS: tuple[tuple[frozenset[str], str, Parser], ...] = (
    (frozenset({"messages"}), "perplexity", parse_messages),
    (frozenset({"text"}), "perplexity", parse_text),
    (frozenset({"translation"}), "translation", parse_translation),
    (frozenset({"source", "target"}), "translation", parse_translation),
    (frozenset({"context", "question", "answers"}), "qa", parse_squad),
    (frozenset({"choices"}), "multiple_choice", parse_choices),
    (frozenset({"question", "rationale", "answer"}), "generate", parse_cot),
    (frozenset({"question", "answer"}), "generate", parse_gsm8k),
)


def detect(record: dict[str, Any], where: str) -> tuple[str, Parser]:
    for fields, kind, parser in FORMATS:
        if fields <= record.keys():
            return kind, parser
    known = "; ".join("{" + ", ".join(sorted(f)) + "}" for f, _, _ in FORMATS)
    raise LmforgeError(f"{where}: cannot tell the task type from the fields ({', '.join(sorted(record)) or 'none'}); "
                       f"expected one of: {known}")


def parse_records(records: list[tuple[dict[str, Any], str]], source: str, options: dict[str, Any]) -> tuple[str, list[Item]]:
    if not records:
        raise LmforgeError(f"{source}: no records")
    kind, parser = detect(*records[0])
    return kind, [parser(record, where, options) for record, where in records]


# ------------------------------------------------------------------------ loading

# Known names -> (Hugging Face dataset, config, eval split, few-shot split); they need the
# dataset in the local Hugging Face cache (or a network).
NAMED = {
    "gsm8k": ("openai/gsm8k", "main", "test", "train"),
    "arc_challenge": ("allenai/ai2_arc", "ARC-Challenge", "test", "train"),
    "arc_easy": ("allenai/ai2_arc", "ARC-Easy", "test", "train"),
    "squad": ("rajpurkar/squad", None, "validation", "train"),
}


def _records_sha256(records: list[tuple[dict[str, Any], str]]) -> str:
    digest = hashlib.sha256()
    for record, _ in records:
        digest.update(json.dumps(record, sort_keys=True, default=str).encode("utf-8") + b"\n")
    return digest.hexdigest()


def _read_file(path: str) -> tuple[list, str]:
    if not Path(path).is_file():
        raise LmforgeError(f"{path}: task file not found (or an unknown task name; known: {', '.join(NAMED)})")
    return list(read_records(path)), file_sha256(path)


def _read_named(name: str, split_index: int) -> tuple[list, str]:
    dataset, subset, *splits = NAMED[name]
    try:
        records = list(read_records(dataset, subset=subset, split=splits[split_index]))
    except LmforgeError:
        raise
    except Exception as exc:  # datasets raises many types when offline or missing
        raise LmforgeError(f"task {name}: cannot load {dataset} ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}); pass a local file instead") from exc
    return records, _records_sha256(records)


def load_task(spec: str, fewshot: str | None = None, limit: int | None = None, **options: Any) -> Task:
    """A task from a data file or a known name; `fewshot` is a file for the few-shot pool."""
    named = spec in NAMED and not Path(spec).exists()
    records, sha = _read_named(spec, 0) if named else _read_file(spec)
    kind, items = parse_records(records, spec, options)
    task = Task(name=spec if named else Path(spec).stem, kind=kind, source=spec, sha256=sha,
                items=items[:limit] if limit is not None else items, pool=items, pool_source=spec, pool_sha256=sha,
                options=options)
    if fewshot is not None or named:
        pool_records, pool_sha = _read_file(fewshot) if fewshot is not None else _read_named(spec, 1)
        pool_kind, pool = parse_records(pool_records, fewshot or spec, options)
        if pool_kind != kind:
            raise LmforgeError(f"{fewshot}: few-shot file holds {pool_kind} records but the task is {kind}")
        task.pool, task.pool_source, task.pool_sha256 = pool, fewshot or f"{spec}[{NAMED[spec][3]}]", pool_sha
    return task
