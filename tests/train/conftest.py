"""Tiny models and token data for trainer tests (no tokenizer needed)."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments

from lmforge.data.collate import PadCollator
from lmforge.objectives import build_objective
from lmforge.train.callbacks import NonFiniteGuard
from lmforge.train.trainer import LmforgeTrainer
from tests.e2e.conftest import user_files  # noqa: F401 (the e2e fixture, for precision and checkpointing runs)

VOCAB = 48
PAD = 0


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=PAD,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def token_rows(n: int, seed: int = 0) -> list[dict]:
    """Rows of very different lengths and prompt lengths, so a per-micro-batch mean
    would differ from the global token mean."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = rng.randint(6, 30)
        prompt = rng.randint(2, length - 2)
        ids = [rng.randint(3, VOCAB - 1) for _ in range(length)]
        rows.append(
            {
                "input_ids": ids,
                "labels": [-100] * prompt + ids[prompt:],
                "token_roles": [0] * prompt + [1] * (length - prompt),
            }
        )
    return rows


def make_trainer(
    model,
    rows,
    output_dir,
    micro_batch: int,
    accumulation: int,
    max_steps: int,
    objective=None,
    callbacks=(),
    optimizer: str = "adamw",
    lr: float = 1e-3,
    max_consecutive_nonfinite: int = 3,
    seed: int = 0,
    no_decay_params=(),
    weight_decay: float = 0.0,
    **args,
) -> LmforgeTrainer:
    guard = NonFiniteGuard(max_consecutive_nonfinite)
    return LmforgeTrainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(output_dir),
            per_device_train_batch_size=micro_batch,
            gradient_accumulation_steps=accumulation,
            max_steps=max_steps,
            learning_rate=lr,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            remove_unused_columns=False,
            seed=seed,
            data_seed=seed,
            disable_tqdm=True,
            dataloader_pin_memory=False,
            **args,
        ),
        train_dataset=rows,
        data_collator=PadCollator(PAD),
        callbacks=[guard, *callbacks],
        objective=objective or build_objective("ce", {}),
        optimizer_spec={"name": optimizer, "lr": lr, "weight_decay": weight_decay},
        schedule_spec={"name": "constant", "warmup_ratio": 0.0},
        guard=guard,
        no_decay_params=no_decay_params,
    )


@pytest.fixture
def rows():
    return token_rows(32)
