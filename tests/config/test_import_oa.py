"""`lmforge config import-oa`: an Open-Assistant trainer YAML (seed 001's blocks, verbatim)
becomes an lmforge config that loads, key by key as OA's trainer would have read it, with
every key that could not be carried over listed with its file:line and reason."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from lmforge.cli import main
from lmforge.config import load_config
from lmforge.config.import_oa import import_oa

REPO = Path(__file__).resolve().parents[2]

# Seed 001's card, the `datasets:` and `redpajama-3b:` blocks exactly as printed there.
SEED_001 = """\
datasets:
  - wmt2019_zh-en:
      max_val_set: 1000
      max_train_set: 20000
  - ted_trans_en-ja:
      max_val_set: 1000
      max_train_set: 20000
  - ted_trans_zh-ja:
      max_val_set: 1000
      max_train_set: 20000
  - ikala:
      input_file_path: export_conversation_v4.4.jsonl
      val_split: 0.05
  - dolly15k:
      val_split: 0.05
  - oasst_export:
      lang: "bg,ca,cs,da,de,en,es,fr,hr,hu,it,nl,pl,pt,ro,ru,sl,sr,sv,uk,zh,ja,th,ko"
      input_file_path: 2023-04-12_oasst_release_ready_synth.jsonl.gz
      val_split: 0.05
  - joke
  - gsm8k
  - webgpt

redpajama-3b:
  dtype: fp16
  log_dir: "redpajama_3b"
  learning_rate: 1e-5
  model_name: saved_models/RedPajama-INCITE-Base-3B-v1
  output_dir: ikala_v4_3b
  weight_decay: 0.0
  max_length: 8196
  warmup_steps: 2000
  gradient_checkpointing: true
  gradient_accumulation_steps: 32
  per_device_train_batch_size: 1
  per_device_eval_batch_size: 2
  eval_steps: 500
  save_steps: 1000
  num_train_epochs: 8
  save_total_limit: 2
  deepspeed_config: configs/zero3_config_sft.json
