"""How many optimizer steps a config will run, without tokenizing anything (for plots and
planning; the Trainer's own count after filtering may be slightly lower)."""

from __future__ import annotations

import math

from lmforge.config import Config
from lmforge.data.sources import read_records


def estimate_total_steps(config: Config) -> int:
    if config.train.max_steps:
        return config.train.max_steps
    examples = 0
    for entry in config.data.datasets:
        records = sum(1 for _ in read_records(entry.path))
        train = records - round(records * entry.val_split) - round(records * entry.test_split)
        examples += min(train, entry.max_train_set) if entry.max_train_set else train
    steps_per_epoch = max(1, math.ceil(examples / config.train.global_batch_size))
    return max(1, math.ceil(steps_per_epoch * config.train.epochs))
