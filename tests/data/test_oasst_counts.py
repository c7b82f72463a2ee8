"""Open-Assistant counts that add up: `lmforge data inspect` reports, per oasst dataset,
the messages read, what removed each one that is not kept, and the threads built; messages
read = kept + every removal. Both files are built by hand below, the expected numbers
counted by hand next to each message."""

from __future__ import annotations

import json

import pytest
import yaml

from lmforge.cli import main
from tests.data.test_real_formats import node, tree

# threads: best (the default). Per message: its fate.
TREES = [
    tree(
        node(
            "p1",
            "prompter",
            "Name a color.",  # kept
            [
                node(
                    "a1", "assistant", "Red.", [node("p2", "prompter", "Why red?")], rank=0
                ),  # kept; p2 ends_on_prompter
                node(
                    "a2",
                    "assistant",
                    "Blue.",  # not_best (rank 1)
                    [node("p3", "prompter", "Darker?", [node("a3", "assistant", "Navy.")])],  # not_best x2
                    rank=1,
                ),
                node(
                    "a4", "assistant", "spam", [node("p4", "prompter", "More spam")], deleted=True
                ),  # deleted; p4 below_removed
                node("a5", "assistant", "Green.", review_result=False),  # not_reviewed
                node("a6", "assistant", "Teal.", synthetic=True, model_name="m"),  # synthetic
            ],
        )
    ),
    tree(
        node("p5", "prompter", "Hi?", [node("a7", "assistant", "Hello.")]), state="prompt_lottery_waiting"
    ),  # 2 x tree_not_ready
    tree(node("p6", "prompter", "Anyone there?")),  # a bare prompt: ends_on_prompter
    tree(node("p7", "prompter", "Buy now", [node("a8", "assistant", "No.")], deleted=True)),  # deleted; below_removed
]
TREE_COUNTS = {
    "read": 15,
    "kept": 2,
    "removed": {
        "below_removed": 2,
        "deleted": 2,
        "ends_on_prompter": 2,
        "not_best": 3,
        "not_reviewed": 1,
        "synthetic": 1,
        "tree_not_ready": 2,
    },
    "threads": 1,
}


def flat(message_id, role, text, parent, **extra):
    return {**node(message_id, role, text, **extra), "parent_id": parent, "message_tree_id": "q1"}


# threads: all, on_bad_record: skip. One message a line.
MESSAGES = [
    flat("q1", "prompter", "What is two plus two?", None),  # kept
    flat("b1", "assistant", "Four.", "q1", rank=0),  # kept
    flat("b2", "assistant", "It is 4.", "q1", rank=1),  # kept (threads: all)
    flat("q2", "prompter", "And three plus three?", "b1"),  # kept
    flat("b3", "assistant", "Six.", "q2"),  # kept
    flat("b4", "assistant", "An answer to nothing.", "gone"),  # parent_missing
    flat("q3", "prompter", "A follow-up to it.", "b4"),  # parent_missing (under b4)
    flat("x", "robot", "beep", "q1"),  # bad_record: no such role
    flat("b5", "assistant", "Five.", "q1", review_result=False),  # not_reviewed
]
MESSAGE_COUNTS = {
    "read": 9,
    "kept": 5,
    "removed": {"bad_record": 1, "not_reviewed": 1, "parent_missing": 2},
    "threads": 2,  # q1 b1 q2 b3, and q1 b2
}


@pytest.fixture
def oasst_config(tmp_path, tiny_tokenizer, write_jsonl):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    trees = write_jsonl(tmp_path / "oa.trees.jsonl", TREES)
    messages = write_jsonl(tmp_path / "oa.messages.jsonl", MESSAGES)
    config = {
        "model": {"tokenizer": str(tmp_path / "tok")},
        "data": {
            "datasets": [
                {"path": str(trees), "val_split": 0.0},
                {"path": str(messages), "val_split": 0.0, "on_bad_record": "skip", "options": {"threads": "all"}},
            ],
            "max_length": 64,
        },
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_hand_counted_files_add_up():
    for counts in (TREE_COUNTS, MESSAGE_COUNTS):
        assert counts["read"] == counts["kept"] + sum(counts["removed"].values())


def test_inspect_json_counts_every_message(oasst_config, capsys):
    assert main(["data", "inspect", str(oasst_config), "--json"]) == 0
    trees, messages = json.loads(capsys.readouterr().out)["datasets"]
    assert trees["format"] == "oasst_trees" and trees["messages"] == TREE_COUNTS
    # trees the records stand for: one gave a thread, three were dropped whole
    assert (trees["records"], trees["train"]) == (4, 1)
    assert trees["dropped"] == {"tree_not_ready": 1, "no_assistant_turn": 1, "not_reviewed_or_deleted": 1}
    assert messages["format"] == "oasst_messages" and messages["messages"] == MESSAGE_COUNTS
    assert (messages["records"], messages["train"]) == (9, 2)
    assert messages["dropped"] == {"bad_record": 1, "parent_missing": 1}
    assert messages["bad_records"] == [
        f"{oasst_config.parent / 'oa.messages.jsonl'}:8: message 'x' has role 'robot'; expected prompter or assistant"
    ]


def test_inspect_text_shows_the_sum(oasst_config, capsys):
    assert main(["data", "inspect", str(oasst_config)]) == 0
    out = capsys.readouterr().out
    assert (
        "messages: 15 read = 2 kept + 2 below_removed + 2 deleted + 2 ends_on_prompter + 3 not_best "
        "+ 1 not_reviewed + 1 synthetic + 2 tree_not_ready; threads built: 1"
    ) in out
    assert "messages: 9 read = 5 kept + 1 bad_record + 1 not_reviewed + 2 parent_missing; threads built: 2" in out


def test_other_formats_report_no_message_counts(tmp_path, tiny_tokenizer, write_jsonl, capsys):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    data = write_jsonl(tmp_path / "a.jsonl", [{"instruction": f"Say {i}.", "output": f"{i} it is."} for i in range(4)])
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"model": {"tokenizer": str(tmp_path / "tok")}, "data": {"datasets": [{"path": str(data)}]}})
    )
    assert main(["data", "inspect", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["datasets"][0]["messages"] is None
