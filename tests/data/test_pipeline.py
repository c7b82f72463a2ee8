"""The data pipeline's first slice: deterministic splits with caps, the over-length
policy, drop reasons, and per-dataset reports."""

from __future__ import annotations

import pytest

from lmforge.data.clean import DedupSettings
from lmforge.data.conversation import Conversation, Segment
from lmforge.data.pipeline import (
    DatasetReport,
    DatasetSpec,
    build_datasets,
    load_conversations,
    split_conversations,
    tokenize_conversations,
)
from lmforge.data.tokenize import IGNORE_INDEX, encode_conversation
from lmforge.errors import LmforgeError


def ids(tokenizer, text):
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def chat(user: str, reply: str, source: str = "") -> Conversation:
    return Conversation((Segment("user", user), Segment("assistant", reply)), source)


# --------------------------------------------------------------------------- splitting

TWENTY = [chat(f"question {i}", f"answer {i}", f"d.jsonl:{i + 1}") for i in range(20)]


def sources(conversations):
    return [c.source for c in conversations]


def test_split_sizes_follow_the_fractions():
    # 20 * 0.25 = 5 test, 20 * 0.1 = 2 val, the other 13 train
    splits = split_conversations(TWENTY, DatasetSpec("d.jsonl", val_split=0.1, test_split=0.25), seed=0)
    assert (len(splits.test), len(splits.val), len(splits.train)) == (5, 2, 13)


def test_split_is_disjoint_and_covers_everything():
    splits = split_conversations(TWENTY, DatasetSpec("d.jsonl", val_split=0.1, test_split=0.25), seed=0)
    parts = [set(sources(splits.train)), set(sources(splits.val)), set(sources(splits.test))]
    assert parts[0] | parts[1] | parts[2] == set(sources(TWENTY))
    assert sum(len(p) for p in parts) == 20  # no conversation in two splits


def test_split_is_deterministic_by_seed():
    spec = DatasetSpec("d.jsonl", val_split=0.1, test_split=0.25)
    first = split_conversations(TWENTY, spec, seed=3)
    again = split_conversations(TWENTY, spec, seed=3)
    other = split_conversations(TWENTY, spec, seed=4)
    assert sources(first.train) == sources(again.train)
    assert sources(first.val) == sources(again.val)
    assert sources(first.test) == sources(again.test)
    assert sources(first.train) != sources(other.train)
    assert sources(first.train) != sources(TWENTY[7:])  # it was shuffled, not cut off the front


def test_max_val_set_caps_val_and_the_rest_trains():
    splits = split_conversations(TWENTY, DatasetSpec("d.jsonl", val_split=0.25, max_val_set=2), seed=0)
    assert (len(splits.test), len(splits.val), len(splits.train)) == (0, 2, 18)


def test_max_val_set_zero_means_no_val():
    splits = split_conversations(TWENTY, DatasetSpec("d.jsonl", val_split=0.25, max_val_set=0), seed=0)
    assert (len(splits.val), len(splits.train)) == (0, 20)


def test_max_train_set_caps_train_only():
    uncapped = split_conversations(TWENTY, DatasetSpec("d.jsonl", val_split=0.1, test_split=0.1), seed=1)
    capped = split_conversations(TWENTY, DatasetSpec("d.jsonl", val_split=0.1, test_split=0.1, max_train_set=4), seed=1)
    assert (len(capped.test), len(capped.val), len(capped.train)) == (2, 2, 4)
    assert sources(capped.train) == sources(uncapped.train)[:4]
    assert sources(capped.val) == sources(uncapped.val)


def test_zero_splits_train_on_everything():
    splits = split_conversations(TWENTY, DatasetSpec("d.jsonl", val_split=0.0), seed=0)
    assert (len(splits.test), len(splits.val), sorted(sources(splits.train))) == (0, 0, sorted(sources(TWENTY)))


# --------------------------------------------------------------------------- over-length policy

SHORT = chat("Name a color.", "Red.", "d.jsonl:1")
LONG = chat("Please write a short poem about the sea. " * 4, "The sea is blue and the sky is wide.", "d.jsonl:2")


