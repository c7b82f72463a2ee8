"""Fuzzed record loading: valid JSONL records of every format (tests/fuzz/seeds.py), mutated
at random — wrong types, missing fields, cut-off lines, invalid UTF-8, raw control
characters, huge and deeply nested values, empty strings, extra fields — and read through
the loader `lmforge data inspect` and training use (`pipeline.load_conversations`).

Every outcome must be one of: the right conversations; an `LmforgeError` of one line that
starts with `file:line` (a line of the file); or, with `on_bad_record: skip`, the record
skipped and counted. Never another exception, and never a record that silently carries a
coerced value ("2.5" made from the number 2.50, "None", "[...]"; an integer in a text
field is its digits, as written, by design).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmforge.data.conversation import Conversation
from lmforge.data.oasst import MESSAGE_FORMATS
from lmforge.data.pipeline import DatasetReport, DatasetSpec, load_conversations
from lmforge.errors import LmforgeError
from tests.fuzz.seeds import SEEDS, records_of

FUZZ = settings(
    max_examples=400,
    deadline=5000,  # ms: generous on a shared machine; a hang still fails (pytest-timeout)
    derandomize=True,  # the same examples on every run: CI stays deterministic
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FORMATS = sorted(SEEDS)
ROLES = {"system", "user", "assistant", "rationale", "answer", "text"}
RAW = "\u0001RAW\u0001"
"""Placeholder string replaced by raw JSON text after dumping (values json.dumps cannot write)."""


# --------------------------------------------------------------------------- loading


@dataclass
class Outcome:
    path: Path
    conversations: list[Conversation] | None
    report: DatasetReport
    error: str | None
    replace: bool = False

    def texts(self) -> list[str]:
        return [s.text for c in self.conversations or [] for s in c.segments]

    def content(self) -> list[tuple[Any, dict[str, Any]]]:
        """What the conversations say, without where they came from."""
        return [(c.segments, dict(c.metadata)) for c in self.conversations or []]


@contextmanager
def scratch() -> Iterator[Path]:
    # hypothesis runs many examples per test: a folder of their own, not pytest's tmp_path
    with tempfile.TemporaryDirectory(prefix="lmforge-fuzz-") as folder:
        yield Path(folder)


def load(
    folder: Path, fmt: str, lines: list[bytes], declared: str, skip: bool, replace: bool = False, name: str = "d"
) -> Outcome:
    path = folder / f"{name}.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    spec = DatasetSpec(
        str(path),
        format=declared,
        options=SEEDS[fmt].options,
        on_bad_record="skip" if skip else "error",
        encoding_errors="replace" if replace else "strict",
    )
    report = DatasetReport(str(path))
    try:
        conversations = load_conversations(spec, report)
    except LmforgeError as exc:
        return Outcome(path, None, report, str(exc), replace)
    return Outcome(path, conversations, report, None, replace)


def check_sound(outcome: Outcome, lines: int, fmt: str, skip: bool) -> None:
    """What every outcome must satisfy, whatever the mutation."""
    path = outcome.path
    if outcome.error is not None:
        message = outcome.error
        assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"
        located = re.match(rf"^{re.escape(str(path))}:(\d+): \S", message)
        assert located, f"does not start with file:line: {message!r}"
        assert 1 <= int(located.group(1)) <= lines, message
        if skip:  # only what is not one record's fault stays an error when skipping
            assert "cannot tell the record format" in message, message
        return
    for conversation in outcome.conversations:
        assert isinstance(conversation, Conversation)
        assert conversation.source.startswith(f"{path}:")
        for segment in conversation.segments:
            assert segment.role in ROLES and isinstance(segment.text, str)
            assert segment.text not in ("None", "null", "True", "False", "nan", "inf"), conversation
    report = outcome.report
    if report.format in MESSAGE_FORMATS:  # every message read has one fate: kept or a removal reason
        assert sum(report.messages.values()) == messages_in(report.format, outcome.path, outcome.replace), (
            report.messages
        )
        assert report.examples == len(outcome.conversations)
    else:  # one example per record: every record read is an example or a counted drop
        assert report.records - sum(report.dropped.values()) == len(outcome.conversations), report


def messages_in(fmt: str, path: Path, replace: bool) -> int:
    """Open-Assistant messages in the lines of a file that parse as JSON objects: one a
    line (flat), or the objects a tree's replies lead to."""
    total = 0
    for raw in path.read_bytes().split(b"\n"):
        try:
            record = json.loads(raw.decode("utf-8", errors="replace" if replace else "strict"))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            continue
        if isinstance(record, dict) and fmt == "oasst_messages":
            total += 1
        elif isinstance(record, dict):
            stack = [record.get("prompt")]
            while stack:
                node = stack.pop()
                if isinstance(node, dict):
                    total += 1
                    stack += node["replies"] if isinstance(node.get("replies"), list) else []
    return total


