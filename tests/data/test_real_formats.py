"""Each public format from a fixture written in its exact schema:
new records, not copies of real rows. One test per format and gotcha."""

from __future__ import annotations

import json
import logging

import pytest

from lmforge.data.conversation import Conversation, Segment
from lmforge.data.pipeline import DatasetReport, DatasetSpec, load_conversations
from lmforge.data.records import RecordDropped, from_arc, from_gsm8k, from_sharegpt, from_translation
from lmforge.data.registry import detect_format
from lmforge.errors import LmforgeError

W = "d.jsonl:1"


def load(path, **spec):
    report = DatasetReport(str(path))
    return load_conversations(DatasetSpec(str(path), **spec), report), report


def segments(*pairs):
    return tuple(Segment(role, text) for role, text in pairs)


# --------------------------------------------------------------------------- GSM8K

GSM8K = {
    "question": "A baker makes 48 rolls and sells half of them. How many rolls are left?",
    "answer": "She sells 48/2 = <<48/2=24>>24 rolls.\nSo $<<48-24=24>>24 rolls are left.\n#### 24",
}


def test_gsm8k_as_cot_strips_calculator_annotations():
    conversation = from_gsm8k(GSM8K, W)
    assert conversation.segments == segments(
        ("user", GSM8K["question"]),
        ("rationale", "She sells 48/2 = 24 rolls.\nSo $24 rolls are left."),
        ("answer", "24"),
    )


def test_gsm8k_keeps_annotations_by_option():
    rationale = from_gsm8k(GSM8K, W, {"calculator": "keep"}).segments[1].text
    assert rationale == "She sells 48/2 = <<48/2=24>>24 rolls.\nSo $<<48-24=24>>24 rolls are left."


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("He pays 1,000 + 80 = 1,080 dollars.\n#### 1,080", "1080"),  # thousands comma removed
        ("It drops 7 degrees below zero.\n\nThat is -7.\n#### -7", "-7"),  # blank line, negative
        ("No annotations here.\n#### 5", "5"),
    ],
)
def test_gsm8k_final_answer_variants(answer, expected):
    assert from_gsm8k({"question": "q", "answer": answer}, W).final_answer() == expected


def test_gsm8k_without_final_line_names_the_record():
    with pytest.raises(LmforgeError, match=r"^d\.jsonl:1: gsm8k field 'answer' has no final line '#### <answer>'$"):
        from_gsm8k({"question": "q", "answer": "The answer is 5."}, W)


# --------------------------------------------------------------------------- Open-Assistant


def node(mid, role, text, replies=(), **extra):
    base = {
        "message_id": mid,
        "user_id": "u",
        "created_date": "2023-02-01T10:00:00+00:00",
        "text": text,
        "role": role,
        "lang": "en",
        "review_count": 3,
        "review_result": True,
        "deleted": False,
        "synthetic": False,
        "emojis": {"+1": 2},
        "replies": list(replies),
        "labels": {"spam": {"value": 0.0, "count": 3}},
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}  # the export omits null values


def tree(prompt, state="ready_for_export"):
    return {"message_tree_id": prompt["message_id"], "tree_state": state, "prompt": prompt}


# p1 -> a1 (rank 1) -> p2 -> a3
#    -> a2 (rank 0)  (best)
#    -> a4 (no rank, deleted)
#    -> a5 (no rank)
OA_TREE = tree(
    node(
        "p1",
        "prompter",
        "Name a color.",
        [
            node("a2", "assistant", "Red.", rank=0, parent_id="p1"),
            node(
                "a1",
                "assistant",
                "Blue.",
                [
                    node(
                        "p2",
                        "prompter",
                        "Another?",
                        [node("a3", "assistant", "Green.", parent_id="p2")],
                        parent_id="a1",
                    )
                ],
                rank=1,
                parent_id="p1",
            ),
            node("a4", "assistant", "spam", rank=None, deleted=True, parent_id="p1"),
            node("a5", "assistant", "Yellow.", parent_id="p1"),
        ],
    )
)


def test_oasst_tree_best_path(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "x.trees.jsonl", [OA_TREE])
    conversations, report = load(path)
    assert report.format == "oasst_trees" and report.detected
    assert [c.segments for c in conversations] == [segments(("user", "Name a color."), ("assistant", "Red."))]
    assert conversations[0].metadata == {"message_tree_id": "p1", "lang": "en"}


