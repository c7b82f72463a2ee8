"""How many optimizer steps a config will run, for plots and planning (`lmforge schedule
plot`, `lmforge config show`). Training itself needs none of this: the Trainer counts its
steps from the data it was given, and the schedule is built from that count.

`count_total_steps` gives the count training will reach: train.max_steps when set (a
stream's stages split it by their budgets, `stage_spans`), else the rows of the training
data as `lmforge data inspect` builds it (packing, dataset weights and mix_size,
deduplication, splits, max_train_set and stages all applied), turned into steps as the
Trainer does (`steps_for_rows`). When the data cannot be built here (no tokenizer on disk,
a hub dataset) it falls back to `estimate_total_steps`, which counts records and says that
it is an estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lmforge.config import Config
from lmforge.data.sources import read_records
from lmforge.errors import LmforgeError


@dataclass(frozen=True)
class StepCount:
    steps: int
    how: str
    """Where the count comes from, said in the plot title and config show."""
    exact: bool
    """False for the record-count estimate."""


@dataclass(frozen=True)
class StageSpan:
    name: str
    steps: int
    lr_scale: float


def steps_for_rows(rows: int, micro_batch: int, accumulation: int, processes: int, epochs: float) -> int:
    """The Trainer's step count for `rows` training rows (transformers'
    set_initial_training_values): each process gets ceil(batches / processes) micro-batches
    of an epoch, an optimizer step takes `accumulation` of them (the last step of an epoch
    may take fewer), and fractional epochs round up.

    >>> steps_for_rows(100, micro_batch=4, accumulation=2, processes=1, epochs=1)  # 25 batches
    13
    >>> steps_for_rows(100, micro_batch=4, accumulation=2, processes=2, epochs=1.5)  # 13 per process
    11
    """
    batches = math.ceil(math.ceil(rows / micro_batch) / processes)
    per_epoch = max(math.ceil(batches / accumulation), 1)
    return math.ceil(epochs * per_epoch)


def count_total_steps(config: Config, processes: int | None = None) -> StepCount:
    """The optimizer steps `config` trains for (see the module docstring); `processes`
    defaults to this launch's world size."""
    from lmforge.train.distributed import world_size
    from lmforge.train.pipeline import gradient_accumulation

    train = config.train
    if train.max_steps:
        return StepCount(train.max_steps, "train.max_steps", True)
    if config.data.streaming:
        raise LmforgeError("train.max_steps: data.streaming needs a step count (a stream has no length); set it")
    processes = processes or world_size()
    try:
        rows = prepared_rows(config)
    except (LmforgeError, OSError) as exc:
        steps = estimate_total_steps(config)
        return StepCount(steps, f"estimated from the records (the data could not be built here: {exc})", False)
    accumulation = gradient_accumulation(train.global_batch_size, train.micro_batch_size, processes)
    steps = steps_for_rows(rows, train.micro_batch_size, accumulation, processes, train.epochs)
    packed = " packed" if config.data.packing else ""
    return StepCount(steps, f"counted from the data: {rows}{packed} training rows x {train.epochs:g} epochs", True)


def prepared_rows(config: Config) -> int:
    """Training rows of the data `lmforge data inspect` builds (the tokenizer prepared as
    training prepares it)."""
    from lmforge.data.inspect import prepare
    from lmforge.train.pipeline import needed_special_tokens

    _, data = prepare(config, needed_special_tokens)
    return len(data.train)


def stage_spans(config: Config, steps: int) -> list[StageSpan]:
    """The steps of each data.streaming stage (its tokens or steps budget; the last runs to
    train.max_steps) with its lr_scale; one span without streaming stages."""
    if not (config.data.streaming and config.data.stages):
        return [StageSpan("train", steps, 1.0)]
    from lmforge.data.mixture import mixture_plan

    plan = mixture_plan(config.data, steps, config.train.global_batch_size)
    return [StageSpan(stage.name, stage.steps, stage.lr_scale) for stage in plan.stages]


def estimate_total_steps(config: Config) -> int:
    """Steps from record counts alone, without tokenizing: train.max_steps, else each
    dataset's records less its val/test splits (capped by max_train_set), or data.mix_size
    (or the stages' mix_size) when set, per global batch, times epochs. Packing, dedup and
    dropped records make the real count differ: `count_total_steps` builds the data."""
    if config.train.max_steps:
        return config.train.max_steps
    stage_sizes = [stage.mix_size for stage in config.data.stages]
    if stage_sizes and all(stage_sizes):
        examples = sum(stage_sizes)
    elif config.data.mix_size:
        examples = config.data.mix_size
    else:
        examples = 0
        for entry in config.data.datasets:
            records = sum(1 for _ in read_records(entry.path))
            train = records - round(records * entry.val_split) - round(records * entry.test_split)
            examples += min(train, entry.max_train_set) if entry.max_train_set else train
    steps_per_epoch = max(1, math.ceil(examples / config.train.global_batch_size))
    return max(1, math.ceil(steps_per_epoch * config.train.epochs))