def test_drop_counts_too_long(tokenizer, remask):
    max_length = len(encode_conversation(SHORT, remask, tokenizer).input_ids)
    assert len(encode_conversation(LONG, remask, tokenizer).input_ids) > max_length
    report = DatasetReport("d.jsonl")
    rows = tokenize_conversations([SHORT, LONG], remask, tokenizer, max_length, "drop", report)
    assert rows == [encode_conversation(SHORT, remask, tokenizer).as_row()]  # exactly max_length is kept
    assert dict(report.dropped) == {"too_long": 1}
    assert report.truncated == 0


def test_truncate_keeps_max_length_tokens(tokenizer, remask):
    long = encode_conversation(LONG, remask, tokenizer)
    prompt_length = long.token_roles.index(1)  # first assistant token
    max_length = prompt_length + 3  # the cut falls three tokens into the reply
    report = DatasetReport("d.jsonl")
    rows = tokenize_conversations([SHORT, LONG], remask, tokenizer, max_length, "truncate", report)
    assert len(rows) == 2
    assert rows[1] == {
        "input_ids": long.input_ids[:max_length],
        "labels": long.labels[:max_length],
        "token_roles": long.token_roles[:max_length],
    }
    assert sum(label != IGNORE_INDEX for label in rows[1]["labels"]) == 3
    assert report.truncated == 1
    assert dict(report.dropped) == {}


def test_truncation_that_leaves_no_trained_tokens_drops(tokenizer, remask):
    long = encode_conversation(LONG, remask, tokenizer)
    prompt_length = long.token_roles.index(1)
    report = DatasetReport("d.jsonl")
    rows = tokenize_conversations([LONG], remask, tokenizer, prompt_length, "truncate", report)
    assert rows == []
    assert dict(report.dropped) == {"no_trained_tokens": 1}
    assert report.truncated == 0


def test_empty_response_is_dropped_with_its_reason(tokenizer, remask):
    report = DatasetReport("d.jsonl")
    rows = tokenize_conversations([chat("Name a color.", "  \n"), SHORT], remask, tokenizer, 512, "drop", report)
    assert len(rows) == 1
    assert dict(report.dropped) == {"empty_response": 1}


# --------------------------------------------------------------------------- build_datasets


NO_DEDUP = DedupSettings(exact=False, near=False)  # these tests repeat one record on purpose


def alpaca_rows(n, output="Red."):
    return [{"id": i, "instruction": "Name a color.", "output": output} for i in range(n)]


def test_build_datasets_reports(tmp_path, tokenizer, remask, write_jsonl):
    colors = write_jsonl(tmp_path / "colors.jsonl", alpaca_rows(10))
    cot = write_jsonl(
        tmp_path / "cot.jsonl",
        [
            {"question": f"What is {a} plus 7?", "rationale": f"{a} plus 7 is {a + 7}.", "answer": str(a + 7)}
            for a in (1, 2, 3)
        ],
    )
    chats = write_jsonl(
        tmp_path / "chats.jsonl",
        [
            {"messages": [{"role": "user", "content": "Name a color."}, {"role": "assistant", "content": "Red."}]},
            {"messages": [{"role": "user", "content": "Name a color."}, {"role": "assistant", "content": ""}]},
            {"messages": [{"role": "user", "content": "Name a color."}, {"role": "assistant", "content": "Blue."}]},
        ],
    )
    specs = [
        DatasetSpec(str(colors), val_split=0.2, test_split=0.1),  # 1 test, 2 val, 7 train
        DatasetSpec(str(cot), format="cot", val_split=0.0),
        DatasetSpec(str(chats), val_split=0.0),
    ]
    data = build_datasets(specs, remask, tokenizer, max_length=512, overlength="drop", seed=0, dedup=NO_DEDUP)

    colors_report, cot_report, chats_report = data.reports
    assert (colors_report.format, colors_report.records) == ("alpaca", 10)
    assert (colors_report.train, colors_report.val, colors_report.test) == (7, 2, 1)
    assert (cot_report.format, cot_report.records, cot_report.train) == ("cot", 3, 3)
    assert (chats_report.format, chats_report.records, chats_report.train) == ("messages", 3, 2)
    assert chats_report.as_dict()["dropped"] == {"empty_response": 1}

    # every colors example is bos + "<|user|>\nName a color.\n<|assistant|>\n" + "Red.\n</s>"
    prompt = ids(tokenizer, "<|user|>\nName a color.\n<|assistant|>\n")
    reply = ids(tokenizer, "Red.\n</s>")
    assert colors_report.train_tokens == 7 * (1 + len(prompt) + len(reply))
    assert colors_report.trained_tokens == 7 * len(reply)

    assert len(data.train) == 7 + 3 + 2
    assert len(data.val) == 2
    assert [c.source for c in data.test_conversations][0].startswith(f"{colors}:")
    assert len(data.val_conversations) == 2
    # counted over the examples kept for training: the dropped empty chat is not among the 12
    assert data.cot_fraction == pytest.approx(3 / 12)
    assert set(data.train.column_names) == {"input_ids", "labels", "token_roles", "example_id", "dataset"}
    assert sorted(data.train["example_id"]) == list(range(len(data.train)))


