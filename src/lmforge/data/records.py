"""Per-source transforms: one small function per record format, each turning a raw record
into a `Conversation`. Format detection looks at the record's fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lmforge.data.conversation import Conversation, Segment
from lmforge.errors import LmforgeError

RecordTransform = Callable[[dict[str, Any], str], Conversation]

_MESSAGE_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}


def _require(record: dict[str, Any], fields: tuple[str, ...], fmt: str, where: str) -> None:
    missing = [f for f in fields if f not in record or record[f] is None]
    if missing:
        present = ", ".join(sorted(record)) or "none"
        raise LmforgeError(
            f"{where}: {fmt} record is missing field{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} (fields present: {present})"
        )


def _text(value: Any, field: str, where: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise LmforgeError(f"{where}: field '{field}' must be a string, got {type(value).__name__}")
    return value


def _content_text(content: Any, where: str) -> str:
    """OpenAI content is a string or (newer data) a list of parts like {type: text, text}."""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type", "text") == "text")
    return _text(content, "content", where)


def from_messages(record: dict[str, Any], where: str) -> Conversation:
    _require(record, ("messages",), "messages", where)
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        raise LmforgeError(f"{where}: 'messages' must be a non-empty list")
    segments = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise LmforgeError(f"{where}: messages[{index}] needs 'role' and 'content'")
        role = _MESSAGE_ROLES.get(message["role"])
        if role is None:
            raise LmforgeError(
                f"{where}: messages[{index}] has role {message['role']!r}; expected one of {', '.join(_MESSAGE_ROLES)}"
            )
        segments.append(Segment(role, _content_text(message["content"], where)))
    return Conversation(tuple(segments), where)


def from_alpaca(record: dict[str, Any], where: str) -> Conversation:
    _require(record, ("instruction", "output"), "alpaca", where)
    instruction = _text(record["instruction"], "instruction", where).strip()
    extra = _text(record.get("input") or "", "input", where).strip()
    if extra.lower() in ("<noinput>", "<no input>"):
        extra = ""
    prompt = f"{instruction}\n\n{extra}" if extra else instruction
    return Conversation((Segment("user", prompt), Segment("assistant", _text(record["output"], "output", where))), where)


def from_cot(record: dict[str, Any], where: str) -> Conversation:
    _require(record, ("question", "rationale", "answer"), "cot", where)
    return Conversation(
        (
            Segment("user", _text(record["question"], "question", where)),
            Segment("rationale", _text(record["rationale"], "rationale", where)),
            Segment("answer", _text(record["answer"], "answer", where)),
        ),
        where,
    )


TRANSFORMS: dict[str, RecordTransform] = {
    "messages": from_messages,
    "alpaca": from_alpaca,
    "cot": from_cot,
}

# Fields whose presence identifies a format, checked in this order.
_SIGNATURES: tuple[tuple[str, frozenset[str]], ...] = (
    ("messages", frozenset({"messages"})),
    ("cot", frozenset({"question", "rationale"})),
    ("alpaca", frozenset({"instruction", "output"})),
)


def detect_format(record: dict[str, Any], where: str) -> str:
    for name, fields in _SIGNATURES:
        if fields <= record.keys():
            return name
    raise LmforgeError(
        f"{where}: cannot tell the record format from its fields ({', '.join(sorted(record)) or 'none'}); "
        f"set the dataset's 'format' to one of: {', '.join(TRANSFORMS)}"
    )
