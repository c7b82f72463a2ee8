"""Benchmark decontamination (data/decontaminate.py) in the in-memory path: an example that
shares a 13-word n-gram with an evaluation set is dropped and counted; one that shares
only shorter runs is kept."""

from __future__ import annotations

import json

import pytest

from lmforge.data.decontaminate import NgramIndex, ngram_hashes
from lmforge.data.pipeline import DatasetSpec, build_datasets
from lmforge.errors import LmforgeError

QUESTION = "Natalia sold clips to 48 of her friends in April and then she sold half as many clips in May"


def test_ngrams_follow_normalization_and_length():
    # 20 words -> 8 13-grams; case and punctuation do not matter
    assert len(ngram_hashes(QUESTION, 13)) == 8
    assert (ngram_hashes(QUESTION.upper() + "!!", 13) == ngram_hashes(QUESTION, 13)).all()
    assert len(ngram_hashes("only five words are here", 13)) == 0


def test_index_matches_a_shared_run_of_n_words(tmp_path):
    evals = tmp_path / "gsm8k.jsonl"
    evals.write_text(json.dumps({"question": QUESTION, "answer": "72"}) + "\n")
    index = NgramIndex.from_files([str(evals)], 13)
    words = QUESTION.split()
    assert index.contaminated("Intro text. " + " ".join(words[3:16]) + " and more")  # 13 shared words
    assert not index.contaminated("Intro text. " + " ".join(words[3:15]) + " and more")  # 12


def test_missing_or_too_short_set_is_one_line_error(tmp_path):
    with pytest.raises(LmforgeError, match=r"data.decontaminate.sets\[0\]: .*nope.jsonl: evaluation set not found"):
        NgramIndex.from_files([str(tmp_path / "nope.jsonl")])
    short = tmp_path / "short.txt"
    short.write_text("What is 3 times 4?\n")
    with pytest.raises(LmforgeError, match="no text of 13 words or more"):
        NgramIndex.from_files([str(short)])


def test_in_memory_path_drops_and_counts_contaminated(tmp_path, tokenizer, remask, write_jsonl):
    evals = tmp_path / "gsm8k.jsonl"
    evals.write_text(json.dumps({"question": QUESTION, "answer": "72"}) + "\n")
    rows = [
        {"instruction": f"Tell me about topic number {i} please.", "output": f"Topic {i} is fine."} for i in range(8)
    ]
    rows[2]["instruction"] = "Solve: " + QUESTION + "?"  # in the prompt
    rows[5]["output"] = "Here: " + QUESTION.lower()  # in the response
    path = write_jsonl(tmp_path / "sft.jsonl", rows)
    data = build_datasets(
        [DatasetSpec(str(path), val_split=0.0)],
        remask,
        tokenizer,
        512,
        "drop",
        seed=0,
        decontaminate=NgramIndex.from_files([str(evals)], 13),
    )
    [report] = data.reports
    assert report.dropped["contaminated"] == 2 and report.train == 6


def test_decontaminate_with_streaming_is_a_config_error(tmp_path):
    """The streaming path drops no documents: data.decontaminate there would be ignored."""
    from lmforge.config.loader import load_config

    config = tmp_path / "c.yaml"
    text = (
        "model:\n  name_or_path: x\n"
        "data:\n  streaming: {streaming}\n  datasets:\n    - path: a.jsonl\n"
        "  decontaminate:\n    sets: [gsm8k.jsonl]\n"
        "train:\n  max_steps: 10\n"
    )
    config.write_text(text.format(streaming="true"))
    with pytest.raises(LmforgeError) as error:
        load_config(str(config), [], [])
    message = str(error.value)
    assert "\n" not in message
    assert "data.decontaminate: not applied with data.streaming: true" in message
    config.write_text(text.format(streaming="false"))
    assert load_config(str(config), [], []).data.decontaminate.sets == ["gsm8k.jsonl"]
