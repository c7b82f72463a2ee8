"""data.streaming from the tokenized shards `lmforge data prepare --tokenize` writes: the
same rows as the same documents streamed as text, exact resumption without reading the
shards before the position, held-out documents by a hash of their token ids, weights and
accounting with a text source, and one-line errors for shards the run cannot use."""

from __future__ import annotations

import itertools
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("datatrove")

from pydantic import ValidationError  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from lmforge.config.schema import DataConfig  # noqa: E402
from lmforge.data.clean import DedupSettings  # noqa: E402
from lmforge.data.mixture import accounting, build_stream, mixture_plan, sample_source, validation_rows  # noqa: E402
from lmforge.data.pipeline import DatasetSpec  # noqa: E402
from lmforge.data.prepare import PrepareOptions, prepare  # noqa: E402
from lmforge.data.stream_reader import DocumentSource, read_documents  # noqa: E402
from lmforge.data.streaming import PackedTextStream, TextSource  # noqa: E402
from lmforge.demo.tokenizer import train_bpe_tokenizer  # noqa: E402
from lmforge.errors import LmforgeError  # noqa: E402
from tests.conftest import CORPUS  # noqa: E402

WORDS = " ".join(CORPUS).replace(".", " .").replace("?", " ?").replace(",", " ,").split()


def take(stream, n):
    return list(itertools.islice(iter(stream), n))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_tokenizer):
    """A 300-document corpus in two files, prepared (no dedup) into two token shards, and the
    same documents as one JSONL file."""
    root = tmp_path_factory.mktemp("prepared")
    rng = random.Random(0)
    docs = [" ".join(rng.choices(WORDS, k=rng.randint(3, 40))) for _ in range(300)]
    (root / "web").mkdir()
    for part, chunk in enumerate((docs[:170], docs[170:])):
        (root / "web" / f"part{part}.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in chunk))
    (root / "all.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    tiny_tokenizer.save_pretrained(root / "tok")
    options = PrepareOptions(root / "out", tokenizer=str(root / "tok"), tokenize=True, tasks=2)
    prepare([DatasetSpec(str(root / "web"), name="web")], DedupSettings(exact=False, near=False), None, options)
    [tokens] = (root / "out" / "tokens").iterdir()
    [texts] = (root / "out" / "shards").iterdir()
    assert len(list(tokens.glob("*.ds"))) == 2
    return {
        "root": root,
        "docs": docs,
        "tokens": str(tokens),
        "text_shards": [str(p) for p in sorted(texts.glob("*.jsonl"))],
        "text": str(root / "all.jsonl"),
        "tokenizer": AutoTokenizer.from_pretrained(root / "tok"),
    }


def stream_of(paths, tokenizer, weights=None, **kwargs):
    weights = weights or [1.0] * len(paths)
    sources = [
        TextSource(p, w, name=f"s{i}", key=f"data.datasets[{i}]") for i, (p, w) in enumerate(zip(paths, weights))
    ]
    settings = {"seed": 3, "fill": "source", "isolate": True, "repeat": True, "batch_docs": 16} | kwargs
    return PackedTextStream(sources, tokenizer, 32, **settings)


def test_shard_rows_are_the_text_rows(prepared, tmp_path):
    tokenizer = prepared["tokenizer"]
    # the text shards prepare wrote beside the tokens hold the corpus's documents, in order
    text_shards = tmp_path / "shards.jsonl"
    text_shards.write_text("".join(Path(p).read_text() for p in prepared["text_shards"]))
    texts = [json.loads(line)["text"] for line in text_shards.read_text().splitlines()]
    assert texts == prepared["docs"]
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"text": " ".join(reversed(d.split()))}) + "\n" for d in texts[:50]))
    # one source (over several epochs), and mixed by weight with a text source
    for paths, weights in (([], None), ([str(other)], [0.7, 0.3])):
        from_shards = take(stream_of([prepared["tokens"], *paths], tokenizer, weights), 300)
        for text in (str(text_shards), prepared["text"]):
            assert take(stream_of([text, *paths], tokenizer, weights), 300) == from_shards
    assert from_shards[0]["input_ids"][0] == tokenizer.bos_token_id
    assert all({"input_ids", "labels", "position_ids"} <= set(row) for row in from_shards)
    # the run's tokenizer in memory (no name_or_path): the vocabularies are compared instead
    plain = stream_of([prepared["tokens"]], AutoTokenizer.from_pretrained(prepared["root"] / "tok"))
    plain.tokenizer.name_or_path = ""
    assert take(plain, 20) == take(stream_of([prepared["text"]], tokenizer), 20)


def overwrite_before(folder, offset):
    """Every .ds byte before `offset` (in the shards' order) set to 0xff: ids far beyond the
    vocabulary, which a stream reading them would refuse."""
    for shard in sorted(folder.glob("*.ds")):
        data = shard.read_bytes()
        cut = min(offset, len(data))
        shard.write_bytes(b"\xff" * cut + data[cut:])
        offset -= cut