def dumped(record: dict[str, Any], raw: str | None = None) -> bytes:
    line = json.dumps(record, ensure_ascii=False)
    if raw is not None:
        line = line.replace(json.dumps(RAW), raw)
    return line.encode("utf-8")


# --------------------------------------------------------------------------- record surgery


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path below `value` (dict keys and list indices)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    out = []
    for key, child in items:
        out.append(prefix + (key,))
        out += paths(child, prefix + (key,))
    return out


def get(record: Any, path: tuple) -> Any:
    for key in path:
        record = record[key]
    return record


def put(record: Any, path: tuple, value: Any) -> None:
    get(record, path[:-1])[path[-1]] = value


def strings(record: dict[str, Any]) -> list[tuple]:
    return [p for p in paths(record) if isinstance(get(record, p), str)]


@st.composite
def target(draw, fmt: str | None = None) -> tuple[str, list[dict[str, Any]], int]:
    """(format, records, index of the record to mutate)."""
    fmt = fmt or draw(st.sampled_from(FORMATS))
    records = records_of(fmt)
    return fmt, records, draw(st.integers(0, len(records) - 1))


def baseline(folder: Path, fmt: str, declared: str) -> Outcome:
    outcome = load(folder, fmt, [dumped(r) for r in records_of(fmt)], declared, skip=False, name="baseline")
    assert outcome.error is None and outcome.conversations, outcome.error
    return outcome


# --------------------------------------------------------------------------- the fuzzers

# Numbers that appear nowhere in the seeds: finding one in a segment means it was coerced.
# (Integers are left out: a text field takes an integer as its digits, by design.)
NUMBERS = st.sampled_from([31.4159, 1e300, -0.5])
WRONG_VALUES = st.one_of(
    NUMBERS.map(lambda n: (n, None)),
    st.sampled_from([True, False, None, [], {}, ["zq marker"], {"zq key": "zq marker"}, [{"zq key": 1}]]).map(
        lambda v: (v, None)
    ),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1" * 5000, "-" + "9" * 4400, "1e999"]).map(lambda t: (RAW, t)),
    st.integers(2, 30000).map(lambda depth: (RAW, "[" * depth + "]" * depth)),  # deep nesting
    st.integers(2, 30000).map(lambda depth: (RAW, '{"a":' * depth + "1" + "}" * depth)),
)
COERCED = ("31.4159", "1e+300", "-0.5", "zq marker", "zq key", "111111111", "99999999", "[[", "{'")


@FUZZ
@given(st.data(), WRONG_VALUES, st.booleans(), st.booleans())
def test_a_value_of_the_wrong_type_is_an_error_never_coerced(data, wrong, auto, skip):
    fmt, records, index = data.draw(target())
    path = data.draw(st.sampled_from(paths(records[index])))
    value, raw = wrong
    put(records[index], path, value)
    lines = [dumped(r, raw if i == index else None) for i, r in enumerate(records)]
    with scratch() as folder:
        outcome = load(folder, fmt, lines, "auto" if auto else fmt, skip)
        check_sound(outcome, len(lines), fmt, skip)
    for text in outcome.texts():
        assert not any(marker in text for marker in COERCED), (path, value, text[:200])


@FUZZ
@given(st.data(), st.booleans(), st.booleans())
def test_a_missing_field_is_an_error_or_a_counted_drop(data, auto, skip):
    fmt, records, index = data.draw(target())
    path = data.draw(st.sampled_from(paths(records[index])))
    del get(records[index], path[:-1])[path[-1]]
    lines = [dumped(r) for r in records]
    with scratch() as folder:
        check_sound(load(folder, fmt, lines, "auto" if auto else fmt, skip), len(lines), fmt, skip)


