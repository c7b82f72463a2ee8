"""Per-source transforms (record -> Conversation), format detection, and reading records
from files with the file:line each came from."""

from __future__ import annotations

import gzip
import json

import pytest

from lmforge.data.conversation import Conversation, Segment
from lmforge.data.records import from_alpaca, from_cot, from_messages
from lmforge.data.registry import TRANSFORMS, detect_format
from lmforge.data.sources import read_records
from lmforge.errors import LmforgeError

WHERE = "train.jsonl:3"


# --------------------------------------------------------------------------- messages


def test_messages_with_string_content():
    record = {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is 12 plus 7?"},
            {"role": "assistant", "content": "19"},
            {"role": "user", "content": "And 3 times 4?"},
            {"role": "assistant", "content": "12"},
        ]
    }
    assert from_messages(record, WHERE) == Conversation(
        (
            Segment("system", "You are a helpful assistant."),
            Segment("user", "What is 12 plus 7?"),
            Segment("assistant", "19"),
            Segment("user", "And 3 times 4?"),
            Segment("assistant", "12"),
        ),
        WHERE,
    )


def test_messages_with_list_of_parts_content():
    record = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe "},
                    {"type": "image_url", "image_url": {"url": "http://x/cat.png"}},  # not text: skipped
                    {"text": "this cat."},  # no type means text
                ],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
        ]
    }
    conversation = from_messages(record, WHERE)
    assert conversation.segments == (Segment("user", "Describe this cat."), Segment("assistant", "A cat."))


def test_messages_bad_role_names_the_message():
    record = {"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "hello"}]}
    with pytest.raises(LmforgeError) as info:
        from_messages(record, WHERE)
    assert str(info.value) == "train.jsonl:3: messages[1] has role 'bot'; expected one of system, user, assistant"


def test_messages_entry_without_content_names_the_message():
    record = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]}
    with pytest.raises(LmforgeError, match=r"^train\.jsonl:3: messages\[1\] needs 'role' and 'content'$"):
        from_messages(record, WHERE)


@pytest.mark.parametrize("messages", [[], "hello"])
def test_messages_must_be_a_non_empty_list(messages):
    with pytest.raises(LmforgeError, match=r"^train\.jsonl:3: 'messages' must be a non-empty list$"):
        from_messages({"messages": messages}, WHERE)


def test_messages_content_of_wrong_type():
    record = {"messages": [{"role": "user", "content": {"text": "hi"}}]}
    with pytest.raises(
        LmforgeError, match=r"^train\.jsonl:3: field 'messages\[0\]\.content' must be a string, got dict$"
    ):
        from_messages(record, WHERE)


# --------------------------------------------------------------------------- alpaca


def test_alpaca_without_input():
    conversation = from_alpaca({"instruction": "  Name a color. ", "input": "", "output": "Red."}, WHERE)
    assert conversation.segments == (Segment("user", "Name a color."), Segment("assistant", "Red."))
    assert conversation.source == WHERE


def test_alpaca_with_input_joins_it_after_a_blank_line():
    record = {"instruction": "Translate into French.", "input": " hello ", "output": "bonjour"}
    assert from_alpaca(record, WHERE).segments == (
        Segment("user", "Translate into French.\n\nhello"),
        Segment("assistant", "bonjour"),
    )


@pytest.mark.parametrize("placeholder", ["<noinput>", "<No Input>", None])
def test_alpaca_placeholder_input_counts_as_empty(placeholder):
    record = {"instruction": "Name a color.", "input": placeholder, "output": "Red."}
    assert from_alpaca(record, WHERE).segments[0] == Segment("user", "Name a color.")


# An integer is text exactly as the file wrote it; a float is not (1e5 would become "100000.0").
def test_alpaca_integer_output_is_its_digits():
    assert from_alpaca({"instruction": "12 plus 7?", "output": 19}, WHERE).segments[1] == Segment("assistant", "19")