"""
SEED_COMMAND = ["--configs", "defaults", "redpajama-3b", "datasets", "--num_train_epochs", "2", "--deepspeed"]
LANGS = "bg,ca,cs,da,de,en,es,fr,hr,hu,it,nl,pl,pt,ro,ru,sl,sr,sv,uk,zh,ja,th,ko"


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.fixture
def seed_file(tmp_path, monkeypatch):
    """oa.yaml in the working directory, so relative paths come out as the card wrote them."""
    monkeypatch.chdir(tmp_path)
    Path("oa.yaml").write_text(SEED_001, encoding="utf-8")
    return Path("oa.yaml")


def run_import(capsys, *args: str) -> str:
    assert main(["config", "import-oa", *args]) == 0
    return capsys.readouterr().out


def load_printed(text: str, path: Path):
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def comment_block(text: str, title: str) -> list[str]:
    """The `#   ...` lines under a `# title:` header of the printed output."""
    lines = text.splitlines()
    start = lines.index(f"# {title}:") + 1
    block = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        block.append(line[4:])
    return block


def test_seed_001_maps_key_by_key(seed_file, capsys, tmp_path):
    printed = run_import(capsys, str(seed_file), *SEED_COMMAND)
    config = load_printed(printed, tmp_path / "imported.yaml")
    train, opt = config.train, config.train.optimizer

    assert config.model.name_or_path == "saved_models/RedPajama-INCITE-Base-3B-v1"
    assert config.run.output_dir == "ikala_v4_3b"
    assert config.run.seed == 0xA1221F97  # OA's default rng_seed
    assert (opt.name, opt.lr, opt.weight_decay) == ("adamw", 1e-5, 0.0)
    assert (opt.betas, opt.eps) == ((0.9, 0.95), 1e-12)  # OA defaults adam_beta1/2, adam_epsilon
    assert (train.schedule.name, train.schedule.warmup_steps) == ("linear", 2000)
    assert (train.micro_batch_size, train.global_batch_size) == (1, 32)  # 1 x 32 accumulation x 1 GPU
    assert train.epochs == 2  # --num_train_epochs 2 beats the section's 8
    assert (train.eval_every, train.save_every, train.save_total_limit) == (500, 1000, 2)
    assert (train.logging_steps, train.max_grad_norm) == (10, 2.0)
    assert train.precision == "fp16" and train.gradient_checkpointing is True
    assert train.objective.name == "ce"
    assert train.deepspeed == "configs/zero3_config_sft.json"
    assert (config.data.max_length, config.data.overlength, config.data.prompt_format) == (
        8196,
        "truncate",
        "openassistant",
    )

    datasets = {d.name: d for d in config.data.datasets}
    assert list(datasets) == [
        "wmt2019_zh-en",
        "ted_trans_en-ja",
        "ted_trans_zh-ja",
        "dolly15k",
        "oasst_export",
        "gsm8k",
    ]
    wmt = datasets["wmt2019_zh-en"]
    assert (wmt.path, wmt.subset, wmt.format, wmt.options.direction) == ("wmt/wmt19", "zh-en", "translation", "zh-en")
    assert (wmt.max_train_set, wmt.max_val_set, wmt.val_split) == (20000, 1000, 0.2)  # 0.2: OA's default
    for name, subset, direction in (
        ("ted_trans_en-ja", "en_ja_2016", "en-ja"),
        ("ted_trans_zh-ja", "zh_ja_2016", "zh-ja"),
    ):
        ted = datasets[name]
        assert (ted.path, ted.subset, ted.format, ted.options.direction) == (
            "IWSLT/ted_talks_iwslt",
            subset,
            "translation",
            direction,
        )
        assert (ted.max_train_set, ted.max_val_set) == (20000, 1000)
    dolly = datasets["dolly15k"]
    assert (dolly.path, dolly.format, dolly.val_split, dolly.max_train_set) == (
        "databricks/databricks-dolly-15k",
        "dolly",
        0.05,
        None,
    )
    oasst = datasets["oasst_export"]
    assert oasst.path == ".cache/2023-04-12_oasst_release_ready_synth.jsonl.gz"  # inside OA's cache_dir
    assert (oasst.format, oasst.lang, oasst.val_split, oasst.options.threads) == ("oasst_trees", LANGS, 0.05, "all")
    gsm8k = datasets["gsm8k"]
    assert (gsm8k.path, gsm8k.subset, gsm8k.format, gsm8k.options.calculator) == (
        "openai/gsm8k",
        "main",
        "gsm8k",
        "keep",
    )


def test_seed_001_lists_what_was_not_carried(seed_file, capsys):
    printed = run_import(capsys, str(seed_file), *SEED_COMMAND)
    dropped = {entry.split(" (")[0]: entry for entry in comment_block(printed, "Not carried over")}
    assert set(dropped) == {
        "datasets: ikala",
        "datasets: joke",
        "datasets: webgpt",
        "log_dir",
        "per_device_eval_batch_size",
        "log_wandb",
        "random_offset_probability",
    }
    # each names where the key was set and why it stays behind
    assert dropped["log_dir"].startswith(f"log_dir (oa.yaml:{line_of(SEED_001, 'log_dir')}): ")
    assert "run.output_dir" in dropped["log_dir"]
    assert dropped["datasets: ikala"].startswith(f"datasets: ikala (oa.yaml:{line_of(SEED_001, '- ikala')}): ")
    assert "internal" in dropped["datasets: ikala"]
    assert "micro_batch_size" in dropped["per_device_eval_batch_size"]
    assert "(OA default)" in dropped["log_wandb"]
    notes = comment_block(printed, "Carried over, but not exactly as OA did it")
    assert any(n.startswith("ted_trans_en-ja:") and "JSONL" in n for n in notes)


def test_preset_datasets_section_is_the_import_of_the_card(seed_file, capsys, tmp_path):
    printed = run_import(capsys, str(seed_file), *SEED_COMMAND)
    imported = load_printed(printed, tmp_path / "imported.yaml")
    preset = load_config(REPO / "presets" / "oasst-sft.yaml", ["defaults", "redpajama-3b", "datasets"])
    assert preset.data.datasets == imported.data.datasets
    assert len(preset.data.datasets) == 6


def test_epochs_come_from_the_section_set_or_flag(seed_file):
    sections = ["defaults", "redpajama-3b", "datasets"]
    assert import_oa(seed_file, sections)[1].train.epochs == 8
    assert import_oa(seed_file, sections, ["num_train_epochs=3"])[1].train.epochs == 3
    assert import_oa(seed_file, sections, ["num_train_epochs=3"], num_train_epochs=2)[1].train.epochs == 2


def test_deepspeed_config_needs_the_deepspeed_flag(seed_file):
    imported, config = import_oa(seed_file, ["redpajama-3b"])
    assert config.train.deepspeed is None
    assert "deepspeed_config" in [item.key for item in imported.not_carried]


def test_relative_paths_resolve_against_the_file_or_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "oa" / "configs").mkdir(parents=True)
    (tmp_path / "oa" / "configs" / "zero3_config_sft.json").write_text("{}", encoding="utf-8")
    (tmp_path / "oa" / "configs" / "config.yaml").write_text(SEED_001, encoding="utf-8")
    _, nested = import_oa("oa/configs/config.yaml", ["redpajama-3b", "datasets"], deepspeed=True)
    assert nested.train.deepspeed == "oa/configs/configs/zero3_config_sft.json"  # the file's directory
    imported, rooted = import_oa("oa/configs/config.yaml", ["redpajama-3b", "datasets"], deepspeed=True, root="oa")
    assert rooted.train.deepspeed == "oa/configs/zero3_config_sft.json"  # OA's layout: the trainer's directory
    assert not any(n.startswith("train.deepspeed") for n in imported.notes)  # it exists there
    oasst = next(d for d in rooted.data.datasets if d.name == "oasst_export")
    assert oasst.path == "oa/.cache/2023-04-12_oasst_release_ready_synth.jsonl.gz"
    # a model path that is not a directory under root stays as written (it may be a hub name)...
    assert rooted.model.name_or_path == "saved_models/RedPajama-INCITE-Base-3B-v1"
    # ...and one that is, is local
    (tmp_path / "oa" / "saved_models" / "RedPajama-INCITE-Base-3B-v1").mkdir(parents=True)
    _, local = import_oa("oa/configs/config.yaml", ["redpajama-3b"], root="oa")
    assert local.model.name_or_path == "oa/saved_models/RedPajama-INCITE-Base-3B-v1"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "oa.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_without_a_defaults_section_oa_defaults_apply(tmp_path):
    path = write(
        tmp_path,
        """
        pythia:
          model_name: EleutherAI/pythia-70m
    """,
    )
    imported, config = import_oa(path, ["defaults", "pythia"], world_size=2)
    train = config.train
    assert (train.optimizer.lr, train.schedule.warmup_steps, config.data.max_length) == (1e-5, 600, 512)
    assert (train.micro_batch_size, train.global_batch_size) == (2, 2 * 32 * 2)  # per device x accumulation x GPUs
    assert (train.epochs, train.eval_every, train.save_total_limit, train.precision) == (3, 200, 4, "fp16")
    assert config.run.output_dir == "saved_model" and train.deepspeed is None
    names = [d.name for d in config.data.datasets]  # OA's default mix, as far as lmforge reads it
    assert names == [
        "gsm8k",
        "wmt2019_zh-en",
        "wmt2019_ru-en",
        "wmt2019_de-en",
        "ted_trans_nl-en",
        "ted_trans_de-ja",
        "wmt2019_de-en-2",
    ]
    assert "datasets: squad_v2" in [item.key for item in imported.not_carried]


def test_a_defaults_section_and_later_sections_replace_keys_whole(tmp_path):
    path = write(
        tmp_path,
        """
        defaults:
          learning_rate: 3e-5
          model_name: base
          datasets: [dolly15k, gsm8k]
        small:
          warmup_steps: 10
        math:
          datasets:
            - gsm8k: {val_split: 0.1}
    """,
    )
    _, config = import_oa(path, ["small,math"])  # OA's comma form; defaults come first anyway
    assert (config.train.optimizer.lr, config.train.schedule.warmup_steps) == (3e-5, 10)
    assert config.train.optimizer.betas == (0.9, 0.95)  # from OA's defaults under the file's own
    # like OA's dict.update: a later section's list replaces the earlier one
    assert [(d.name, d.val_split) for d in config.data.datasets] == [("gsm8k", 0.1)]


def test_dataset_options_without_a_counterpart_are_listed(tmp_path):
    path = write(
        tmp_path,
        """
        m:
          model_name: base
          datasets:
            - oasst_export: {input_file_path: trees.jsonl.gz, top_k: 1}
            - dolly15k: {fraction: 0.5}
            - squad_v2
    """,
    )
    imported, config = import_oa(path, ["m"], ["train.max_steps=10"])
    oasst = config.data.datasets[0]
    assert (oasst.lang, oasst.val_split, oasst.options.threads) == ("en", 0.2, "best")  # OA's lang/val defaults
    dropped = {item.key: item for item in imported.not_carried}
    assert dropped["datasets: dolly15k.fraction"].where == f"{path}:5"
    assert dropped["datasets: squad_v2"].where == f"{path}:6"
    assert config.train.max_steps == 10  # a dotted --set is an lmforge key path


def error_of(capsys, *args: str) -> str:
    assert main(["config", "import-oa", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_bad_inputs_exit_2_with_one_line(seed_file, capsys, tmp_path):
    err = error_of(capsys, str(seed_file), "--configs", "defaults", "redpajama3b")
    assert "no section 'redpajama3b'" in err and "sections: defaults, datasets, redpajama-3b" in err
    assert "config file not found" in error_of(capsys, "missing.yaml", "--configs", "defaults")
    broken = tmp_path / "broken.yaml"
    broken.write_text("m:\n  model_name: x\n  datasets: [gsm8k,\n", encoding="utf-8")
    assert re.search(r"broken\.yaml:\d+: invalid YAML", error_of(capsys, str(broken), "--configs", "m"))
    err = error_of(capsys, str(seed_file), "--configs", "redpajama-3b", "--set", "learnin_rate=1e-4")
    assert "'learnin_rate'" in err and "did you mean 'learning_rate'" in err
    err = error_of(capsys, str(seed_file), "--configs", "datasets")
    assert "no model_name" in err


def test_bad_values_name_their_file_line(tmp_path, capsys):
    path = write(
        tmp_path,
        SEED_001.replace("max_length: 8196", "max_length: long").replace(
            "val_split: 0.05\n  - oasst", "val_split: 1.5\n  - oasst"
        ),
    )
    err = error_of(capsys, str(path), "--configs", "redpajama-3b", "datasets")
    assert f"oa.yaml:{line_of(SEED_001, 'max_length')}: max_length = 'long'" in err
    path = write(tmp_path, SEED_001.replace("val_split: 0.05\n  - oasst", "val_split: 1.5\n  - oasst"))
    err = error_of(capsys, str(path), "--configs", "redpajama-3b", "datasets")
    # lmforge's own validation, pointing back at the OA entry
    assert f"oa.yaml:{line_of(SEED_001, '- dolly15k')} (datasets: dolly15k)" in err and "val_split = 1.5" in err
