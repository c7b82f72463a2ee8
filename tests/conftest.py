"""Shared fixtures: a tiny byte-level BPE tokenizer trained in well under a second, and a
JSONL writer for data-file tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lmforge.demo.tokenizer import train_bpe_tokenizer

# No newlines anywhere: the tokenizer then learns no merge across "\n", so a rendered
# prompt splits into the same tokens as its pieces tokenized one by one (the label-mask
# tests rely on this and check it).
CORPUS = [
    "The cat sat on the mat.",
    "The dog ran to the park.",
    "A bird sang in the tree.",
    "What is the capital of France?",
    "The capital of France is Paris.",
    "Hello there, how are you today?",
    "I am fine, thank you.",
    "Please write a short poem about the sea.",
    "The sea is blue and the sky is wide.",
    "Answer the question and explain your reasoning.",
    "You are a helpful assistant.",
    "Think step by step before you answer.",
    "What is 12 plus 7?",
    "12 plus 7 is 19.",
    "What is 3 times 4?",
    "3 times 4 is 12.",
    "What is 20 minus 5?",
    "20 minus 5 is 15.",
    "The answer is 19.",
    "The answer is 12.",
    "The answer is 15.",
    "Add the two numbers together.",
    "First add the tens, then add the ones.",
    "Tom has 3 apples and buys 4 more.",
    "How many apples does Tom have now?",
    "Tom has 7 apples now.",
    "Name a color of the rainbow.",
    "Red is a color of the rainbow.",
    "Translate hello into French.",
    "Hello in French is bonjour.",
    "Summarize the story in one sentence.",
    "The story is about a cat and a dog.",
]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """Trained once per session. Do not mutate it: use `tokenizer` for a private copy."""
    return train_bpe_tokenizer(CORPUS, vocab_size=300, extra_special_tokens=[])


@pytest.fixture
def tokenizer(tiny_tokenizer):
    """A fresh deep copy per test, so tests can add special tokens or a chat template."""
    return copy.deepcopy(tiny_tokenizer)


@pytest.fixture
def write_jsonl():
    """write_jsonl(path, rows) -> path; each row becomes one line of JSON."""

    def write(path: Path, rows: list) -> Path:
        path = Path(path)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        return path

    return write


@pytest.fixture(autouse=True)
def short_roof_probe(monkeypatch):
    """Every training run measures the machine's matmul roof (2 s by default): 0.05 s is
    enough for the tests, which check the summary, not the machine."""
    from lmforge.train import efficiency

    monkeypatch.setattr(efficiency, "ROOF_SECONDS", 0.05)


# Test tiers (markers declared in pyproject.toml): `make test-fast` leaves out the slow and
# multi-process ones, `make test` runs every CPU tier.
SLOW_PATHS = (
    "tests/e2e/",
    "tests/eval/test_harness.py",
    "tests/eval/test_benchmarks.py",
    "tests/data/test_prepare_ray.py",
)
MULTIPROCESS_PATHS = ("tests/train/test_distributed.py", "tests/train/test_deepspeed_zero3.py")


def pytest_collection_modifyitems(config, items):
    root = Path(str(config.rootpath))
    for item in items:
        path = Path(str(item.fspath)).resolve()
        relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
        if relative.startswith(SLOW_PATHS):
            item.add_marker(pytest.mark.slow)
        if relative.startswith(MULTIPROCESS_PATHS):
            item.add_marker(pytest.mark.multiprocess)
            item.add_marker(pytest.mark.slow)
