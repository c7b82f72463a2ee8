"""`lmforge tokenizer train`: a NeoX-style byte-level BPE from .txt and .jsonl files, saved
as a directory AutoTokenizer loads; deterministic; an existing directory is kept unless
--overwrite; bad input is a one-line error with exit code 2."""

from __future__ import annotations

import json
import random

import pytest
from transformers import AutoTokenizer

from lmforge.cli import main
from lmforge.data.formats import FORMATS
from lmforge.tokenizer_train import BYTE_ALPHABET, RECORD, prompt_format_tokens

WORDS = [
    "The",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "while",
    "Äpfel",
    "naïve",
    "Zürich",
    "東京",
    "rivers",
    "42",
    "apples",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A .txt file (one document a line, blank lines skipped) and a .jsonl file."""
    root = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(150)]
    (root / "a.txt").write_text("\n".join(lines[:100]) + "\n\n  \n", encoding="utf-8")
    (root / "b.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in lines[100:]), encoding="utf-8")
    return root


def _train(corpus, output, *extra: str) -> int:
    return main(
        ["tokenizer", "train", "--data", str(corpus / "a.txt"), str(corpus / "b.jsonl"), "--vocab-size", "330"]
        + ["--output", str(output), *extra]
    )


def _error(capsys, argv) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_trains_a_byte_level_bpe_that_autotokenizer_loads(corpus, tmp_path, capsys):
    assert _train(corpus, tmp_path / "tok") == 0
    assert "trained on 150 documents" in capsys.readouterr().out  # 100 lines + 50 records; blank lines skipped
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")
    specials = prompt_format_tokens()
    assert BYTE_ALPHABET + len(specials) < len(tokenizer) <= 330  # merges were learned, within the budget
    # NeoX layout: <|endoftext|> is bos and eos (id 0), <|padding|> is pad (id 1)
    assert (tokenizer.eos_token, tokenizer.bos_token, tokenizer.pad_token) == ("<|endoftext|>",) * 2 + ("<|padding|>",)
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (0, 1)
    # every prompt format's tokens are single tokens: training adds none to this tokenizer
    for prompt_format in FORMATS.values():
        for token in prompt_format.special_tokens(tokenizer):
            assert tokenizer(token, add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids(token)]
    # byte level: any text round-trips (bytes never seen included), nothing is lowercased
    text = "Zürich 東京 naïve — ∮ 🙂 <|user|>\nThe THE the"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    assert tokenizer.tokenize("The") != tokenizer.tokenize("the")
    record = json.loads((tmp_path / "tok" / RECORD).read_text())
    assert (record["documents"], record["tokens"], record["vocab_size"]) == (150, len(tokenizer), 330)


def test_the_same_files_give_a_byte_identical_tokenizer(corpus, tmp_path):
    assert _train(corpus, tmp_path / "one") == 0
    assert _train(corpus, tmp_path / "two") == 0
    first = (tmp_path / "one" / "tokenizer.json").read_bytes()
    assert first == (tmp_path / "two" / "tokenizer.json").read_bytes()
    # and the files matter: one file fewer gives another tokenizer
    assert (
        main(
            ["tokenizer", "train", "--data", str(corpus / "a.txt"), "--vocab-size", "330"]
            + ["--output", str(tmp_path / "three")]
        )
        == 0
    )
    assert (tmp_path / "three" / "tokenizer.json").read_bytes() != first


def test_jsonl_field_is_chosen_with_text_field(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"question": f"How many apples is {i} plus {i}?"}) + "\n" for i in range(40)))
    assert (
        main(
            [
                "tokenizer",
                "train",
                "--data",
                str(data),
                "--vocab-size",
                "320",
                "--output",
                str(tmp_path / "t"),
                "--text-field",
                "question",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "t" / RECORD).read_text())["documents"] == 40


def test_an_existing_directory_is_replaced_only_with_overwrite(corpus, tmp_path, capsys):
    output = tmp_path / "tok"
    assert _train(corpus, output) == 0
    before = (output / "tokenizer.json").read_bytes()
    assert "pass --overwrite" in _error(
        capsys, ["tokenizer", "train", "--data", str(corpus / "a.txt"), "--vocab-size", "320", "--output", str(output)]
    )
    assert (output / "tokenizer.json").read_bytes() == before  # untouched
    assert _train(corpus, output, "--overwrite") == 0
    assert not (tmp_path / "tok.tmp").exists()
    # a directory holding anything but a tokenizer is never replaced
    other = tmp_path / "project"
    other.mkdir()
    (other / "notes.md").write_text("mine")
    message = _error(
        capsys,
        [
            "tokenizer",
            "train",
            "--data",
            str(corpus / "a.txt"),
            "--vocab-size",
            "320",
            "--output",
            str(other),
            "--overwrite",
        ],
    )
    assert "not a tokenizer's (notes.md)" in message and (other / "notes.md").read_text() == "mine"


def test_bad_inputs_exit_2_with_one_line(corpus, tmp_path, capsys):
    base = ["tokenizer", "train", "--output", str(tmp_path / "out")]
    missing = tmp_path / "missing.txt"
    assert _error(capsys, [*base, "--data", str(missing), "--vocab-size", "400"]) == (
        f"lmforge: error: --data {missing}: no such file"
    )
    smallest = BYTE_ALPHABET + len(prompt_format_tokens())
    assert _error(capsys, [*base, "--data", str(corpus / "a.txt"), "--vocab-size", str(smallest - 1)]) == (
        f"lmforge: error: --vocab-size {smallest - 1}: must be at least {smallest} "
        f"({BYTE_ALPHABET} byte symbols + {len(prompt_format_tokens())} special tokens)"
    )
    empty = tmp_path / "empty.txt"
    empty.write_text("\n   \n\n")
    assert "no documents" in _error(capsys, [*base, "--data", str(empty), "--vocab-size", "400"])
    no_text = tmp_path / "no_text.jsonl"
    no_text.write_text('{"body": "x"}\n')
    assert "needs a string field 'text'" in _error(capsys, [*base, "--data", str(no_text), "--vocab-size", "400"])
    assert not (tmp_path / "out").exists()  # nothing written by a failed run