def test_alpaca_float_output_is_rejected_not_made_into_text():
    with pytest.raises(
        LmforgeError,
        match=r"^train\.jsonl:3: field 'output' must be a string, got float: write the number as a string$",
    ):
        from_alpaca({"instruction": "What is 1e5?", "output": 1e5}, WHERE)


def test_alpaca_boolean_output_is_rejected():
    with pytest.raises(LmforgeError, match=r"^train\.jsonl:3: field 'output' must be a string, got bool$"):
        from_alpaca({"instruction": "True?", "output": True}, WHERE)


def test_alpaca_missing_output_names_field_and_location():
    with pytest.raises(LmforgeError) as info:
        from_alpaca({"instruction": "Name a color.", "input": ""}, WHERE)
    assert str(info.value) == (
        "train.jsonl:3: alpaca record is missing field 'output' (fields present: input, instruction)"
    )


def test_null_field_counts_as_missing():
    with pytest.raises(LmforgeError) as info:
        from_alpaca({"instruction": None, "output": None}, WHERE)
    assert str(info.value) == (
        "train.jsonl:3: alpaca record is missing fields 'instruction', 'output' (fields present: instruction, output)"
    )


# --------------------------------------------------------------------------- cot


def test_cot_becomes_question_rationale_answer():
    record = {"question": "What is 12 plus 7?", "rationale": "12 plus 7 is 19.", "answer": "19"}
    conversation = from_cot(record, WHERE)
    assert conversation.segments == (
        Segment("user", "What is 12 plus 7?"),
        Segment("rationale", "12 plus 7 is 19."),
        Segment("answer", "19"),
    )
    assert conversation.is_cot
    assert conversation.final_answer() == "19"
    assert conversation.prompt_segments() == (Segment("user", "What is 12 plus 7?"),)


def test_cot_missing_answer_names_field_and_location():
    with pytest.raises(LmforgeError) as info:
        from_cot({"question": "q", "rationale": "r"}, "data.json[4]")
    assert str(info.value) == "data.json[4]: cot record is missing field 'answer' (fields present: question, rationale)"


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    "record, expected",
    [
        ({"messages": [], "instruction": "x", "output": "y"}, "messages"),  # messages is checked first
        ({"question": "q", "rationale": "r", "answer": "a"}, "cot"),
        ({"question": "q", "rationale": "r"}, "cot"),  # detected, then the transform reports the gap
        ({"instruction": "i", "input": "", "output": "o"}, "alpaca"),
        ({"instruction": "i", "output": "o"}, "alpaca"),
    ],
)
def test_detect_format(record, expected):
    assert detect_format(record, WHERE) == expected


def test_detect_format_unknown_fields():
    with pytest.raises(LmforgeError) as info:
        detect_format({"prompt": "p", "completion": "c"}, WHERE)
    assert str(info.value) == (
        "train.jsonl:3: cannot tell the record format from its fields (completion, prompt); "
        f"set the dataset's 'format' to one of: {', '.join(TRANSFORMS)}"
    )


def test_detect_format_empty_record():
    with pytest.raises(LmforgeError, match=r"from its fields \(none\)"):
        detect_format({}, WHERE)


# --------------------------------------------------------------------------- files

ROWS = [{"instruction": "a", "output": "1"}, {"instruction": "b", "output": "2"}, {"instruction": "c", "output": "3"}]


def test_jsonl_locations_count_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n   \n" + json.dumps(ROWS[1]) + "\n" + json.dumps(ROWS[2]) + "\n")
    assert list(read_records(path)) == [(ROWS[0], f"{path}:1"), (ROWS[1], f"{path}:4"), (ROWS[2], f"{path}:5")]


def test_jsonl_without_trailing_newline(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps(ROWS[1]))
    assert [where for _, where in read_records(path)] == [f"{path}:1", f"{path}:2"]


def test_gzip_jsonl(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(json.dumps(r) for r in ROWS) + "\n")
    assert list(read_records(path)) == [(ROWS[0], f"{path}:1"), (ROWS[1], f"{path}:2"), (ROWS[2], f"{path}:3")]


