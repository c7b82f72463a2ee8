"""Evaluation tasks: a data file (or a known dataset name) becomes a `Task` of one kind with
one `Item` per record.

Records are read through the data layer's one contract: `data.registry` tells the format
from the fields and its transform (`data/records.py`) checks the record and makes the
`Conversation` that chat-style prompts show. What this module adds is only what evaluation
needs beyond that: the harness layout of the query (`plain`), the gold value, the choices,
and each benchmark's prompt layout (delimiters, stops, generation limit, sampler).

    kind              data formats (README "Evaluation")                   metrics
    perplexity        text; messages and the other chat formats            perplexity (+ word/byte)
    generate          gsm8k {"question", "answer": "...#### n"},           exact match, strict / flexible
                      cot {"question", "rationale", "answer"}, tinycot
    multiple_choice   arc {"question", "choices": {"text", "label"},       acc, acc_norm, acc_bytes
                      "answerKey"}, mmlu {"question", "subject",           (mmlu: + acc_macro over subjects)
                      "choices": [..], "answer": i}
    answer_phrase     bbh {"input", "target"}                              exact match after "the answer is"
    code              humaneval {"task_id", "prompt", "canonical_solution",  pass@1, pass@k (sandboxed, only
                      "test", "entry_point"}                               with --allow-code-execution)
    translation       translation {"translation": {"de": .., "en": ..}}    BLEU, chrF
    qa                squad {"context", "question", "answers": {"text"}}   F1, exact match
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.data.conversation import Conversation, Segment
from lmforge.data.records import RecordDropped
from lmforge.data.registry import TRANSFORMS, detect_format
from lmforge.data.sources import file_sha256, read_records
from lmforge.errors import LmforgeError

PRIMARY_METRIC = {
    "perplexity": "perplexity",
    "generate": "exact_match_strict",
    "multiple_choice": "acc_norm",
    "answer_phrase": "exact_match",
    "code": "pass@1",
    "translation": "bleu",
    "qa": "f1",
}
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
    """generate / answer_phrase: the gold answer; multiple_choice: the gold index;
    translation: the reference; qa: the list of acceptable answers; code: {"test",
    "entry_point", "task_id"}."""
    choices: tuple[str, ...] = ()
    text: str | None = None
    conversation: Conversation | None = None
    group: str = ""
    """MMLU's subject: few-shot examples come from the same group, and scores are also
    reported per group."""
    description: str = ""
    """Text before the few-shot examples of a plain prompt (MMLU's "The following are
    multiple choice questions (with answers) about <subject>.\\n\\n")."""


@dataclass(frozen=True)
class Layout:
    """How a benchmark lays out its plain prompts and generations, as its lm-evaluation-harness
    0.4.x task config does."""

    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    until: tuple[str, ...] = ("\n",)
    """Plain-prompt stop strings of generating kinds."""
    max_new_tokens: int | None = None
    """The task's generation limit; None: EvalOptions.max_new_tokens (256, the harness default)."""
    sampler: str = "harness"
    """Few-shot sampler unless --fewshot-sampler says otherwise."""


# tasks/gsm8k/gsm8k.yaml
GSM8K_LAYOUT = Layout(until=("Question:", "</s>", "<|im_end|>"))
# tasks/mmlu/default/_default_template_yaml: fewshot_config sampler first_n
MMLU_LAYOUT = Layout(sampler="first_n")
# tasks/bbh/cot_fewshot/_cot_fewshot_template_yaml
BBH_LAYOUT = Layout(target_delimiter="", until=("</s>", "Q", "\n\n"), max_new_tokens=1024, sampler="first_n")
# tasks/humaneval/humaneval.yaml
HUMANEVAL_LAYOUT = Layout(
    target_delimiter="", until=("\nclass", "\ndef", "\n#", "\nif", "\nprint"), max_new_tokens=1024
)


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
    layout: Layout = Layout()
    data_format: str = ""

    @property
    def primary_metric(self) -> str:
        return PRIMARY_METRIC[self.kind]


# ------------------------------------------------------------------------ items per format


def question_plain(question: str) -> str:
    return f"Question: {question}\nAnswer:"


def _gsm8k_item(record, conversation, where, options) -> Item:
    question, answer = conversation.segments[0].text, str(record["answer"])
    # the response segments are the data layer's (calculator notes removed, as trained);
    # the few-shot target and the gold are the record's text, as the harness shows them
    return Item(
        where,
        user=question,
        plain=question_plain(question),
        target=answer,
        response=conversation.segments[1:],
        gold=answer,
        conversation=conversation,
    )


def _cot_item(record, conversation, where, options) -> Item:
    user, rationale, answer = (s.text for s in conversation.segments)
    return Item(
        where,
        user=user,
        plain=question_plain(user),
        target=f"{rationale}\n#### {answer}",
        response=conversation.segments[1:],
        gold=answer,
        conversation=conversation,
    )


def _arc_item(record, conversation, where, options) -> Item:
    question, texts = str(record["question"]), tuple(str(t) for t in record["choices"]["text"])
    gold = conversation.metadata["gold_index"]
    return Item(
        where,
        user=question,
        plain=question_plain(question),
        target=texts[gold],
        response=(Segment("assistant", texts[gold]),),
        gold=gold,
        choices=texts,
        conversation=conversation,
    )


_LETTERS = "ABCDEFGHIJ"


def _mmlu_item(record, conversation, where, options) -> Item:
    """The harness's MMLU layout: the question, lettered choices, "Answer:", scored over the
    letters; a subject's prompt starts with its description (underscores read as spaces,
    as the harness's generated task configs write it)."""
    choices, gold = record["choices"], conversation.metadata["gold_index"]
    letters = tuple(_LETTERS[: len(choices)])
    lines = "".join(f"\n{letter}. {choice}" for letter, choice in zip(letters, choices))
    subject = conversation.metadata.get("subject", "")
    description = (
        f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        if subject
        else ""
    )
    return Item(
        where,
        user=conversation.segments[0].text,
        plain=f"{str(record['question']).strip()}{lines}\nAnswer:",
        target=letters[gold],
        response=(Segment("assistant", letters[gold]),),
        gold=gold,
        choices=letters,
        conversation=conversation,
        group=subject,
        description=description,
    )


def _bbh_item(record, conversation, where, options) -> Item:
    question, target = conversation.segments[0].text, conversation.segments[1].text
    return Item(
        where,
        user=question,
        plain=f"Q: {question}\nA: Let's think step by step.\n",
        target=target,
        response=(Segment("assistant", target),),
        gold=target,
        conversation=conversation,
    )


def _humaneval_item(record, conversation, where, options) -> Item:
    prompt, solution = conversation.segments[0].text, conversation.segments[1].text
    gold = {name: conversation.metadata[name] for name in ("task_id", "test", "entry_point")}
    return Item(
        where,
        user=prompt,
        plain=prompt,
        target=solution,
        response=(Segment("assistant", solution),),
        gold=gold,
        conversation=conversation,
    )


def _translation_direction(record: dict[str, Any], where: str, options: dict[str, Any]) -> dict[str, Any]:
    """The data layer's options.direction from --langs, or "xx-en" for a pair with English."""
    pair = record.get("translation")
    if options.get("langs") or not isinstance(pair, dict):
        return {"direction": options.get("langs")}
    if len(pair) == 2 and "en" in pair:
        return {"direction": f"{next(k for k in pair if k != 'en')}-en"}
    raise LmforgeError(f"{where}: translation languages {sorted(pair)}: say the direction with --langs SRC-TGT")


def _translation_item(record, conversation, where, options) -> Item:
    src, _, tgt = _translation_direction(record, where, options)["direction"].partition("-")
    source, reference = str(record["translation"][src]), conversation.segments[1].text
    return Item(
        where,
        user=conversation.segments[0].text,
        plain=f"{src}: {source}\n{tgt}:",
        target=reference,
        response=(Segment("assistant", reference),),
        gold=reference,
        conversation=conversation,
    )


def _squad_item(record, conversation, where, options) -> Item:
    answers = list(conversation.metadata["answers"]) or [""]  # SQuAD v2 unanswerable: the empty answer
    return Item(
        where,
        user=conversation.segments[0].text,
        plain=f"Context: {record['context']}\nQuestion: {record['question']}\nAnswer:",
        target=answers[0],
        response=(Segment("assistant", answers[0]),),
        gold=answers,
        conversation=conversation,
    )


def _text_item(record, conversation, where, options) -> Item:
    return Item(where, text=conversation.segments[0].text, conversation=conversation)


def _chat_item(record, conversation, where, options) -> Item:
    return Item(where, conversation=conversation)


ItemBuilder = Callable[[dict[str, Any], Conversation, str, dict[str, Any]], Item]

# data format -> (kind, item builder, layout); chat formats are scored by perplexity
EVAL_FORMATS: dict[str, tuple[str, ItemBuilder, Layout]] = {
    "gsm8k": ("generate", _gsm8k_item, GSM8K_LAYOUT),
    "cot": ("generate", _cot_item, GSM8K_LAYOUT),
    "tinycot": ("generate", _cot_item, GSM8K_LAYOUT),
    "arc": ("multiple_choice", _arc_item, Layout()),
    "mmlu": ("multiple_choice", _mmlu_item, MMLU_LAYOUT),
    "bbh": ("answer_phrase", _bbh_item, BBH_LAYOUT),
    "humaneval": ("code", _humaneval_item, HUMANEVAL_LAYOUT),
    "translation": ("translation", _translation_item, Layout()),
    "squad": ("qa", _squad_item, Layout()),
    "text": ("perplexity", _text_item, Layout()),
    **{
        chat: ("perplexity", _chat_item, Layout())
        for chat in ("messages", "sharegpt", "oasst_trees", "alpaca", "dolly", "reddit_instruct")
    },
}


def _format_of(record: dict[str, Any], where: str) -> str:
    try:
        fmt = detect_format(record, where)
    except LmforgeError:
        raise LmforgeError(
            f"{where}: cannot tell the task type from the fields ({', '.join(sorted(record)) or 'none'}); "
            f"see the task schemas in the README (lmforge eval)"
        ) from None
    if fmt not in EVAL_FORMATS:
        raise LmforgeError(
            f"{where}: {fmt} records cannot be an evaluation task; task formats: {', '.join(EVAL_FORMATS)}"
        )
    return fmt


def _item(fmt: str, record: dict[str, Any], where: str, options: dict[str, Any]) -> Item:
    data_options = _translation_direction(record, where, options) if fmt == "translation" else {}
    try:
        conversation = TRANSFORMS[fmt](record, where, data_options)
    except RecordDropped as dropped:
        raise LmforgeError(f"{where}: the {fmt} format's filter drops this record ({dropped.reason})") from None
    if isinstance(conversation, list):  # Open-Assistant trees with all paths: one item per tree
        conversation = conversation[0]
    return EVAL_FORMATS[fmt][1](record, conversation, where, options)


def parse_records(
    records: list[tuple[dict[str, Any], str]], source: str, options: dict[str, Any]
) -> tuple[str, list[Item]]:
    """The data format of a task file and its items; every record must be of the first
    record's format (a file mixing them is an error at the first record that differs)."""
    if not records:
        raise LmforgeError(f"{source}: no records")
    first_record, first_where = records[0]
    fmt = _format_of(first_record, first_where)
    items = []
    for index, (record, where) in enumerate(records):
        record_format = _format_of(record, where) if index else fmt
        if record_format != fmt:
            raise LmforgeError(
                f"{where}: a {record_format} record in a task file of {fmt} records "
                f"({first_where} is {fmt}); one task file holds one format"
            )
        items.append(_item(fmt, record, where, options))
    return fmt, items


# ------------------------------------------------------------------------ loading

# Known names -> (Hugging Face dataset, config, eval split, few-shot split or None); they
# need the dataset in the local Hugging Face cache (or a network).
NAMED = {
    "gsm8k": ("openai/gsm8k", "main", "test", "train"),
    "arc_challenge": ("allenai/ai2_arc", "ARC-Challenge", "test", "train"),
    "arc_easy": ("allenai/ai2_arc", "ARC-Easy", "test", "train"),
    "squad": ("rajpurkar/squad", None, "validation", "train"),
    "mmlu": ("cais/mmlu", "all", "test", "dev"),
    "humaneval": ("openai/openai_humaneval", None, "test", None),
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


def _read_named(name: str, split: str) -> tuple[list, str]:
    dataset, subset, *_ = NAMED[name]
    try:
        records = list(read_records(dataset, subset=subset, split=split))
    except LmforgeError:
        raise
    except Exception as exc:  # datasets raises many types when offline or missing
        raise LmforgeError(
            f"task {name}: cannot load {dataset} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); pass a local file instead"
        ) from exc
    return records, _records_sha256(records)


def load_task(spec: str, fewshot: str | None = None, limit: int | None = None, **options: Any) -> Task:
    """A task from a data file or a known name; `fewshot` is a file for the few-shot pool."""
    named = spec in NAMED and not Path(spec).exists()
    records, sha = _read_named(spec, NAMED[spec][2]) if named else _read_file(spec)
    fmt, items = parse_records(records, spec, options)
    kind, _, layout = EVAL_FORMATS[fmt]
    task = Task(
        name=spec if named else Path(spec).stem,
        kind=kind,
        source=spec,
        sha256=sha,
        items=items[:limit] if limit is not None else items,
        pool=items,
        pool_source=spec,
        pool_sha256=sha,
        options=options,
        layout=layout,
        data_format=fmt,
    )
    fewshot_split = NAMED[spec][3] if named else None
    if fewshot is not None or fewshot_split is not None:
        pool_records, pool_sha = _read_file(fewshot) if fewshot is not None else _read_named(spec, fewshot_split)
        pool_format, pool = parse_records(pool_records, fewshot or spec, options)
        if EVAL_FORMATS[pool_format][0] != kind:
            raise LmforgeError(
                f"{fewshot}: few-shot file holds {EVAL_FORMATS[pool_format][0]} records ({pool_format}) "
                f"but the task is {kind} ({fmt})"
            )
        task.pool, task.pool_source, task.pool_sha256 = pool, fewshot or f"{spec}[{fewshot_split}]", pool_sha
    return task
