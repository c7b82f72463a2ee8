"""Streaming mixtures: MPT's fill rule (a row from one source), epochs over short sources,
stages, attention isolation on or off, and exact resumption from a saved state (a seek
for .jsonl/.txt, which never reads the consumed bytes again; a skip for compressed files)."""

from __future__ import annotations

import gzip
import itertools
import json

import pytest

from lmforge.data.mixture import accounting, mixture_plan
from lmforge.data.streaming import PackedTextStream, StreamStage, TextSource
from lmforge.data.tokenize import IGNORE_INDEX
from lmforge.errors import LmforgeError

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "to", "mat", "park", "bird", "sang", "in", "tree", "sea", "sky"]


def corpus(path, n, seed, prefix=""):
    import random

    rng = random.Random(seed)
    lines = [json.dumps({"text": prefix + " ".join(rng.choices(WORDS, k=rng.randint(3, 30)))}) for _ in range(n)]
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt") as handle:
            handle.write("\n".join(lines) + "\n")
    else:
        path.write_text("\n".join(lines) + "\n")
    return str(path)


def take(stream, n):
    return list(itertools.islice(iter(stream), n))


@pytest.fixture
def three(tmp_path):
    return [
        TextSource(corpus(tmp_path / "a.jsonl", 300, 1, "sea "), 0.6, name="a"),
        TextSource(corpus(tmp_path / "b.jsonl.gz", 300, 2, "sky "), 0.3, name="b"),
        TextSource(corpus(tmp_path / "c.jsonl", 2, 3, "tree "), 0.1, name="c"),  # short: several epochs
    ]


@pytest.mark.parametrize("fill", ["source", "mix"])
@pytest.mark.parametrize("isolate", [True, False])
def test_resume_from_any_saved_state_continues_exactly(tokenizer, three, fill, isolate):
    def stream():
        return PackedTextStream(three, tokenizer, 32, seed=5, fill=fill, isolate=isolate, repeat=True, batch_docs=7)

    straight = take(stream(), 120)
    first = stream()
    take(first, 50)  # a consumer read ahead of what it trained on: the state is the one after row 40
    state = json.loads(json.dumps(first.state_at(40)))  # JSON-safe, as trainer_state.json stores it
    resumed = stream()
    resumed.resume(state)
    assert take(resumed, 80) == straight[40:]
    assert all(len(row["input_ids"]) == 32 for row in straight)
    assert state["sources"][2]["epoch"] >= 1  # the 2-document source was read over again


def test_seekable_sources_resume_without_reading_the_consumed_part(tokenizer, tmp_path):
    path = tmp_path / "a.jsonl"
    corpus(path, 400, 1)
    stream = PackedTextStream([TextSource(str(path))], tokenizer, 32, seed=0, repeat=True)
    straight = take(stream, 60)
    state = stream.state_at(30)
    offset = state["sources"][0]["offset"]
    assert 0 < offset < path.stat().st_size
    # overwrite every byte before the saved offset: a resumed stream that read them would fail
    data = path.read_bytes()
    path.write_bytes(b"x" * offset + data[offset:])
    resumed = PackedTextStream([TextSource(str(path))], tokenizer, 32, seed=0, repeat=True)
    resumed.resume(state)
    assert take(resumed, 30) == straight[30:]


def test_source_fill_rows_come_from_one_source_in_proportion(tokenizer, tmp_path):
    """MPT-1B's rule: each row is filled from one source, drawn by weight (the seed's 67% /
    15% / 18% here). Which source a row came from: the per-source token counts of the
    stream's state before and after it (snapshots every row)."""
    weights = {"a": 0.67, "b": 0.15, "c": 0.18}
    sources = [
        TextSource(corpus(tmp_path / f"{n}.jsonl", 60, i), w, name=n) for i, (n, w) in enumerate(weights.items())
    ]
    stream = PackedTextStream(sources, tokenizer, 24, seed=3, repeat=True, snapshot_every=1)
    counts = {"a": 0, "b": 0, "c": 0}
    before = stream.state_at(0)
    for rows, _ in enumerate(itertools.islice(iter(stream), 600), start=1):
        after = stream.state_at(rows)
        grew = [s["name"] for s, t in zip(before["sources"], after["sources"]) if t["tokens"] != s["tokens"]]
        assert len(grew) == 1, f"row {rows} mixes sources {grew}"
        assert sum(t["tokens"] - s["tokens"] for s, t in zip(before["sources"], after["sources"])) == 24
        counts[grew[0]] += 1
        before = after
    assert counts["a"] / 600 == pytest.approx(0.67, abs=0.06)
    assert counts["b"] / 600 == pytest.approx(0.15, abs=0.05)
    mixed = PackedTextStream(sources, tokenizer, 24, seed=3, repeat=True, fill="mix")
    take(mixed, 100)
    assert sum(s["tokens"] > 0 for s in mixed.state_at(100)["sources"]) == 3


