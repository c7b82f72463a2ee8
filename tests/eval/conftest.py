"""Task files in every supported schema (new records written for the tests, in the exact
public schemas of FORMATS.md), a tiny random model, and a tiny model trained for a few
seconds on plain GSM8K-style text so that it writes `#### n` answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmforge.demo.arithmetic import make_splits
from lmforge.demo.tokenizer import train_bpe_tokenizer
from tests.e2e.conftest import user_files, write_config  # noqa: F401 (fixture re-exported)

TRAIN, TEST = make_splits(200, 12, seed=11)


def gsm8k_answer(row: dict) -> str:
    return f"{row['rationale']}\n#### {row['answer']}"


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def task_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tasks")
    rows = TEST
    distractors = ["many more", "éé", "none"]
    return {
        "gsm8k": _write(root / "gsm8k.jsonl", [{"question": r["question"], "answer": gsm8k_answer(r)} for r in rows]),
        "cot": _write(root / "cot.jsonl", rows[:6]),
        "arc": _write(
            root / "arc.jsonl",
            [
                {
                    "id": f"q{i}",
                    "question": r["question"],
                    "choices": {
                        "text": [str(int(r["answer"]) + 1), r["answer"], *distractors[: 1 + i % 3]],
                        "label": [str(k + 1) for k in range(2 + 1 + i % 3)],
                    },
                    "answerKey": "2",
                }
                for i, r in enumerate(rows[:10])
            ],
        ),
        "text": _write(root / "text.jsonl", [{"text": f"{r['question']} {r['rationale']}"} for r in rows[:5]]),
        "chat": _write(
            root / "chat.jsonl",
            [
                {
                    "messages": [
                        {"role": "user", "content": r["question"]},
                        {"role": "assistant", "content": r["rationale"]},
                    ]
                }
                for r in rows[:4]
            ],
        ),
        "translation": _write(
            root / "wmt.jsonl", [{"translation": {"de": r["question"], "en": r["question"]}} for r in rows[:4]]
        ),
        "squad": _write(
            root / "squad.jsonl",
            [
                {
                    "id": str(i),
                    "title": "t",
                    "context": r["question"],
                    "question": "How many are there now?",
                    "answers": {"text": [r["answer"]], "answer_start": [0]},
                }
                for i, r in enumerate(rows[:4])
            ],
        ),
    }


def _tokenizer():
    texts = [f"Question: {r['question']}\nAnswer: {gsm8k_answer(r)}" for r in TRAIN]
    return train_bpe_tokenizer(texts, vocab_size=300)


def _llama(tokenizer, hidden: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory) -> Path:
    """A plain Hugging Face model directory (no lmforge.json), randomly initialised."""
    directory = tmp_path_factory.mktemp("random") / "model"
    tokenizer = _tokenizer()
    _llama(tokenizer, 32).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def gsm8k_model_dir(tmp_path_factory) -> Path:
    """Trained ~120 steps on plain-format problems: it writes `... #### n` (often wrong)."""
    directory = tmp_path_factory.mktemp("plain") / "model"
    tokenizer = _tokenizer()
    model = _llama(tokenizer, 64)
    texts = [f"Question: {r['question']}\nAnswer: {gsm8k_answer(r)}\n\n" for r in TRAIN]
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(120):
        batch = [encoded[i] for i in torch.randint(len(encoded), (16,), generator=generator).tolist()]
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = labels[row, : len(seq)] = torch.tensor(seq)
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, user_files) -> Path:  # noqa: F811 (user_files is the e2e fixture)
    """An lmforge run (remask format, CoT data) with checkpoint-2/ and checkpoint-4/."""
    from lmforge.cli import main

    root = tmp_path_factory.mktemp("eval-run")
    config = write_config(root / "config.yaml", user_files, root / "run", save_every=2, logging_steps=1)
    assert main(["train", str(config)]) == 0
    return root / "run"


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    from lmforge.cli import main

    capsys.readouterr()
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def cli_error(capsys, argv: list[str]) -> str:
    """The one-line message of a command that must fail with exit code 2."""
    code, _, err = run_cli(capsys, argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