def test_oasst_tree_all_paths_skip_deleted_and_drop_trailing_prompter(tmp_path, write_jsonl):
    without_a3 = json.loads(json.dumps(OA_TREE))
    without_a3["prompt"]["replies"][1]["replies"][0]["replies"] = []  # the thread a1 -> p2 ends on a prompter
    path = write_jsonl(tmp_path / "x.trees.jsonl", [OA_TREE, without_a3])
    conversations, _ = load(path, options={"threads": "all"})
    texts = [[s.text for s in c.segments] for c in conversations]
    assert texts == [
        ["Name a color.", "Red."],
        ["Name a color.", "Blue.", "Another?", "Green."],
        ["Name a color.", "Yellow."],
        ["Name a color.", "Red."],
        ["Name a color.", "Blue."],
        ["Name a color.", "Yellow."],
    ]


def test_oasst_best_child_with_missing_ranks_takes_the_first_unranked():
    unranked = tree(node("p", "prompter", "Hi", [node("a", "assistant", "Hello."), node("b", "assistant", "Hey.")]))
    from lmforge.data.oasst import from_oasst_tree

    assert [s.text for s in from_oasst_tree(unranked, W)[0].segments] == ["Hi", "Hello."]


@pytest.mark.parametrize(
    "record, reason",
    [
        (
            tree(node("p", "prompter", "Hi", [node("a", "assistant", "Yo")]), state="prompt_lottery_waiting"),
            "tree_not_ready",
        ),
        (
            tree(node("p", "prompter", "Hi", [node("a", "assistant", "Yo")], review_result=None)),
            "not_reviewed_or_deleted",
        ),
        (tree(node("p", "prompter", "Hi")), "no_assistant_turn"),  # a bare prompt
        (tree(node("p", "prompter", "Hi", [node("a", "assistant", "Yo", synthetic=True)])), "no_assistant_turn"),
    ],
)
def test_oasst_tree_filters(record, reason):
    from lmforge.data.oasst import from_oasst_tree

    with pytest.raises(RecordDropped) as info:
        from_oasst_tree(record, W)
    assert info.value.reason == reason


def test_oasst_language_filter_like_seed_001(tmp_path, write_jsonl):
    german = tree(node("q", "prompter", "Nenne eine Farbe.", [node("b", "assistant", "Rot.", lang="de")], lang="de"))
    brazil = tree(node("r", "prompter", "Diga uma cor.", [node("c", "assistant", "Azul.")], lang="pt-BR"))
    french = tree(node("s", "prompter", "Une couleur ?", [node("d", "assistant", "Bleu.")], lang="fr"))
    path = write_jsonl(tmp_path / "x.trees.jsonl", [OA_TREE, german, brazil, french])
    from lmforge.data.clean import Filters
    from lmforge.data.pipeline import apply_filters

    conversations, report = load(path)
    kept = apply_filters(conversations, DatasetSpec(str(path), lang="en,de,pt").filters, report)
    assert [c.metadata["lang"] for c in kept] == ["en", "de", "pt-BR"]
    assert report.dropped["language"] == 1
    assert Filters().languages == frozenset()


def test_oasst_flat_messages_make_the_same_threads(tmp_path, write_jsonl):
    def flatten(n, parent=None):
        row = {k: v for k, v in n.items() if k != "replies"}
        row.update(message_tree_id="p1", tree_state="ready_for_export")
        if parent:
            row["parent_id"] = parent
        return [row] + [r for child in n.get("replies", []) for r in flatten(child, n["message_id"])]

    rows = flatten(OA_TREE["prompt"])
    rows[0]["parent_id"] = None  # the parquet layout keeps null columns
    path = write_jsonl(tmp_path / "x.messages.jsonl", rows)
    conversations, report = load(path, options={"threads": "all"})
    assert report.format == "oasst_messages" and report.records == len(rows) == 7
    assert [[s.text for s in c.segments] for c in conversations] == [
        ["Name a color.", "Red."],
        ["Name a color.", "Blue.", "Another?", "Green."],
        ["Name a color.", "Yellow."],
    ]


# --------------------------------------------------------------------------- instruction sets


