"""Cleaning (exact and near-duplicate removal within and across datasets, filters with
counted reasons), the split leak guard, and weighted / staged mixing."""

from __future__ import annotations

import logging

import pytest

from lmforge.data.clean import DedupSettings, Filters, Fingerprints, deduplicate, drop_reason, leak_guard, normalize
from lmforge.data.conversation import Conversation, Segment
from lmforge.data.formats import get_format
from lmforge.data.mixing import Stage, draw, mix, shares
from lmforge.data.pipeline import DatasetSpec, build_datasets
from lmforge.errors import LmforgeError

# Each topic gets its own sentence of 30 words drawn from a small vocabulary: different
# topics share almost no 5-word shingles; a story plus a short twist shares nearly all.
WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "green",
    "quick",
    "slow",
    "happy",
    "market",
    "bread",
    "baker",
    "window",
    "garden",
    "light",
    "winter",
    "summer",
    "morning",
    "evening",
    "road",
    "hill",
    "forest",
    "lamp",
    "table",
    "chair",
    "paper",
    "music",
    "water",
    "fire",
    "wind",
    "silver",
    "golden",
    "little",
    "quiet",
    "loud",
    "bright",
    "dark",
    "warm",
    "cold",
    "early",
    "late",
    "friend",
    "teacher",
    "child",
]
TOPICS = list(range(12))


def story(topic: int, twist: str = "") -> str:
    import random

    rng = random.Random(topic)
    return " ".join(rng.choice(WORDS) for _ in range(30)) + twist + "."


def chat(user: str, reply: str, source: str = "") -> Conversation:
    return Conversation((Segment("user", user), Segment("assistant", reply)), source)


def test_normalize():
    assert normalize("  Hello,   World!\n") == "hello world"


def test_exact_and_near_duplicates_within_and_across_datasets():
    first = [chat("Tell a story.", story(t), f"a:{i}") for i, t in enumerate(TOPICS[:4])]
    first.append(chat("tell a STORY", story(TOPICS[0]).upper(), "a:dup"))  # exact after normalization
    second = [
        chat("Tell a story.", story(TOPICS[1], " at night"), "b:near"),  # near duplicate of a:1
        chat("Tell a story.", story(TOPICS[5]), "b:new"),
    ]
    kept, counts = deduplicate([first, second], Fingerprints(DedupSettings()))
    assert [c.source for c in kept[0]] == ["a:0", "a:1", "a:2", "a:3"]
    assert [c.source for c in kept[1]] == ["b:new"]
    assert counts == [{"duplicate": 1}, {"near_duplicate": 1}]


def test_near_dedup_can_be_turned_off():
    pair = [chat("Tell a story.", story(TOPICS[1])), chat("Tell a story.", story(TOPICS[1], " at night"))]
    kept, counts = deduplicate([pair], Fingerprints(DedupSettings(near=False)))
    assert len(kept[0]) == 2 and counts == [{}]


@pytest.mark.parametrize(
    "conversation, filters, reason",
    [
        (chat("Hi", "  "), Filters(), "empty_response"),
        (
            Conversation((Segment("user", "Hi"), Segment("assistant", "Hallo")), "", {"lang": "de"}),
            Filters(frozenset({"en"})),
            "language",
        ),
        (chat("Hi", "Yo"), Filters(min_chars=3), "too_short"),
        (chat("Hi" * 10, "Yo"), Filters(max_chars=10), "too_many_chars"),
        (chat("Hi", "Hello"), Filters(frozenset({"en"}), min_chars=3, max_chars=10), None),  # no lang: kept
    ],
)
def test_filters(conversation, filters, reason):
    assert drop_reason(conversation, filters) == reason


def test_leak_guard_removes_near_duplicates_of_held_out():
    held = [chat("Tell a story.", story(TOPICS[2]))]
    train = [chat("Tell a story.", story(TOPICS[2], " again")), chat("Tell a story.", story(TOPICS[3]))]
    kept, removed = leak_guard(train, held, Fingerprints(DedupSettings()))
    assert kept == train[1:] and removed == 1


def test_no_test_item_has_a_near_duplicate_in_train(tmp_path, tokenizer, remask, write_jsonl):
    # near-duplicate groups within a file and across two files, and fresh stories
    rows = [{"instruction": "Tell a story.", "output": story(t, twist)} for t in TOPICS for twist in ("", " today")]
    more = [{"instruction": "Tell a story.", "output": story(t, " by the lake")} for t in TOPICS]
    more += [{"instruction": "Tell a story.", "output": story(100 + t)} for t in range(12)]
    a = write_jsonl(tmp_path / "a.jsonl", rows)
    b = write_jsonl(tmp_path / "b.jsonl", more)
    for settings in (DedupSettings(), DedupSettings(threshold=0.5)):
        data = build_datasets(
            [DatasetSpec(str(a), val_split=0.0, test_split=0.25), DatasetSpec(str(b), val_split=0.25, test_split=0.25)],
            remask,
            tokenizer,
            512,
            "drop",
            seed=1,
            dedup=settings,
        )
        assert data.test_conversations and data.val_conversations
        fingerprints = Fingerprints(settings)
        held_out = data.test_conversations + data.val_conversations
        train_texts = [tokenizer.decode(ids) for ids in data.train["input_ids"]]
        for conversation in held_out:  # not even a shared reply, let alone a near-duplicate
            assert not any(conversation.segments[1].text in text for text in train_texts)
        for text in train_texts:
            reply = text.split("<|assistant|>\n")[1].removesuffix("\n</s>")
            sketch = fingerprints.minhash(chat("Tell a story.", reply))
            assert all(sketch.jaccard(fingerprints.minhash(c)) < settings.threshold for c in held_out)
        assert sum(r.dropped["near_duplicate"] for r in data.reports) >= 24