def test_isolation_restarts_positions_per_document_or_not(tokenizer, tmp_path):
    src = [TextSource(corpus(tmp_path / "a.jsonl", 50, 1))]
    isolated = take(PackedTextStream(src, tokenizer, 64, repeat=True), 3)
    causal = take(PackedTextStream(src, tokenizer, 64, repeat=True, isolate=False), 3)
    assert [r["input_ids"] for r in isolated] == [r["input_ids"] for r in causal]
    for row in causal:
        assert row["position_ids"] == list(range(64))
        assert row["labels"] == [IGNORE_INDEX, *row["input_ids"][1:]]
    row = isolated[0]
    starts = [i for i, p in enumerate(row["position_ids"]) if p == 0]
    assert len(starts) >= 2 and all(row["input_ids"][i] == tokenizer.bos_token_id for i in starts)
    assert all(row["labels"][i] == IGNORE_INDEX for i in starts)


def test_stages_draw_their_own_sources_in_order(tokenizer, three):
    stages = [StreamStage("one", (0.0, 1.0, 0.0), rows=10), StreamStage("two", (0.0, 0.0, 1.0))]
    stream = PackedTextStream(three, tokenizer, 32, seed=1, repeat=True, stages=stages)
    take(stream, 10)
    after_one = stream.state_at(10)
    assert [s["tokens"] for s in after_one["sources"]] == [0, 320, 0]
    take(stream, 25)
    later = stream.state_at(25)
    assert later["sources"][1]["tokens"] == 320 and later["sources"][2]["tokens"] == 15 * 32


def test_a_state_from_other_sources_is_refused(tokenizer, three):
    stream = PackedTextStream(three, tokenizer, 32, repeat=True)
    take(stream, 5)
    other = PackedTextStream(three[:2], tokenizer, 32, repeat=True)
    with pytest.raises(LmforgeError, match="resume with the config"):
        other.resume(stream.state_at(5))


def test_an_empty_source_is_an_error_not_a_hang(tokenizer, tmp_path):
    (tmp_path / "e.jsonl").write_text('{"text": "  "}\n')
    stream = PackedTextStream(
        [TextSource(str(tmp_path / "e.jsonl"), key="data.datasets[0]")], tokenizer, 32, repeat=True
    )
    with pytest.raises(LmforgeError, match=r"data.datasets\[0\]: .*holds no documents"):
        take(stream, 1)


def test_accounting_reports_share_target_and_epochs(tokenizer, three):
    from lmforge.config.schema import DataConfig

    data = DataConfig.model_validate(
        {
            "streaming": True,
            "max_length": 32,
            "datasets": [{"path": s.path, "name": s.name, "weight": s.weight} for s in three],
        }
    )
    plan = mixture_plan(data, max_steps=10, global_batch=4)
    stream = PackedTextStream(plan.sources, tokenizer, 32, seed=0, repeat=True, stages=plan.stream_stages())
    take(stream, 40)
    report = accounting(plan, stream.state_at(40), 10)
    rows = report["sources"]
    assert sum(r["tokens"] for r in rows.values()) == 40 * 32
    assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0, abs=1e-3)
    assert [rows[n]["target"] for n in "abc"] == [0.6, 0.3, 0.1]
    assert rows["c"]["epochs"] > 1  # 2 short documents, drawn 10% of 1280 tokens
    assert 0 < rows["a"]["epochs"] < 1


def test_priorities_are_weights_4_2_1_before_normalization(tmp_path):
    from pydantic import ValidationError

    from lmforge.config.schema import DataConfig

    entries = [
        {"path": "a.jsonl", "priority": "high"},
        {"path": "b.jsonl", "priority": "medium"},
        {"path": "c.jsonl", "priority": "low"},
    ]
    data = DataConfig.model_validate({"streaming": True, "datasets": entries})
    assert [d.weight for d in data.datasets] == [4.0, 2.0, 1.0]
    plan = mixture_plan(data, max_steps=4, global_batch=2)
    assert plan.stages[0].weights == pytest.approx((4 / 7, 2 / 7, 1 / 7))
    dumped = data.model_dump()  # the saved config holds the weights, and loads back the same
    assert "priority" not in dumped["datasets"][0]
    assert DataConfig.model_validate(dumped).datasets[0].weight == 4.0
    with pytest.raises(ValidationError, match="a weight or a priority, not both"):
        DataConfig.model_validate({"datasets": [{"path": "a.jsonl", "priority": "high", "weight": 1.0}]})
    with pytest.raises(ValidationError, match="every dataset a weight or every dataset a priority"):
        DataConfig.model_validate({"datasets": [{"path": "a.jsonl", "priority": "high"}, {"path": "b", "weight": 1}]})
    with pytest.raises(ValidationError, match=r"data.stages\[0\].tokens: only with data.streaming"):
        DataConfig.model_validate(
            {"datasets": entries, "stages": [{"name": "s", "weights": {"a.jsonl": 1}, "tokens": 9}]}
        )
