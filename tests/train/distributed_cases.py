"""Training cases for the multi-process tests, run the same way by one process (pytest,
in-process) and by `torchrun --nproc_per_node 2 tests/train/distributed_cases.py CASES.json`.

A case is a JSON object: name, output_dir, objective (mapping), neftune_alpha, fsdp
(mapping or null), deepspeed (inline DeepSpeed mapping or null), adapter (model.adapter
mapping or null), builder ("sft" or
"rank"), resume, kill_after_step (SIGKILL every process right after the checkpoint of
that step is on disk), data (replaces the data mapping), train (overrides train's keys).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from lmforge.bootstrap.loop import load_questions, rank_data_builder
from lmforge.config import Config
from lmforge.train.pipeline import run_training

REPO = Path(__file__).resolve().parents[2]
GLOBAL_BATCH = 4
MAX_STEPS = 4
SAVE_EVERY = 2


def case_config(case: dict[str, Any]) -> Config:
    return Config.model_validate(
        {
            "run": {"output_dir": case["output_dir"], "seed": 7},
            "model": {
                "tokenizer": str(REPO / "examples" / "tokenizer"),
                "size": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "max_position_embeddings": 256},
                "adapter": case.get("adapter"),
            },
            "data": case.get("data")
            or {
                "datasets": [
                    {
                        "path": str(REPO / "examples" / "data" / "arithmetic-cot.jsonl"),
                        "val_split": 0.0,
                        "max_train_set": 40,
                    }
                ],
                "prompt_format": "remask",
                "max_length": 128,
                "dedup": {"near": False},
            },
            "train": {
                "objective": case["objective"],
                "optimizer": {"lr": 3e-3},
                "schedule": {"name": "constant"},
                "micro_batch_size": 1,
                "global_batch_size": GLOBAL_BATCH,
                "max_steps": MAX_STEPS,
                "save_every": SAVE_EVERY,
                "logging_steps": 1,
                "neftune_alpha": case.get("neftune_alpha"),
                "fsdp": case.get("fsdp"),
                "deepspeed": case.get("deepspeed"),
                **case.get("train", {}),
            },
        }
    )


class KillAfterCheckpoint(TrainerCallback):
    """Die like a preempted job: SIGKILL, no cleanup, right after a checkpoint."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            if torch.distributed.is_initialized():
                torch.distributed.barrier()  # every process's part of the checkpoint is written
            os.kill(os.getpid(), signal.SIGKILL)


def rank_builder(config: Config):
    """(gold, chosen, rejected) rows from the example CoT problems: the chosen response is
    the gold rationale, the rejected one a wrong answer."""
    questions = load_questions(config)
    pairs = [
        {
            "question_id": i,
            "chosen": f"{q.segments[-2].text} <|answer|>{q.segments[-1].text}",
            "rejected": "I do not know. <|answer|>0",
        }
        for i, q in enumerate(questions)
    ]
    return rank_data_builder(questions, pairs, Path(config.data.datasets[0].path))


def run_case(case: dict[str, Any]) -> Path:
    config = case_config(case)
    callbacks = [KillAfterCheckpoint(case["kill_after_step"])] if case.get("kill_after_step") else []
    extra = {"data_builder": rank_builder(config)} if case.get("builder") == "rank" else {}
    result = run_training(
        config, overwrite=not case.get("resume"), resume=bool(case.get("resume")), extra_callbacks=callbacks, **extra
    )
    return result.model_dir


if __name__ == "__main__":
    for case in json.loads(Path(sys.argv[1]).read_text()):
        run_case(case)