def test_json_array_gives_index_locations(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(ROWS, indent=2))
    assert list(read_records(path)) == [(ROWS[0], f"{path}[0]"), (ROWS[1], f"{path}[1]"), (ROWS[2], f"{path}[2]")]


def test_gzip_json_array(tmp_path):
    path = tmp_path / "d.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        json.dump(ROWS[:2], handle)
    assert list(read_records(path)) == [(ROWS[0], f"{path}[0]"), (ROWS[1], f"{path}[1]")]


def test_json_single_object_is_one_record(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(ROWS[0]))
    assert list(read_records(path)) == [(ROWS[0], f"{path}[0]")]


def test_json_array_with_a_non_object(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([ROWS[0], [1, 2]]))
    records = read_records(path)
    assert next(records) == (ROWS[0], f"{path}[0]")
    with pytest.raises(LmforgeError, match=r"d\.json\[1\]: expected a JSON object, got list$"):
        next(records)


def test_malformed_json_array_reports_its_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n  {"instruction": "a", "output": "1"},\n  {"instruction": "b" "output": "2"}\n]\n')
    with pytest.raises(LmforgeError) as info:
        list(read_records(path))
    assert str(info.value).startswith(f"{path}:3: malformed JSON: ")


def test_malformed_jsonl_line_reports_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    # line 1 ok, line 2 blank, line 3 ok, line 4 broken
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[1]) + '\n{"instruction": "c", "output": }\n')
    records = read_records(path)
    assert [where for _, where in (next(records), next(records))] == [f"{path}:1", f"{path}:3"]
    with pytest.raises(LmforgeError) as info:
        next(records)
    assert str(info.value) == f"{path}:4: malformed JSON: Expecting value (column 32)"


def test_a_line_cut_off_inside_a_string_is_reported_as_truncated(tmp_path):
    """Mid-file, the decoder stops at the cut line's own newline ("Invalid control
    character"); at the end of the file it finds no closing quote: both are truncation."""
    path = tmp_path / "d.jsonl"
    path.write_text(
        json.dumps(ROWS[0]) + '\n{"instruction": "cut he\n' + json.dumps(ROWS[1]) + '\n{"instruction": "end'
    )
    with pytest.raises(LmforgeError) as info:
        list(read_records(path))
    assert str(info.value) == f"{path}:2: truncated record: the line ends inside a string (column 24)"
    skipped = []
    records = list(read_records(path, lambda where, problem: skipped.append(f"{where}: {problem}")))
    assert len(records) == 2 and [s.split(": ", 1)[1] for s in skipped] == [
        "truncated record: the line ends inside a string (column 24)",
        "truncated record: the line ends inside a string (column 21)",
    ]


@pytest.mark.parametrize("line, kind", [("[1, 2]", "list"), ('"text"', "str"), ("3", "int"), ("null", "NoneType")])
def test_jsonl_line_that_is_not_an_object(tmp_path, line, kind):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + line + "\n")
    with pytest.raises(LmforgeError) as info:
        list(read_records(path))
    assert str(info.value) == f"{path}:2: expected a JSON object, got {kind}"


def test_missing_file(tmp_path):
    path = tmp_path / "absent.jsonl"
    with pytest.raises(LmforgeError) as info:
        list(read_records(path))
    assert str(info.value) == f"{path}: data file not found"


@pytest.mark.parametrize("name, suffix", [("d.txt", ".txt"), ("d.txt.gz", ".txt"), ("d.gz", "")])
def test_unsupported_suffix(tmp_path, name, suffix):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(LmforgeError) as info:
        list(read_records(path))
    assert str(info.value) == (
        f"{path}: unsupported data file type '{suffix}' (expected .jsonl, .json or .csv, optionally .gz or .zst, "
        "or .parquet, or a Hugging Face dataset folder or name)"
    )


def test_write_jsonl_fixture_round_trips(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    assert [record for record, _ in read_records(path)] == ROWS
