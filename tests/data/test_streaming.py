"""Streaming plain text: weighted interleaving, on-the-fly packing into full rows, the
packed layout, determinism, and compressed / .txt sources."""

from __future__ import annotations

import gzip
import itertools

from lmforge.data.packing import PackedCollator
from lmforge.data.streaming import PackedTextStream, TextSource
from lmforge.data.tokenize import IGNORE_INDEX


def write_docs(path, docs):
    path.write_text("".join(f'{{"text": "{d}"}}\n' for d in docs))
    return str(path)


def test_rows_are_full_and_positions_restart_per_document(tmp_path, tokenizer):
    docs = ["The cat sat on the mat.", "The dog ran to the park.", "A bird sang in the tree."] * 5
    stream = PackedTextStream(
        [TextSource(write_docs(tmp_path / "a.jsonl", docs))], tokenizer, max_length=16, batch_docs=4
    )
    rows = list(stream)
    total = sum(len(tokenizer(d, add_special_tokens=False)["input_ids"]) + 2 for d in docs)  # + bos, eos
    assert sum(len(r["input_ids"]) for r in rows) == total
    assert all(len(r["input_ids"]) == 16 for r in rows[:-1]) and 0 < len(rows[-1]["input_ids"]) <= 16
    for row in rows:
        assert row["position_ids"][0] == 0
        for position, label, token in zip(row["position_ids"], row["labels"], row["input_ids"]):
            assert label == (IGNORE_INDEX if position == 0 else token)
    first = rows[0]
    assert first["input_ids"][0] == tokenizer.bos_token_id and first["position_ids"].count(0) >= 2
    batch = PackedCollator(tokenizer.pad_token_id)(rows[:2])
    assert batch["input_ids"].shape == (2, 16) and "attention_mask" not in batch


def test_weighted_interleaving_is_deterministic(tmp_path, tokenizer):
    a = write_docs(tmp_path / "a.jsonl", ["The cat sat on the mat."] * 200)
    b = write_docs(tmp_path / "b.jsonl", ["A bird sang in the tree."] * 200)
    cat, bird = (tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in ("The cat", "A bird"))

    def first_rows(seed):
        stream = PackedTextStream([TextSource(a, 0.8), TextSource(b, 0.2)], tokenizer, 64, seed=seed)
        return list(itertools.islice(iter(stream), 20))

    rows = first_rows(1)
    starts = [
        row["input_ids"][i + 1]
        for row in rows
        for i, p in enumerate(row["position_ids"])
        if p == 0 and row["input_ids"][i] == tokenizer.bos_token_id and i + 1 < len(row["input_ids"])
    ]
    share = starts.count(cat) / (starts.count(cat) + starts.count(bird))
    assert 0.65 < share < 0.95
    assert rows == first_rows(1) and rows != first_rows(2)


def test_txt_and_gzip_sources(tmp_path, tokenizer):
    txt = tmp_path / "c.txt"
    txt.write_text("The cat sat on the mat.\n\nThe dog ran to the park.\n")
    gz = tmp_path / "d.jsonl.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write('{"content": "A bird sang in the tree."}\n')
    sources = [TextSource(str(txt)), TextSource(str(gz), text_field="content")]
    stream = PackedTextStream(sources, tokenizer, 512, fill="mix")
    [row] = list(stream)
    text = tokenizer.decode(row["input_ids"])
    assert text.count("<s>") == 3 and "A bird sang in the tree." in text and "The dog ran" in text