@FUZZ
@given(st.data(), st.booleans(), st.booleans())
def test_extra_fields_and_json_layout_change_nothing(data, nested, ascii_only):
    fmt, records, index = data.draw(target())
    record = records[index]
    dicts = [()] + [p for p in paths(record) if isinstance(get(record, p), dict)]
    where = data.draw(st.sampled_from(dicts)) if nested else ()
    extra = data.draw(st.dictionaries(st.text(min_size=1).map(lambda k: f"x_fuzz_{k}"), st.from_type(str), max_size=3))
    get(record, where).update(extra)
    separators = data.draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,  ", " :\t")]))
    lines = [json.dumps(r, ensure_ascii=ascii_only, separators=separators).encode() for r in records]
    with scratch() as folder:
        outcome = load(folder, fmt, lines, fmt, skip=False)
        assert outcome.error is None, outcome.error
        assert outcome.content() == baseline(folder, fmt, fmt).content()


MARKS = st.lists(
    st.sampled_from(
        ["\x00", "\x01", "\x07", "\t", "\x0b", "\x0c", "\r", "\x1b", "\x1f", "\x7f", "\x85", "\u2028", "\u200b"]
        + ["\ufeff", "\ufffd", "é", "中", "\U0001f600", "\u202e", '"', "\\", " ", "\r\n", "\n"]
    ),
    min_size=1,
    max_size=6,
).map("".join)


@FUZZ
@given(
    st.data(),
    st.one_of(MARKS, st.just(""), st.integers(100_000, 1_500_000).map(lambda n: "x" * n)),
    st.booleans(),
    st.booleans(),
)
def test_changed_text_is_kept_exactly(data, inserted, empty, skip):
    """Control characters, odd Unicode and huge text inside a string survive verbatim into
    the conversation (where the field is used); an emptied string gives a record or an error."""
    fmt, records, index = data.draw(target())
    path = data.draw(st.sampled_from(strings(records[index])))
    original = get(records[index], path)
    middle = len(original) // 2
    changed = "" if empty else original[:middle] + inserted + original[middle:]
    put(records[index], path, changed)
    lines = [dumped(r) for r in records]
    with scratch() as folder:
        outcome = load(folder, fmt, lines, fmt, skip)
        check_sound(outcome, len(lines), fmt, skip)
        used = len(original) >= 4 and any(original in text for text in baseline(folder, fmt, fmt).texts())
    key = path[-1]
    if outcome.conversations and used and changed and key not in ("role", "from", "type", "message_id", "parent_id"):
        assert any(changed in text for text in outcome.texts()), (path, changed[:80])


INVALID_UTF8 = st.sampled_from([b"\xff", b"\xfe", b"\xc3", b"\xe6\x97", b"\xed\xa0\x80", b"\xc0\xaf", b"\x80"])
RAW_CONTROL = st.sampled_from(
    [b"\x00", b"\x01", b"\t", b"\x0b", b"\x0c", b"\r", b"\n", b"\x1f", b"\x7f", b"\xc2\x85", b"\xe2\x80\xa8"]
)


@FUZZ
@given(st.data(), st.sampled_from(["cut", "utf8", "control"]), st.booleans(), st.booleans(), st.booleans())
def test_damaged_lines_name_their_line(data, damage, auto, skip, replace):
    """Byte-level damage: a line cut off, invalid UTF-8, raw control characters."""
    fmt, records, index = data.draw(target())
    lines = [dumped(r) for r in records]
    line = lines[index]
    at = data.draw(st.integers(1, len(line) - 1))
    if damage == "cut":
        lines[index] = line[:at]
    else:
        lines[index] = line[:at] + data.draw(INVALID_UTF8 if damage == "utf8" else RAW_CONTROL) + line[at:]
    declared = "auto" if auto else fmt
    with scratch() as folder:
        outcome = load(folder, fmt, lines, declared, skip, replace)
        check_sound(outcome, len(lines) + 1, fmt, skip)  # a raw newline makes one line more
    if damage == "cut" and not skip:
        assert outcome.error is not None
        assert outcome.error.startswith(f"{outcome.path}:{index + 1}: "), outcome.error
        assert re.search(r": (truncated record|malformed JSON): ", outcome.error), outcome.error
    if damage == "utf8" and not replace and not skip:
        assert outcome.error == (
            f"{outcome.path}:{index + 1}: invalid UTF-8 at byte offset {sum(len(x) + 1 for x in lines[:index]) + at}; "
            "set the dataset's encoding_errors: replace to substitute U+FFFD"
        )
    if damage in ("cut", "utf8") and skip and not (damage == "utf8" and replace):
        assert outcome.report.dropped["bad_record"] >= 1