def test_dolly_with_context_and_citations(tmp_path, write_jsonl):
    rows = [
        {
            "instruction": "When was the bridge opened?",
            "context": "The bridge opened in 1932.[3] It is long.[12]",
            "response": "In 1932.",
            "category": "closed_qa",
        },
        {
            "instruction": "Name three fruits.",
            "context": "",
            "response": "Apple, pear, plum.",
            "category": "brainstorming",
        },
    ]
    conversations, report = load(write_jsonl(tmp_path / "dolly.jsonl", rows))
    assert report.format == "dolly"
    assert conversations[0].segments[0].text == "When was the bridge opened?\n\nThe bridge opened in 1932. It is long."
    assert conversations[0].metadata == {"category": "closed_qa"}
    assert conversations[1].segments == segments(("user", "Name three fruits."), ("assistant", "Apple, pear, plum."))


def test_alpaca_json_array(tmp_path):
    path = tmp_path / "alpaca_data.json"
    path.write_text(
        json.dumps(
            [
                {"instruction": "Give a synonym for happy.", "input": "", "output": "Glad."},
                {"instruction": "Sum the numbers.", "input": "3, 4", "output": "7"},
                {"instruction": "Say hi.", "input": "<noinput>", "output": "Hi!"},
            ],
            indent=4,
        )
    )
    conversations, report = load(path)
    assert report.format == "alpaca"
    assert [c.segments[0].text for c in conversations] == [
        "Give a synonym for happy.",
        "Sum the numbers.\n\n3, 4",
        "Say hi.",
    ]


def test_sharegpt_variants():
    record = {
        "id": "abc_4",
        "conversations": [
            {"from": "gpt", "value": "(the end of an earlier chunk)"},  # a chunk may start with gpt
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Hi"},
            {"from": "chatgpt", "value": "Hello."},
            {"from": "user", "value": "Name a color."},
            {"from": "bing", "value": "Red."},
            {"from": "human", "value": "Thanks"},  # odd length: the trailing human turn goes
        ],
    }
    assert from_sharegpt(record, W).segments == segments(
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello."),
        ("user", "Name a color."),
        ("assistant", "Red."),
    )


def test_sharegpt_unknown_speaker_and_no_answer():
    with pytest.raises(LmforgeError, match=r"conversations\[0\] is from 'robot'"):
        from_sharegpt({"conversations": [{"from": "robot", "value": "x"}]}, W)
    with pytest.raises(RecordDropped):
        from_sharegpt({"conversations": [{"from": "human", "value": "x"}]}, W)


def test_reddit_instruct_curated(tmp_path, write_jsonl):
    rows = [
        {
            "post_title": "How do I boil an egg?",
            "post_text": "",
            "comment_text": "Ten minutes in boiling water.",
            "comment_score": 41,
            "post_score": 120,
        },
        {
            "post_title": "Why is the sky blue?",
            "post_text": "Asking for my kid.",
            "comment_text": "Scattering.",
            "comment_score": 3,
            "post_score": 9,
        },
    ]
    conversations, report = load(write_jsonl(tmp_path / "reddit.jsonl", rows), options={"min_score": 10})
    assert report.format == "reddit_instruct" and report.dropped == {"low_score": 1}
    assert conversations[0].segments == segments(
        ("user", "How do I boil an egg?"), ("assistant", "Ten minutes in boiling water.")
    )
    both, _ = load(write_jsonl(tmp_path / "r2.jsonl", rows))
    assert both[1].segments[0].text == "Why is the sky blue?\nAsking for my kid."


def test_tinycot(tmp_path, write_jsonl):
    rows = [
        {
            "prompt": "Is a whale a fish?",
            "rationale": "Whales breathe air and nurse their young.",
            "target": "no",
            "source": "strategyqa",
        }
    ]
    [conversation], report = load(write_jsonl(tmp_path / "tinycot.jsonl", rows))
    assert report.format == "tinycot" and conversation.is_cot
    assert conversation.segments == segments(
        ("user", "Is a whale a fish?"), ("rationale", "Whales breathe air and nurse their young."), ("answer", "no")
    )


# --------------------------------------------------------------------------- tasks

ARC = {
    "id": "Mercury_1234",
    "question": "Which gas do plants take in?",
    "choices": {"text": ["oxygen", "carbon dioxide", "helium"], "label": ["A", "B", "C"]},
    "answerKey": "B",
}


def test_arc_letters():
    assert from_arc(ARC, W).segments == segments(
        ("user", "Which gas do plants take in?\n\nA. oxygen\nB. carbon dioxide\nC. helium"),
        ("assistant", "B. carbon dioxide"),
    )