def test_build_datasets_is_deterministic(tmp_path, tokenizer, remask, write_jsonl):
    path = write_jsonl(
        tmp_path / "q.jsonl", [{"instruction": f"What is {a} plus 7?", "output": f"{a + 7}"} for a in range(12)]
    )
    specs = [DatasetSpec(str(path), val_split=0.25)]
    first = build_datasets(specs, remask, tokenizer, 512, "drop", seed=5)
    again = build_datasets(specs, remask, tokenizer, 512, "drop", seed=5)
    assert first.train["input_ids"] == again.train["input_ids"]
    assert [c.source for c in first.val_conversations] == [c.source for c in again.val_conversations]
    assert len(first.train) == 9 and len(first.val) == 3


def test_build_datasets_without_val_has_none(tmp_path, tokenizer, remask, write_jsonl):
    path = write_jsonl(tmp_path / "c.jsonl", alpaca_rows(4))
    data = build_datasets(
        [DatasetSpec(str(path), val_split=0.0)], remask, tokenizer, 512, "drop", seed=0, dedup=NO_DEDUP
    )
    assert data.val is None
    assert len(data.train) == 4


def test_build_datasets_names_the_dataset_left_empty(tmp_path, tokenizer, remask, write_jsonl):
    fine = write_jsonl(tmp_path / "fine.jsonl", alpaca_rows(3))
    long = write_jsonl(tmp_path / "long.jsonl", alpaca_rows(3, output="The sea is blue and the sky is wide. " * 5))
    max_length = 1 + len(ids(tokenizer, "<|user|>\nName a color.\n<|assistant|>\nRed.\n</s>"))
    specs = [DatasetSpec(str(fine), val_split=0.0), DatasetSpec(str(long), val_split=0.0)]
    with pytest.raises(LmforgeError) as info:
        build_datasets(specs, remask, tokenizer, max_length, "drop", seed=0, dedup=NO_DEDUP)
    assert str(info.value) == (
        f"data.datasets[1] ({long}): no training examples left after filtering "
        f"(3 records read; dropped too_long: 3; max_length {max_length})"
    )


def test_build_datasets_needs_datasets(tokenizer, remask):
    with pytest.raises(LmforgeError, match=r"^data\.datasets: no datasets given$"):
        build_datasets([], remask, tokenizer, 512, "drop", seed=0)


def test_explicit_format_that_does_not_fit_names_the_record(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "a.jsonl", alpaca_rows(2))
    with pytest.raises(LmforgeError) as info:
        load_conversations(DatasetSpec(str(path), format="cot"), DatasetReport(str(path)))
    assert str(info.value) == (
        f"{path}:1: cot record is missing fields 'question', 'rationale', 'answer' "
        "(fields present: id, instruction, output)"
    )


def test_load_conversations_detects_and_counts(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "a.jsonl", alpaca_rows(2))
    report = DatasetReport(str(path))
    conversations = load_conversations(DatasetSpec(str(path)), report)
    assert (report.format, report.records) == ("alpaca", 2)
    assert conversations == [chat("Name a color.", "Red.", f"{path}:1"), chat("Name a color.", "Red.", f"{path}:2")]
