"""Regressions found by the fuzzed loaders (tests/fuzz): each input once escaped as another
exception (a traceback), was silently read wrong, or could not be skipped. Now each gives
the right record, a one-line LmforgeError naming file:line, or a counted skip."""

from __future__ import annotations

import json

import pytest

from lmforge.data.pipeline import DatasetReport, DatasetSpec, load_conversations
from lmforge.data.records import from_alpaca, from_dolly, from_messages, from_reddit_instruct
from lmforge.data.sources import read_records
from lmforge.errors import LmforgeError
from tests.data.test_real_formats import OA_TREE, node, tree
from tests.fuzz.seeds import flat_messages

W = "d.jsonl:1"
GOOD = {"question": "How many legs has a cat?", "rationale": "Cats walk on four legs.", "answer": "4"}


def load(path, **spec):
    report = DatasetReport(str(path))
    return load_conversations(DatasetSpec(str(path), **spec), report), report


def write_lines(path, lines: list[str]):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- reading lines


# Once: RecursionError from the JSON decoder.
def test_nesting_too_deep_for_the_decoder_is_a_bad_record(tmp_path):
    deep = '{"question": "q", "rationale": "r", "answer": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(GOOD), deep])
    with pytest.raises(LmforgeError) as info:
        load(path)
    assert str(info.value) == f"{path}:2: malformed JSON: nested too deeply to read"
    conversations, report = load(path, on_bad_record="skip")
    assert len(conversations) == 1 and report.records == 2 and report.dropped == {"bad_record": 1}


# Once: ValueError "Exceeds the limit (4300 digits) for integer string conversion".
def test_an_integer_too_long_to_read_is_a_bad_record(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", ['{"question": "q", "rationale": "r", "answer": ' + "7" * 5000 + "}"])
    with pytest.raises(LmforgeError) as info:
        load(path)
    assert str(info.value) == f"{path}:1: malformed JSON: exceeds the limit (4300 digits) for integer string conversion"


# Once: the escape was read into the text and the tokenizer later failed with a TypeError.
def test_a_lone_surrogate_escape_is_invalid_unicode_or_replaced(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", ['{"text": "a\\ud800b \\ud83d\\ude00"}'])
    with pytest.raises(LmforgeError, match=rf"^{path}:1: invalid Unicode: a \\u escape encodes a lone surrogate"):
        load(path)
    [conversation], _ = load(path, encoding_errors="replace")
    assert conversation.segments[0].text == "a\ufffdb \U0001f600"  # the valid pair is kept


# Once: a line with invalid UTF-8 stopped the whole dataset even with on_bad_record: skip.
def test_invalid_utf8_line_is_skipped_and_counted(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"question": "\xff"}\n' + json.dumps(GOOD).encode() + b"\n")
    conversations, report = load(path, on_bad_record="skip")
    assert len(conversations) == 2 and report.records == 3 and report.dropped == {"bad_record": 1}
    assert report.bad_records == [f"{path}:2: " + report.bad_records[0].split(": ", 1)[1]]
    assert "invalid UTF-8 at byte offset" in report.bad_records[0]


# Once: "truncated record: the line ends inside a string" for a raw carriage return mid-line.
def test_a_raw_control_character_mid_line_is_not_called_truncated(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", ['{"text": "a\rb"}'])
    with pytest.raises(LmforgeError) as info:
        list(read_records(path))
    assert str(info.value) == f"{path}:1: malformed JSON: Invalid control character at (column 12)"


# Once: a non-object element of a JSON array stopped the dataset even when skipping.
def test_json_array_element_that_is_not_an_object_can_be_skipped(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([GOOD, 3, GOOD]))
    conversations, report = load(path, on_bad_record="skip")
    assert len(conversations) == 2 and report.bad_records == [f"{path}[1]: expected a JSON object, got int"]


# Once: _csv.Error "field larger than field limit (131072)" escaped as a traceback.
def test_csv_field_longer_than_128k(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("question,rationale,answer\n" + f'"{"x" * 200_000}",r,4\n')
    [conversation], _ = load(path, format="cot")
    assert len(conversation.segments[0].text) == 200_000


# Once: the extra value sat under the key None and sorting the field names raised TypeError.
def test_csv_row_with_more_fields_than_the_header(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("question,rationale,answer\nq,r,4\nq,r,4,extra\nq,r\n")
    with pytest.raises(LmforgeError) as info:
        load(path, format="cot")
    assert str(info.value) == f"{path}:3: row has 4 fields, the header has 3"
    conversations, report = load(path, format="cot", on_bad_record="skip")
    assert len(conversations) == 1 and report.dropped == {"bad_record": 2}


# --------------------------------------------------------------------------- record formats


# Once: TypeError "unhashable type: 'list'" looking the role up.
def test_messages_role_that_is_a_list():
    with pytest.raises(LmforgeError) as info:
        from_messages({"messages": [{"role": ["user"], "content": "hi"}]}, W)
    assert str(info.value) == "d.jsonl:1: messages[0] has role a list; expected one of system, user, assistant"


# Once: TypeError joining a number into the text; a part that is no object was dropped silently.
@pytest.mark.parametrize(
    "content, problem",
    [
        (
            [{"type": "text", "text": 5.5}],
            "field 'messages[0].content[0].text' must be a string, got float: write the number as a string",
        ),
        (["hi"], "messages[0].content[0] must be a part like {type: text, text}"),
    ],
)
def test_messages_content_parts_of_the_wrong_type(content, problem):
    with pytest.raises(LmforgeError) as info:
        from_messages({"messages": [{"role": "user", "content": content}]}, W)
    assert str(info.value) == f"{W}: {problem}"


# Once: 0, false or [] in an optional text field silently became "" (an integer is now its digits).
@pytest.mark.parametrize(
    "transform, record, field",
    [
        (from_alpaca, {"instruction": "i", "input": False, "output": "o"}, "input"),
        (from_dolly, {"instruction": "i", "context": [], "response": "r"}, "context"),
        (from_reddit_instruct, {"post_title": "t", "post_text": False, "comment_text": "c"}, "post_text"),
    ],
)
def test_optional_text_field_of_the_wrong_type(transform, record, field):
    with pytest.raises(LmforgeError, match=rf"^{W}: field '{field}' must be a string, got "):
        transform(record, W)


# Once: the field list of a "missing field" error printed a key holding a newline as is.
def test_missing_field_error_stays_on_one_line():
    with pytest.raises(LmforgeError) as info:
        from_alpaca({"instruction": "i", "bad\nkey": 1}, W)
    assert (
        str(info.value)
        == "d.jsonl:1: alpaca record is missing field 'output' (fields present: 'bad\\nkey', instruction)"
    )


# --------------------------------------------------------------------------- Open-Assistant


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"rank": "1"}, "message 'a2': field 'rank' must be a whole number, got '1'"),  # once: TypeError comparing
        ({"replies": {"x": 1}}, "message 'a2': field 'replies' must be a list, got dict"),  # once: ignored
        ({"role": ["assistant"]}, "message 'a2' has role a list; expected prompter or assistant"),
        ({"deleted": "false"}, "message 'a2': field 'deleted' must be true or false, got 'false'"),  # once: truthy
        ({"text": 3}, "message 'a2': field 'text' must be a string, got int"),  # once: "3"
    ],
)
def test_oasst_tree_message_of_the_wrong_type(tmp_path, write_jsonl, change, problem):
    bad = json.loads(json.dumps(OA_TREE))
    bad["prompt"]["replies"][0].update(change)
    path = write_jsonl(tmp_path / "t.trees.jsonl", [OA_TREE, bad])
    with pytest.raises(LmforgeError) as info:
        load(path)
    assert str(info.value) == f"{path}:2: {problem}"
    conversations, report = load(path, on_bad_record="skip")
    assert len(conversations) == 1 and report.dropped == {"bad_record": 1}
    assert report.messages == {"kept": 2, "not_best": 4, "deleted": 1, "bad_record": 7}