def test_resume_continues_exactly_without_reading_earlier_shards(prepared, tmp_path):
    tokenizer = prepared["tokenizer"]
    straight = take(stream_of([prepared["tokens"]], tokenizer, repeat=False), 5000)
    assert len(straight) < 5000  # one epoch, ended
    first = stream_of([prepared["tokens"]], tokenizer, repeat=False)
    take(first, len(straight) * 3 // 4)
    later = range(len(straight) * 3 // 4 - 60, len(straight) * 3 // 4)
    cut = next(k for k in later if first.state_at(k)["sources"][0]["taken"])  # mid-document
    state = json.loads(json.dumps(first.state_at(cut)))
    assert state["sources"][0]["records"] > 170  # in the second shard
    folder = tmp_path / "tokens"
    shutil.copytree(prepared["tokens"], folder)
    overwrite_before(folder, state["sources"][0]["offset"])
    resumed = stream_of([str(folder)], tokenizer, repeat=False)
    resumed.resume(state)
    assert take(resumed, 5000) == straight[cut:]
    with pytest.raises(LmforgeError, match=r"data.datasets\[0\].path: a document of .* holds token id 65535"):
        take(stream_of([str(folder)], tokenizer), 1)


def test_held_out_documents_are_a_hash_share_of_the_token_ids(prepared):
    def documents(side, path=prepared["tokens"]):
        source = DocumentSource(path, holdout=0.3, side=side)
        return [
            (d.tobytes() if not isinstance(d, str) else d, p.records) for d, p in read_documents(source, source.start())
        ]

    train, val = documents("train"), documents("val")
    assert {r for _, r in train} | {r for _, r in val} == set(range(1, 301))
    assert not {d for d, _ in train} & {d for d, _ in val}
    assert 45 < len(val) < 135
    # text hashes differently: the held-out documents are not the ones text would hold out
    assert {r for _, r in val} != {r for _, r in documents("val", prepared["text"])}
    # validation rows come from the held-out documents, packed as training packs them
    data = DataConfig.model_validate(
        {"streaming": True, "max_length": 32, "datasets": [{"path": prepared["tokens"], "val_split": 0.3}]}
    )
    plan = mixture_plan(data, max_steps=4, global_batch=2)
    stream = build_stream(plan, prepared["tokenizer"], 0, "source", True)
    rows = validation_rows(plan, stream, True)[plan.sources[0].label]
    assert sum(len(r["input_ids"]) for r in rows) == sum(len(np.frombuffer(d, "<u2")) + 1 for d, _ in val)


def test_weights_stages_and_accounting_with_a_text_source(prepared):
    data = DataConfig.model_validate(
        {
            "streaming": True,
            "max_length": 32,
            "datasets": [
                {"path": prepared["tokens"], "name": "web", "weight": 3},
                {"path": prepared["text"], "name": "text", "weight": 1},
            ],
            "stages": [
                {"name": "mixed", "weights": {"web": 3, "text": 1}, "steps": 5},
                {"name": "web", "weights": {"web": 1}},
            ],
        }
    )
    plan = mixture_plan(data, max_steps=10, global_batch=4)
    stream = build_stream(plan, prepared["tokenizer"], 0, "source", True)
    sample = sample_source(plan.sources[0], stream, documents=400)
    assert sample.complete and sample.documents == 300
    assert sample.estimated_tokens(plan.sources[0].documents.size()) == sample.tokens
    rows = take(stream, 40)
    report = accounting(plan, stream.state_at(40), 10)
    web, text = report["sources"]["web"], report["sources"]["text"]
    assert web["tokens"] + text["tokens"] == sum(len(r["input_ids"]) for r in rows) == 40 * 32
    assert web["target"] == pytest.approx(0.875) and 0.6 < web["share"] < 0.99
    assert 0 < web["epochs"] < 1 and report["stage"] == "web"
    # the web stage (rows 20 on) draws the shards alone
    assert 0 < stream.state_at(20)["sources"][1]["tokens"] == text["tokens"]


def test_bad_shards_and_misuse_are_one_line_errors(prepared, tmp_path, tokenizer):
    with pytest.raises(ValidationError, match=r"data.datasets\[0\].path: .* tokenized shards .*data.streaming: true"):
        DataConfig.model_validate({"datasets": [{"path": prepared["tokens"]}]})
    parent = str(prepared["root"] / "out" / "tokens")
    with pytest.raises(
        LmforgeError, match=r"data.datasets\[0\].path: .* a folder of tokenized shards per source; give"
    ):
        mixture_plan(DataConfig.model_validate({"streaming": True, "datasets": [{"path": parent}]}), 4, 2)
    folder = tmp_path / "tokens"
    shutil.copytree(prepared["tokens"], folder)
    [first, second] = sorted(folder.glob("*.ds"))
    second.write_bytes(second.read_bytes()[:-2])  # cut
    with pytest.raises(LmforgeError, match=r"data.datasets\[0\].path: .*00001.ds: holds \d+ tokens but its index"):
        stream_of([str(folder)], tokenizer)
    first.with_name(first.name + ".index").unlink()
    with pytest.raises(LmforgeError, match=r"data.datasets\[0\].path: .*00000.ds: not a tokenized shard"):
        stream_of([str(first)], tokenizer)
    # shards made with another tokenizer
    other = train_bpe_tokenizer(["zebra quagga okapi"] * 20, vocab_size=280, extra_special_tokens=[])
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(
        LmforgeError, match=r"data.datasets\[0\].path: .* was tokenized with .*tok/tokenizer.json, not "
    ):
        stream_of([prepared["tokens"]], AutoTokenizer.from_pretrained(tmp_path / "other"))