def test_removals_are_counted_per_reason(tmp_path, tokenizer, remask, write_jsonl):
    rows = [{"instruction": "Tell a story.", "output": story(t)} for t in TOPICS[:6]]
    rows += [
        rows[0],
        {"instruction": "Tell a story.", "output": ""},
        {"instruction": "Tell a story.", "output": story(TOPICS[0], " later")},
    ]
    path = write_jsonl(tmp_path / "s.jsonl", rows)
    data = build_datasets([DatasetSpec(str(path), val_split=0.0)], remask, tokenizer, 512, "drop", seed=0)
    [report] = data.reports
    assert dict(report.dropped) == {"duplicate": 1, "empty_response": 1, "near_duplicate": 1}
    assert report.records == 9 and report.train == 6


# --------------------------------------------------------------------------- mixing


def test_shares_sum_exactly():
    assert shares([0.5, 0.25, 0.25], 10) == [5, 3, 2]
    assert shares([0.67, 0.15, 0.045, 0.135], 1000) == [670, 150, 45, 135]
    assert sum(shares([1 / 3] * 3, 100)) == 100


def test_draw_repeats_when_asked_for_more():
    import random

    picked, repeated = draw([1, 2, 3], 7, random.Random(0))
    assert sorted(picked) == [1, 1, 1, 2, 2, 2, 3] or sorted(picked).count(1) >= 2
    assert len(picked) == 7 and repeated == 4


def test_mix_by_weight_is_deterministic_and_warns_when_not_normalized(caplog):
    groups = [[("a", i) for i in range(100)], [("b", i) for i in range(10)]]
    with caplog.at_level(logging.WARNING, logger="lmforge.data"):
        rows, taken, repeated = mix(groups, [3.0, 1.0], 40, seed=3, key="data.datasets[*].weight")
    assert "data.datasets[*].weight: weights sum to 4, not 1; normalized to 0.75, 0.25" in caplog.text
    assert taken == [30, 10] and repeated == [0, 0]
    assert rows == mix(groups, [3.0, 1.0], 40, seed=3, key="k")[0]
    assert rows != mix(groups, [3.0, 1.0], 40, seed=4, key="k")[0]


def test_weighted_stages_through_build_datasets(tmp_path, tokenizer, remask, write_jsonl):
    colors = write_jsonl(
        tmp_path / "colors.jsonl", [{"instruction": f"Name color {i}.", "output": f"Color {i}."} for i in range(20)]
    )
    cot = write_jsonl(
        tmp_path / "cot.jsonl",
        [
            {"question": f"What is {a} plus 7?", "rationale": f"{a} plus 7 is {a + 7}.", "answer": str(a + 7)}
            for a in range(10)
        ],
    )
    specs = [DatasetSpec(str(colors), val_split=0.0, weight=0.5), DatasetSpec(str(cot), val_split=0.0, weight=0.5)]
    stages = [
        Stage("warmup", {"colors.jsonl": 1.0}, mix_size=8),
        Stage("reasoning", {"colors.jsonl": 0.25, "cot.jsonl": 0.75}, mix_size=20),
    ]
    data = build_datasets(specs, remask, tokenizer, 512, "drop", seed=0, stages=stages)
    assert [s.name for s in data.stages] == ["warmup", "reasoning"]
    assert [len(s.rows) for s in data.stages] == [8, 20] and len(data.train) == 28
    assert data.reports[0].mixed == {"warmup": 8, "reasoning": 5}
    assert data.reports[1].mixed == {"warmup": 0, "reasoning": 15} and data.reports[1].repeated == {"reasoning": 5}
    assert data.train["dataset"][:8] == [0] * 8  # stage order is kept in the flat dataset
    assert sorted(data.train["example_id"]) == list(range(28))


@pytest.mark.parametrize(
    "specs, stages, message",
    [
        (
            [DatasetSpec("a.jsonl", weight=1.0), DatasetSpec("b.jsonl")],
            [],
            r"^data\.datasets\[1\]\.weight: missing; give every dataset a weight or none$",
        ),
        ([DatasetSpec("a.jsonl"), DatasetSpec("x/a.jsonl")], [], r"^data\.datasets\[1\]\.name: 'a\.jsonl' is used"),
        (
            [DatasetSpec("a.jsonl")],
            [Stage("s", {"b": 1.0})],
            r"^data\.stages\[0\]\.weights\.b: no dataset is named 'b'",
        ),
        (
            [DatasetSpec("a.jsonl", format="nope")],
            [],
            r"^data\.datasets\[0\]\.format: unknown format 'nope'; known "
            r"formats: auto, messages, sharegpt",
        ),
    ],
)
def test_mix_config_errors_name_the_key(tokenizer, specs, stages, message):
    with pytest.raises(LmforgeError, match=message):
        build_datasets(specs, get_format("remask"), tokenizer, 512, "drop", seed=0, stages=stages)


def test_language_filter_that_leaves_nothing_names_the_dataset(tmp_path, tokenizer, remask, write_jsonl):
    path = write_jsonl(
        tmp_path / "de.jsonl",
        [
            {
                "messages": [{"role": "user", "content": "Hallo"}, {"role": "assistant", "content": "Hallo!"}],
                "lang": "de",
            }
        ],
    )
    with pytest.raises(
        LmforgeError,
        match=r"^data\.datasets\[0\] \(.*de\.jsonl\): no training examples left "
        r"after filtering \(1 records read; dropped language: 1;",
    ):
        build_datasets([DatasetSpec(str(path), lang="en", val_split=0.0)], remask, tokenizer, 512, "drop", seed=0)
