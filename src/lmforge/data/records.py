"""Per-source transforms: one small function per record format, each turning a raw record
into a `Conversation` (the schema and traps of each are in its docstring). The registry
of formats and their detection is in `registry.py`; Open-Assistant trees in `oasst.py`.

A transform raises `LmforgeError` naming the record's location for a record that does not
fit its format (the dataset may skip those: `on_bad_record: skip`), and `RecordDropped`
for a well-formed record that a filter of the format removes (counted by reason).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from lmforge.data.conversation import Conversation, Segment
from lmforge.errors import LmforgeError

Options = Mapping[str, Any]
RecordTransform = Callable[..., "Conversation | list[Conversation]"]
NO_OPTIONS: Options = {}


class RecordDropped(Exception):
    """A well-formed record that a format's own filter removes; `reason` is the count key."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def shown(value: Any, limit: int = 60) -> str:
    """A record's value in an error message: its repr (one line: control characters are
    escaped), cut to `limit` characters; a list or mapping only by its type."""
    if value is not None and not isinstance(value, (str, int, float, bool)):
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def field_names(record: dict[str, Any], limit: int = 20) -> str:
    """A record's field names for an error message: one line, the first `limit` of them."""
    names = sorted(record, key=str)
    plain = [
        name if isinstance(name, str) and name.isprintable() and len(name) <= 60 else shown(name) for name in names
    ]
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(plain[:limit]) + more or "none"


def require(record: dict[str, Any], fields: tuple[str, ...], fmt: str, where: str) -> None:
    missing = [f for f in fields if f not in record or record[f] is None]
    if missing:
        present = field_names(record)
        raise LmforgeError(
            f"{where}: {fmt} record is missing field{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} (fields present: {present})"
        )


