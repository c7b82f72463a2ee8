"""Held-out documents of a stream (a dataset's val_split under data.streaming): chosen by a
hash of their text, never read by the training stream in any epoch or after a resume, and
packed into the source's validation rows exactly as training packs rows."""

from __future__ import annotations

import itertools
import json

import pytest

from lmforge.data.mixture import MixturePlan, StagePlan, validation_rows
from lmforge.data.stream_reader import held_out, read_documents
from lmforge.data.streaming import PackedTextStream, TextSource, pack_documents
from tests.data.test_streaming_mixture import WORDS, corpus


def numbered_corpus(path, n):
    """Every document distinct: 'doc <i> ...' with a few words."""
    path.write_text(
        "".join(json.dumps({"text": f"doc {i} " + " ".join(WORDS[i % 7 : i % 7 + 4])}) + "\n" for i in range(n))
    )
    return str(path)


def all_texts(path):
    return [json.loads(line)["text"] for line in open(path)]


def test_held_out_documents_are_a_hash_share_disjoint_from_training(tmp_path):
    path = numbered_corpus(tmp_path / "a.jsonl", 400)
    source = TextSource(path, holdout=0.25, name="a")
    train = [t for t, _ in read_documents(source.documents, source.documents.start())]
    val = [t for t, _ in read_documents(source.held_out_side().documents, source.documents.start())]
    texts = all_texts(path)
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(texts)  # every document on exactly one side
    assert val == [t for t in texts if held_out(t, 0.25)]
    assert 60 < len(val) < 140  # about a quarter of 400
    # a share 0 holds nothing out: the source reads every document, its held-out side none
    plain = TextSource(path, name="a")
    assert [t for t, _ in read_documents(plain.documents, plain.documents.start())] == texts
    assert list(read_documents(plain.held_out_side().documents, plain.documents.start())) == []


@pytest.mark.parametrize("isolate", [True, False])
def test_training_rows_never_hold_a_held_out_document(tokenizer, tmp_path, isolate):
    """One source, filled row after row: the rows' tokens laid end to end are the training
    documents' tokens, epoch after epoch, and none of the held-out ones."""
    path = numbered_corpus(tmp_path / "a.jsonl", 60)
    source = TextSource(path, holdout=0.3, name="a")
    stream = PackedTextStream([source], tokenizer, 16, seed=1, repeat=True, isolate=isolate)
    texts = all_texts(path)
    train_docs = stream.tokenize([t for t in texts if not held_out(t, 0.3)])
    held_docs = stream.tokenize([t for t in texts if held_out(t, 0.3)])
    assert held_docs and train_docs
    epoch = [token for doc in train_docs for token in doc]
    rows = list(itertools.islice(iter(stream), 3 * len(epoch) // 16))  # about 3 epochs
    laid = [token for row in rows for token in row["input_ids"]]
    assert laid == (epoch * 4)[: len(laid)]
    assert len(laid) > 2 * len(epoch)

    # resumed mid-stream (mid-epoch, mid-document) it goes on with training documents only
    cut = len(rows) - 20  # the stream keeps its last 64 snapshots
    state = stream.state_at(cut)
    assert state is not None and state["sources"][0]["epoch"] >= 1
    stream.resume(state)
    assert list(itertools.islice(iter(stream), 20)) == rows[cut:]

    # the held-out side: the same documents packed as training packs them
    plan = MixturePlan([source], [StagePlan("train", (1.0,), 10)], 16, 1, val_documents=(1000,))
    val = validation_rows(plan, stream, isolate)
    assert list(val) == ["a"]
    assert val["a"] == pack_documents(held_docs, 16, isolate)
    assert [token for row in val["a"] for token in row["input_ids"]] == [t for doc in held_docs for t in doc]
    assert all(len(row["input_ids"]) == 16 for row in val["a"][:-1])
    if isolate:  # each document's first token is no target, as in training rows
        first = val["a"][0]
        assert first["position_ids"][0] == 0 and first["labels"][0] == -100


def test_validation_takes_the_first_max_val_set_held_out_documents(tokenizer, tmp_path):
    path = corpus(tmp_path / "b.jsonl", 300, 4, "sky ")
    source = TextSource(path, holdout=0.2, name="b")
    stream = PackedTextStream([source], tokenizer, 32, repeat=True)
    plan = MixturePlan([source], [StagePlan("train", (1.0,), 10)], 32, 1, val_documents=(5,))
    held = [t for t in all_texts(path) if held_out(t, 0.2)][:5]
    rows = validation_rows(plan, stream, True)["b"]
    assert [t for row in rows for t in row["input_ids"]] == [t for doc in stream.tokenize(held) for t in doc]
