"""Every shipped preset parses, in every section combination its header documents; the
tiny sections run end to end on the shipped example data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lmforge.cli import main
from lmforge.config import load_config
from lmforge.config.loader import list_sections

REPO = Path(__file__).resolve().parents[2]
PRESETS = sorted((REPO / "presets").glob("*.yaml"))


def test_presets_exist():
    assert PRESETS


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_each_section_parses_on_top_of_defaults(preset):
    sections = list_sections(preset)
    assert sections[0] == "defaults"
    assert len(sections) > 1
    for section in sections[1:]:
        config = load_config(preset, ["defaults", section])
        assert config.train.global_batch_size % config.train.micro_batch_size == 0


def test_oasst_preset_reproduces_seed_001():
    config = load_config(REPO / "presets" / "oasst-sft.yaml", ["defaults", "redpajama-3b"])
    assert config.data.prompt_format == "openassistant"
    assert config.train.optimizer.lr == 1e-5 and config.train.optimizer.weight_decay == 0.0
    assert config.train.optimizer.betas == (0.9, 0.95) and config.train.optimizer.eps == 1e-12  # OA defaults
    assert config.train.max_grad_norm == 2.0
    assert config.train.deepspeed == "examples/deepspeed/zero3_config_sft.json"
    assert config.train.schedule.warmup_steps == 2000
    assert config.train.global_batch_size // config.train.micro_batch_size == 32  # accumulation on one GPU
    assert (config.train.eval_every, config.train.save_every, config.train.save_total_limit) == (500, 1000, 2)
    assert config.train.epochs == 2 and config.train.precision == "fp16"


def test_oasst_preset_datasets_section_has_the_cards_caps_and_languages():
    config = load_config(REPO / "presets" / "oasst-sft.yaml", ["defaults", "redpajama-3b", "datasets"])
    datasets = {d.name: d for d in config.data.datasets}
    assert "ikala" not in datasets  # internal; the card says to remove it to reproduce
    for name in ("wmt2019_zh-en", "ted_trans_en-ja", "ted_trans_zh-ja"):
        assert (datasets[name].max_train_set, datasets[name].max_val_set) == (20000, 1000)
        assert datasets[name].options.direction == name.rpartition("_")[2]
    assert datasets["dolly15k"].val_split == datasets["oasst_export"].val_split == 0.05
    assert datasets["oasst_export"].lang.split(",") == [
        "bg",
        "ca",
        "cs",
        "da",
        "de",
        "en",
        "es",
        "fr",
        "hr",
        "hu",
        "it",
        "nl",
        "pl",
        "pt",
        "ro",
        "ru",
        "sl",
        "sr",
        "sv",
        "uk",
        "zh",
        "ja",
        "th",
        "ko",
    ]


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_tiny_section_trains(preset, tmp_path, monkeypatch):
    if "tiny" not in list_sections(preset):
        pytest.skip("no plain tiny section (memphis-cot has tiny-sft / tiny-rank, run below)")
    monkeypatch.chdir(REPO)  # presets name example files relative to the repository
    assert (
        main(
            [
                "train",
                os.path.relpath(preset, REPO),
                "defaults",
                "tiny",
                "--set",
                f"run.output_dir={tmp_path / 'run'}",
                "--set",
                "train.epochs=0.3",
            ]
        )
        == 0
    )
    weights = ("model.safetensors", "adapter_model.safetensors")  # an adapter preset saves the adapter
    assert any((tmp_path / "run" / "model" / name).is_file() for name in weights)


def test_remask_cot_preset_reproduces_seed_004():
    config = load_config(REPO / "presets" / "remask-cot.yaml", ["defaults"])
    assert config.model.name_or_path == "stabilityai/stablelm-3b-4e1t"
    objective = config.train.objective
    assert (objective.name, objective.p_in, objective.p_label, objective.p_answer_only, objective.weight) == (
        "remask_cot",
        0.4,
        0.1,
        0.1,
        0.1,
    )
    assert (config.train.optimizer.name, config.train.optimizer.lr) == ("lilith", 1e-5)
    assert config.train.schedule.name == "one_cycle"
    assert (config.train.micro_batch_size, config.train.global_batch_size, config.train.epochs) == (16, 256, 6)
    assert (config.data.max_length, config.data.prompt_format) == (256, "remask")


def test_memphis_cot_preset_reproduces_seed_000():
    preset = REPO / "presets" / "memphis-cot.yaml"
    sft = load_config(preset, ["defaults", "sft"])
    assert sft.model.freeze_embeddings and sft.train.neftune_alpha == 10
    assert (sft.train.objective.name, sft.train.objective.ratio) == ("mixce", 0.75)
    assert (sft.train.optimizer.name, sft.train.optimizer.lr, sft.train.optimizer.weight_decay) == (
        "adalite",
        1e-5,
        0.01,
    )
    assert (sft.train.schedule.name, sft.train.schedule.warmup_ratio) == ("cosine", 0.2)
    assert (sft.data.max_length, sft.train.global_batch_size, sft.train.epochs) == (4096, 128, 2)
    assert sft.data.prompt_format == "remask"  # loss only on responses: "no training on inputs"
    rank = load_config(preset, ["defaults", "rank"])
    assert (rank.train.objective.name, rank.train.objective.weight) == ("rank", 5)
    assert (rank.train.optimizer.name, rank.train.optimizer.lr, rank.train.optimizer.weight_decay) == (
        "adalite",
        5e-7,
        0.01,
    )
    assert (rank.train.schedule.name, rank.train.schedule.warmup_ratio) == ("cosine", 0.1)
    assert (rank.data.max_length, rank.train.global_batch_size, rank.train.neftune_alpha) == (1024, 128, 10)
    assert rank.model.freeze_embeddings
    b = rank.bootstrap
    assert (b.rounds, b.samples, b.temperature, b.top_p, b.max_new_tokens) == (3, 8, 0.5, 0.8, 512)


def test_memphis_tiny_sections_run_sft_then_bootstrap(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    sft_dir, boot_dir = tmp_path / "sft", tmp_path / "boot"
    assert (
        main(
            [
                "train",
                "presets/memphis-cot.yaml",
                "defaults",
                "sft",
                "tiny-sft",
                "--set",
                f"run.output_dir={sft_dir}",
                "--set",
                "train.max_steps=3",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "bootstrap",
                "presets/memphis-cot.yaml",
                "defaults",
                "rank",
                "tiny-rank",
                "--set",
                f"run.output_dir={boot_dir}",
                "--set",
                f"model.name_or_path={sft_dir / 'model'}",
                "--set",
                "bootstrap.rounds=1",
                "--set",
                "bootstrap.max_new_tokens=8",
                "--set",
                "data.datasets=[{path: examples/data/arithmetic-cot-test.jsonl, max_train_set: 8}]",
                "--set",
                "bootstrap.verifier=tests.e2e.test_bootstrap:parity_verifier",
            ]
        )
        == 0
    )
    assert (boot_dir / "round-1" / "stats.json").is_file()


def test_minisymposium_preset_reproduces_seed_002():
    config = load_config(REPO / "presets" / "minisymposium.yaml", ["defaults"])
    assert config.model.name_or_path == "mistralai/Mistral-7B-v0.1"  # "based on Mistral 7b"
    quant = config.model.quantization  # QLoRA: 4-bit NF4 base, double quantization
    assert (quant.bits, quant.type, quant.double_quant) == (4, "nf4", True)
    assert config.model.adapter.type == "lora"
    assert config.model.adapter.alpha / config.model.adapter.r == 1.0  # lr 1e-7 is the effective rate
    assert (config.train.optimizer.name, config.train.optimizer.lr) == ("adamw", 1e-7)
    assert (config.train.schedule.name, config.train.schedule.decay) == ("sigmoid", "none")
    assert config.train.epochs == 600
    assert config.data.prompt_format in config.data.format_augmentation
    assert set(config.data.format_augmentation) == {"instruction", "alpaca", "qa"}  # pseudo-markdown, no ChatML


@pytest.mark.parametrize("sections, epochs_per_save", [(["defaults"], 10), (["defaults", "tiny"], 2)])
def test_minisymposium_saves_every_n_epochs_and_keeps_them_all(sections, epochs_per_save):
    config = load_config(REPO / "presets" / "minisymposium.yaml", sections)
    (dataset,) = config.data.datasets
    assert dataset.val_split == 0.0  # every hand-written chat is trained on
    records = sum(1 for line in (REPO / dataset.path).read_text().splitlines() if line.strip())
    assert records % config.train.global_batch_size == 0  # no short last step: an epoch is a whole number of steps
    steps_per_epoch = records // config.train.global_batch_size
    assert config.train.save_every == epochs_per_save * steps_per_epoch
    checkpoints = config.train.epochs / epochs_per_save
    assert checkpoints == int(checkpoints) and config.train.save_total_limit >= checkpoints