def text_field(value: Any, field: str, where: str) -> str:
    """A field the conversation's text comes from: a string, or an integer, whose decimal
    digits are exactly what the file wrote (numeric answers: `"answer": 72`). Never a float
    (2.50 would come back as "2.5", 1e5 as "100000.0"), a boolean, null or a list made into
    text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        hint = ": write the number as a string" if isinstance(value, float) else ""
        raise LmforgeError(f"{where}: field '{field}' must be a string, got {type(value).__name__}{hint}")
    return value


def optional_text(record: dict[str, Any], field: str, where: str) -> str:
    """An optional text field: absent or null is ""."""
    value = record.get(field)
    return "" if value is None else text_field(value, field, where)


def _list_field(value: Any, field: str, where: str) -> list:
    if not isinstance(value, list):
        raise LmforgeError(f"{where}: field '{field}' must be a list, got {type(value).__name__}")
    return value


def _content_text(content: Any, field: str, where: str) -> str:
    """OpenAI content is a string or (newer data) a list of parts like {type: text, text};
    parts of other types (images) carry no text."""
    if not isinstance(content, list):
        return text_field(content, field, where)
    texts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict):
            raise LmforgeError(f"{where}: {field}[{index}] must be a part like {{type: text, text}}")
        if part.get("type", "text") == "text":
            texts.append(text_field(part.get("text"), f"{field}[{index}].text", where))
    return "".join(texts)


def _language(record: dict[str, Any]) -> dict[str, Any]:
    """Records that carry a language keep it for the language filter."""
    lang = record.get("lang") or record.get("language")
    return {"lang": lang} if isinstance(lang, str) else {}


def _chat(user: str, assistant: str, where: str, **metadata: Any) -> Conversation:
    return Conversation((Segment("user", user), Segment("assistant", assistant)), where, metadata)


# --------------------------------------------------------------------------- chat


_MESSAGE_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}


def from_messages(record: dict[str, Any], where: str, options: Options = NO_OPTIONS) -> Conversation:
    """OpenAI `messages`: [{role: system|user|assistant, content: str | [parts]}]."""
    require(record, ("messages",), "messages", where)
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        raise LmforgeError(f"{where}: 'messages' must be a non-empty list")
    segments = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise LmforgeError(f"{where}: messages[{index}] needs 'role' and 'content'")
        role = message["role"]
        if not isinstance(role, str) or role not in _MESSAGE_ROLES:
            raise LmforgeError(
                f"{where}: messages[{index}] has role {shown(role)}; expected one of {', '.join(_MESSAGE_ROLES)}"
            )
        segments.append(
            Segment(_MESSAGE_ROLES[role], _content_text(message["content"], f"messages[{index}].content", where))
        )
    return Conversation(tuple(segments), where, _language(record))


# ShareGPT dumps in the wild use many speaker names.
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "assistant": "assistant",
    "system": "system",
}


def from_sharegpt(record: dict[str, Any], where: str, options: Options = NO_OPTIONS) -> Conversation:
    """`conversations: [{from: human|gpt|..., value}]`. Leading assistant turns (chunks of
    split chats start mid-way) and a trailing user turn are dropped; consecutive turns of
    one speaker are joined."""
    require(record, ("conversations",), "sharegpt", where)
    turns: list[list[str]] = []
    for index, turn in enumerate(_list_field(record["conversations"], "conversations", where)):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise LmforgeError(f"{where}: conversations[{index}] needs 'from' and 'value'")
        speaker = turn["from"]
        role = _SHAREGPT_ROLES.get(speaker.lower()) if isinstance(speaker, str) else None
        if role is None:
            raise LmforgeError(
                f"{where}: conversations[{index}] is from {shown(speaker)}; "
                f"expected one of {', '.join(_SHAREGPT_ROLES)}"
            )
        value = text_field(turn["value"], f"conversations[{index}].value", where)
        if turns and turns[-1][0] == role:
            turns[-1][1] += "\n\n" + value
        else:
            turns.append([role, value])
    first_user = next((i for i, (role, _) in enumerate(turns) if role == "user"), len(turns))
    system = [t for t in turns[:first_user] if t[0] == "system"]
    turns = system + turns[first_user:]
    while turns and turns[-1][0] != "assistant":
        turns.pop()
    if not any(role == "assistant" for role, _ in turns):
        raise RecordDropped("no_assistant_turn")
    return Conversation(tuple(Segment(role, text) for role, text in turns), where, _language(record))


# --------------------------------------------------------------------------- instructions


_PLACEHOLDERS = ("<noinput>", "<no input>", "<nooutput>")


def from_alpaca(record: dict[str, Any], where: str, options: Options = NO_OPTIONS) -> Conversation:
    """`instruction`, `input` (may be "" or a placeholder like <noinput>), `output`."""
    require(record, ("instruction", "output"), "alpaca", where)
    instruction = text_field(record["instruction"], "instruction", where).strip()
    extra = optional_text(record, "input", where).strip()
    if extra.lower() in _PLACEHOLDERS:
        extra = ""
    prompt = f"{instruction}\n\n{extra}" if extra else instruction
    return _chat(prompt, text_field(record["output"], "output", where), where, **_language(record))


_CITATION = re.compile(r"\[\d+\]")


def from_dolly(record: dict[str, Any], where: str, options: Options = NO_OPTIONS) -> Conversation:
    """databricks-dolly-15k: `instruction`, `context` ("" when absent; citation markers like
    [42] stripped unless options.strip_citations is false), `response`, `category`."""
    require(record, ("instruction", "response"), "dolly", where)
    instruction = text_field(record["instruction"], "instruction", where).strip()
    context = optional_text(record, "context", where).strip()
    if options.get("strip_citations", True):
        context = _CITATION.sub("", context)
    prompt = f"{instruction}\n\n{context}" if context else instruction
    metadata = {"category": record["category"]} if isinstance(record.get("category"), str) else {}
    return _chat(prompt, text_field(record["response"], "response", where), where, **metadata)


def from_reddit_instruct(record: dict[str, Any], where: str, options: Options = NO_OPTIONS) -> Conversation:
    """euclaise/reddit-instruct(-curated): user = post_title (+ newline + post_text when
    there is text), assistant = comment_text; options.min_score drops low comment scores."""
    require(record, ("post_title", "comment_text"), "reddit_instruct", where)
    title = text_field(record["post_title"], "post_title", where).strip()
    body = optional_text(record, "post_text", where).strip()
    score = record.get("comment_score")
    minimum = options.get("min_score")
    if minimum is not None and isinstance(score, (int, float)) and score < minimum:
        raise RecordDropped("low_score")
    return _chat(
        f"{title}\n{body}" if body else title,
        text_field(record["comment_text"], "comment_text", where),
        where,
        **({"score": score} if score is not None else {}),
    )


# --------------------------------------------------------------------------- reasoning


def from_cot(record: dict[str, Any], where: str, options: Options = NO_OPTIONS) -> Conversation:
    require(record, ("question", "rationale", "answer"), "cot", where)
    return Conversation(
        (
            Segment("user", text_field(record["question"], "question", where)),
            Segment("rationale", text_field(record["rationale"], "rationale", where)),
            Segment("answer", text_field(record["answer"], "answer", where)),
        ),
        where,
    )


def from_tinycot(record: dict[str, Any], where: str, options: Options = NO_OPTIONS) -> Conversation:
    """euclaise/TinyCoT: prompt -> user, rationale -> rationale, target -> answer."""
    require(record, ("prompt", "rationale", "target"), "tinycot", where)
    metadata = {"source": record["source"]} if isinstance(record.get("source"), str) else {}
    return Conversation(
        (
            Segment("user", text_field(record["prompt"], "prompt", where)),
            Segment("rationale", text_field(record["rationale"], "rationale", where)),
            Segment("answer", text_field(record["target"], "target", where)),
        ),
        where,
        metadata,
    )


_GSM8K_FINAL = re.compile(r"^#### (.*)$", re.MULTILINE)
_CALCULATOR = re.compile(r"<<[^>]*>>")


def from_gsm8k(record: dict[str, Any], where: str, options: Options = NO_OPTIONS) -> Conversation:
    """GSM8K as CoT: rationale = the text before the `#### n` line, answer = n without
    thousands commas; calculator annotations `<<48/2=24>>` are removed unless
    options.calculator is 'keep'."""
    require(record, ("question", "answer"), "gsm8k", where)
    solution = text_field(record["answer"], "answer", where)
    finals = list(_GSM8K_FINAL.finditer(solution))
    if not finals:
        raise LmforgeError(f"{where}: gsm8k field 'answer' has no final line '#### <answer>'")
    final = finals[-1]
    rationale = solution[: final.start()].rstrip()
    if options.get("calculator", "strip") == "strip":
        rationale = _CALCULATOR.sub("", rationale)
    answer = final.group(1).strip().replace(",", "")
    if not answer:
        raise LmforgeError(f"{where}: gsm8k field 'answer' has an empty '####' line")
    return Conversation(
        (
            Segment("user", text_field(record["question"], "question", where)),
            Segment("rationale", rationale),
            Segment("answer", answer),
        ),
        where,
    )


_LETTERS = "ABCDEFGHIJ"


def from_arc(record: dict[str, Any], where: str, options: Options = NO_OPTIONS) -> Conversation:
    """ARC multiple choice: the question with lettered choices; the response is the gold
    letter and its text (options.arc_answer: both | letter | text). Digit labels "1".."4"
    become letters by position."""
    require(record, ("question", "choices", "answerKey"), "arc", where)
    choices = record["choices"]
    if (
        not isinstance(choices, dict)
        or not isinstance(choices.get("text"), list)
        or not isinstance(choices.get("label"), list)
        or len(choices["text"]) != len(choices["label"])
    ):
        raise LmforgeError(f"{where}: arc field 'choices' must be {{'text': [...], 'label': [...]}} of equal length")
    labels = [text_field(label, "choices.label", where) for label in choices["label"]]
    key = text_field(record["answerKey"], "answerKey", where)
    if key not in labels:
        raise LmforgeError(
            f"{where}: arc answerKey {shown(key)} is not among the choice labels "
            f"{', '.join(shown(label, 20) for label in labels[:10])}{' ...' if len(labels) > 10 else ''}"
        )
    if len(labels) > len(_LETTERS):
        raise LmforgeError(f"{where}: arc record has {len(labels)} choices; at most {len(_LETTERS)} are supported")
    texts = [text_field(t, "choices.text", where) for t in choices["text"]]
    return _lettered_choice(text_field(record["question"], "question", where), texts, labels.index(key), where, options)


def _lettered_choice(
    question: str, texts: list[str], gold: int, where: str, options: Options, **metadata: Any
) -> Conversation:
    """A multiple-choice question with lettered choices; the response is the gold letter
    and its text (options.arc_answer: both | letter | text)."""
    lines = "\n".join(f"{_LETTERS[i]}. {text}" for i, text in enumerate(texts))
    style = options.get("arc_answer", "both")
    answer = {"letter": _LETTERS[gold], "text": texts[gold]}.get(style, f"{_LETTERS[gold]}. {texts[gold]}")
    return _chat(f"{question}\n\n{lines}", answer, where, gold_index=gold, **metadata)


def from_mmlu(record: dict[str, Any], where: str, options: Options = NO_OPTIONS) -> Conversation:
    """MMLU (cais/mmlu): `question`, `choices` (a list of strings), `answer` (the gold
    index; a letter "A".."J" is accepted too), `subject` (optional: few-shot examples and
    scores are per subject)."""
    require(record, ("question", "choices", "answer"), "mmlu", where)
    texts = [text_field(t, "choices", where) for t in _list_field(record["choices"], "choices", where)]
    if not 2 <= len(texts) <= len(_LETTERS):
        raise LmforgeError(f"{where}: mmlu field 'choices' must hold 2..{len(_LETTERS)} choices, it holds {len(texts)}")
    answer = record["answer"]
    if isinstance(answer, str) and len(answer) == 1 and answer in _LETTERS[: len(texts)]:
        answer = _LETTERS.index(answer)
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(texts):
        raise LmforgeError(
            f"{where}: mmlu field 'answer' must be the index of the right choice (0..{len(texts) - 1}) "
            f"or its letter, got {shown(answer)}"
        )
    subject = record.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise LmforgeError(f"{where}: mmlu field 'subject' must be a string, got {type(subject).__name__}")
    return _lettered_choice(
        text_field(record["question"], "question", where), texts, answer, where, options, subject=subject or ""
    )


def from_bbh(record: dict[str, Any], where: str, options: Options = NO_OPTIONS) -> Conversation:
    """BIG-Bench Hard (lukaemon/bbh, SaylorTwift/bbh): `input` -> user, `target` -> answer.
    In the test splits the target is the bare answer; in chain-of-thought few-shot files it
    is the reasoning ending "So the answer is X."."""
    require(record, ("input", "target"), "bbh", where)
    return _chat(text_field(record["input"], "input", where), text_field(record["target"], "target", where), where)


def from_humaneval(record: dict[str, Any], where: str, options: Options = NO_OPTIONS) -> Conversation:
    """HumanEval (openai/openai_humaneval): `prompt` (signature and docstring) -> user,
    `canonical_solution` (the function body) -> assistant; `task_id`, `test` (defines
    `check(candidate)`) and `entry_point` ride along in metadata. Read as data only: nothing
    here runs code."""
    require(record, ("task_id", "prompt", "canonical_solution", "test", "entry_point"), "humaneval", where)
    fields = {name: text_field(record[name], name, where) for name in ("task_id", "test", "entry_point")}
    if not fields["entry_point"].isidentifier():
        raise LmforgeError(
            f"{where}: humaneval field 'entry_point' must be a function name, got {shown(fields['entry_point'])}"
        )
    return _chat(
        text_field(record["prompt"], "prompt", where),
        text_field(record["canonical_solution"], "canonical_solution", where),
        where,
        **fields,
    )


def from_squad(record: dict[str, Any], where: str, options: Options = NO_OPTIONS) -> Conversation:
    """SQuAD: `context`, `question`, `answers` ({"text": [...], "answer_start": [...]} or a
    list of strings; empty in SQuAD v2's unanswerable questions). The first answer is the
    response; all of them ride along in metadata['answers']."""
    require(record, ("context", "question", "answers"), "squad", where)
    answers = record["answers"]
    texts = answers.get("text") if isinstance(answers, dict) else answers
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise LmforgeError(f"{where}: squad field 'answers' must be {{\"text\": [...]}} or a list of strings")
    context, question = (
        text_field(record["context"], "context", where),
        text_field(record["question"], "question", where),
    )
    return _chat(f"{context}\n\nQuestion: {question}", texts[0] if texts else "", where, answers=tuple(texts))


# --------------------------------------------------------------------------- other tasks


_LANGUAGE_NAMES = {
    "en": "English",
    "zh": "Chinese",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "ru": "Russian",
    "ja": "Japanese",
    "cs": "Czech",
    "fi": "Finnish",
    "gu": "Gujarati",
    "kk": "Kazakh",
    "lt": "Lithuanian",
    "it": "Italian",
    "pt": "Portuguese",
    "ko": "Korean",
    "ar": "Arabic",
}


def from_translation(record: dict[str, Any], where: str, options: Options = NO_OPTIONS) -> Conversation:
    """`{"translation": {"zh": ..., "en": ...}}` as an instruction in the direction
    options.direction ('zh-en': from Chinese into English)."""
    require(record, ("translation",), "translation", where)
    pair = record["translation"]
    if not isinstance(pair, dict):
        raise LmforgeError(f"{where}: translation field 'translation' must be a mapping of language -> text")
    direction = options.get("direction")
    if not direction:
        raise LmforgeError(
            f"{where}: a translation dataset needs options.direction like "
            f"'{'-'.join(sorted(pair)[:2]) or 'zh-en'}' (languages here: {', '.join(sorted(pair))})"
        )
    source, _, target = str(direction).partition("-")
    for lang in (source, target):
        if lang not in pair or pair[lang] is None:
            raise LmforgeError(f"{where}: translation has no '{lang}' text (languages here: {', '.join(sorted(pair))})")
    names = (_LANGUAGE_NAMES.get(source, source), _LANGUAGE_NAMES.get(target, target))
    prompt = f"Translate from {names[0]} into {names[1]}:\n{text_field(pair[source], f'translation.{source}', where)}"
    return _chat(prompt, text_field(pair[target], f"translation.{target}", where), where, lang=target)


def from_text(record: dict[str, Any], where: str, options: Options = NO_OPTIONS) -> Conversation:
    """Plain text for pretraining: every token trained (options.text_field, default 'text')."""
    field = options.get("text_field") or "text"
    require(record, (field,), "text", where)
    return Conversation((Segment("text", text_field(record[field], field, where)),), where, _language(record))


def from_pairs(record: dict[str, Any], where: str, options: Options = NO_OPTIONS) -> Conversation:
    """Ranked / preference pairs: `prompt`, `chosen`, `rejected` (a string or a list, best
    first). SFT trains on the chosen response; the rejected ones ride along in
    metadata['rejected'] for a rank objective."""
    require(record, ("prompt", "chosen", "rejected"), "pairs", where)
    rejected = record["rejected"]
    rejected = [rejected] if isinstance(rejected, str) else _list_field(rejected, "rejected", where)
    rejected = tuple(text_field(r, "rejected", where) for r in rejected)
    chosen = text_field(record["chosen"], "chosen", where)
    if not rejected:
        raise LmforgeError(f"{where}: pairs field 'rejected' is an empty list")
    for name, text in (("chosen", chosen), *((f"rejected[{i}]", r) for i, r in enumerate(rejected))):
        if not text.strip():
            raise LmforgeError(f"{where}: pairs response '{name}' is empty")
    ranking = [" ".join(text.split()) for text in (chosen, *rejected)]
    if len(set(ranking)) < len(ranking):
        raise LmforgeError(
            f"{where}: pairs responses must differ, but the ranking holds the same response twice "
            "(compared without whitespace differences)"
        )
    return _chat(text_field(record["prompt"], "prompt", where), chosen, where, rejected=rejected)
