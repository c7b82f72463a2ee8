"""The bridge from the `data:` config section to the builders' plain arguments (used by
the entry points: `lmforge train` and `lmforge data`)."""

from __future__ import annotations

from lmforge.data.clean import DedupSettings
from lmforge.data.decontaminate import NgramIndex
from lmforge.data.formats import get_format
from lmforge.data.mixing import Stage
from lmforge.data.pipeline import DatasetSpec, TokenizedData, build_datasets


def dataset_specs(data_config) -> list[DatasetSpec]:
    return [DatasetSpec(**entry.model_dump()) for entry in data_config.datasets]


def build_from_config(data_config, seed: int, prompt_format, tokenizer, candidates: bool = False) -> TokenizedData:
    """The training data of `data_config`; `candidates`: with each record's rejected
    responses encoded beside the chosen one (preference objectives)."""
    return build_datasets(
        dataset_specs(data_config),
        prompt_format,
        tokenizer,
        data_config.max_length,
        data_config.overlength,
        seed,
        dedup=DedupSettings(**data_config.dedup.model_dump()),
        stages=[Stage(stage.name, stage.weights, stage.mix_size) for stage in data_config.stages],
        mix_size=data_config.mix_size,
        packing=data_config.packing,
        augment=[get_format(name) for name in data_config.format_augmentation],
        candidates=candidates,
        decontaminate=decontamination_index(data_config),
    )


def decontamination_index(data_config) -> NgramIndex | None:
    """The n-gram index of data.decontaminate's evaluation sets, or None."""
    settings = data_config.decontaminate
    return NgramIndex.from_files(settings.sets, settings.ngram) if settings is not None else None