# Once: TypeError "unhashable type" for a list message_id; the bad message could not be
# skipped (the grouping pass raised outside the skip handler).
def test_oasst_flat_bad_message_names_its_own_line_and_can_be_skipped(tmp_path, write_jsonl):
    rows = flat_messages(OA_TREE)
    rows[4]["message_id"] = ["a3"]  # a3, the reply under p2
    path = write_jsonl(tmp_path / "m.messages.jsonl", rows)
    with pytest.raises(LmforgeError) as info:
        load(path)
    assert str(info.value) == f"{path}:5: a message needs a string 'message_id', got list"
    conversations, report = load(path, on_bad_record="skip", options={"threads": "all"})
    assert [[s.text for s in c.segments] for c in conversations] == [
        ["Name a color.", "Red."],
        ["Name a color.", "Blue."],  # p2 lost its reply: the thread ends at a1
        ["Name a color.", "Yellow."],
    ]
    assert report.messages == {"kept": 4, "deleted": 1, "ends_on_prompter": 1, "bad_record": 1}


# Once: a later message with an earlier message_id silently replaced it (here the prompt,
# so the whole tree was lost without a word).
def test_oasst_flat_duplicate_message_id(tmp_path, write_jsonl):
    rows = flat_messages(OA_TREE)
    loop = {**rows[1], "message_id": "p1", "parent_id": "a2"}
    path = write_jsonl(tmp_path / "m.messages.jsonl", rows + [loop])
    with pytest.raises(LmforgeError) as info:
        load(path)
    assert str(info.value) == f"{path}:8: duplicate message_id 'p1' (first at {path}:1)"


def test_oasst_flat_parent_loop_is_a_bad_record(tmp_path, write_jsonl):
    rows = flat_messages(OA_TREE) + [
        {**node("x", "prompter", "Loop?"), "parent_id": "y"},
        {**node("y", "assistant", "Loop."), "parent_id": "x"},
    ]
    path = write_jsonl(tmp_path / "m.messages.jsonl", rows)
    with pytest.raises(LmforgeError) as info:
        load(path)
    assert str(info.value) == f"{path}:8: message 'x' is in a loop of parent_id references"


# Once: RecursionError building threads from a long reply chain (the flat layout has no
# nesting limit of its own).
def test_oasst_flat_reply_chain_deeper_than_the_recursion_limit(tmp_path, write_jsonl):
    depth = 5000
    rows = [
        {
            **node(f"m{i}", "prompter" if i % 2 == 0 else "assistant", f"turn {i}"),
            "parent_id": f"m{i - 1}" if i else None,
        }
        for i in range(depth)
    ]
    [conversation], report = load(write_jsonl(tmp_path / "m.messages.jsonl", rows))
    assert len(conversation.segments) == depth and report.messages == {"kept": depth}


# Once: a message with two prompter replies and no answer below gave the same thread twice.
def test_oasst_all_threads_no_duplicate_when_prompter_replies_are_trimmed(tmp_path, write_jsonl):
    record = tree(
        node(
            "p",
            "prompter",
            "Hi",
            [node("a", "assistant", "Hello.", [node("q1", "prompter", "More?"), node("q2", "prompter", "Why?")])],
        )
    )
    conversations, report = load(write_jsonl(tmp_path / "t.trees.jsonl", [record]), options={"threads": "all"})
    assert [[s.text for s in c.segments] for c in conversations] == [["Hi", "Hello."]]
    assert report.messages == {"kept": 2, "ends_on_prompter": 2}