def test_arc_digit_labels_become_letters():
    record = {
        **ARC,
        "choices": {"text": ["red", "green", "blue", "black", "white"], "label": ["1", "2", "3", "4", "5"]},
        "answerKey": "4",
    }
    conversation = from_arc(record, W, {"arc_answer": "letter"})
    assert conversation.segments[0].text.endswith("D. black\nE. white")
    assert conversation.segments[1].text == "D" and conversation.metadata == {"gold_index": 3}


def test_arc_answer_key_not_among_labels():
    with pytest.raises(LmforgeError, match=r"answerKey 'E' is not among the choice labels"):
        from_arc({**ARC, "answerKey": "E"}, W)


def test_translation_direction():
    record = {"translation": {"en": "Good morning.", "zh": "早上好。"}}
    assert from_translation(record, W, {"direction": "zh-en"}).segments == segments(
        ("user", "Translate from Chinese into English:\n早上好。"), ("assistant", "Good morning.")
    )
    assert from_translation(record, W, {"direction": "en-zh"}).segments[1].text == "早上好。"
    with pytest.raises(LmforgeError, match=r"needs options\.direction like 'en-zh' \(languages here: en, zh\)"):
        from_translation(record, W)


def test_plain_text_and_pairs(tmp_path, write_jsonl):
    [doc], report = load(write_jsonl(tmp_path / "c4.jsonl", [{"text": "The cat sat.", "timestamp": "2019"}]))
    assert report.format == "text" and doc.is_plain_text and doc.segments == segments(("text", "The cat sat."))
    pairs = [{"prompt": "Name a color.", "chosen": "Red.", "rejected": ["Dog.", "Seven."]}]
    [pair], report = load(write_jsonl(tmp_path / "pairs.jsonl", pairs))
    assert report.format == "pairs"
    assert pair.segments == segments(("user", "Name a color."), ("assistant", "Red."))
    assert pair.metadata["rejected"] == ("Dog.", "Seven.")
    assert pair == Conversation(pair.segments, pair.source, {"rejected": ("Dog.", "Seven.")})
    assert hash(pair) == hash(Conversation(pair.segments, pair.source))  # metadata is not hashed


# --------------------------------------------------------------------------- detection and bad records


@pytest.mark.parametrize(
    "record, expected",
    [
        (GSM8K, "gsm8k"),
        (OA_TREE, "oasst_trees"),
        (ARC, "arc"),
        ({"message_id": "m", "parent_id": None, "role": "prompter", "text": "hi"}, "oasst_messages"),
        ({"instruction": "i", "context": "", "response": "r", "category": "open_qa"}, "dolly"),
        ({"id": "1", "conversations": []}, "sharegpt"),
        ({"prompt": "p", "rationale": "r", "target": "t", "source": "s"}, "tinycot"),
        ({"post_title": "t", "post_text": "", "comment_text": "c", "comment_score": 1}, "reddit_instruct"),
        ({"translation": {"en": "a", "de": "b"}}, "translation"),
        ({"prompt": "p", "chosen": "c", "rejected": ["r"]}, "pairs"),
        ({"text": "t", "meta": {}}, "text"),
    ],
)
def test_detection(record, expected):
    assert detect_format(record, W) == expected


def test_detected_format_is_logged(tmp_path, write_jsonl, caplog):
    path = write_jsonl(tmp_path / "g.jsonl", [GSM8K])
    with caplog.at_level(logging.INFO, logger="lmforge.data"):
        load(path)
    assert f"{path}: detected format gsm8k" in caplog.text


def test_bad_record_is_an_error_or_skipped_and_counted(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps(GSM8K),
                json.dumps({"question": "q", "answer": "no final line"}),
                '{"question": ',
                json.dumps(GSM8K),
            ]
        )
        + "\n"
    )
    with pytest.raises(LmforgeError, match=rf"^{path}:2: gsm8k field 'answer' has no final line"):
        load(path)
    conversations, report = load(path, on_bad_record="skip")
    # every record read is counted, the unparsable one too: records - dropped = conversations
    assert len(conversations) == 2 and report.records == 4 and report.dropped == {"bad_record": 2}
    assert report.bad_records[0].startswith(f"{path}:2: gsm8k field 'answer'")
    assert (
        report.bad_records[1]
        == f"{path}:3: truncated record: the line ends before the JSON object is complete (column 14)"
    )


def test_empty_file_gives_no_conversations(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text("")
    assert load(path) == ([], DatasetReport(str(path)))
