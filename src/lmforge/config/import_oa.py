"""Translate an Open-Assistant trainer config into an lmforge config.

The Open-Assistant SFT trainer (LAION-AI/Open-Assistant, model/model_training/trainer_sft.py,
spring 2023) reads YAML sections and merges them with a plain `dict.update`: its own
`defaults` section first, then every name given to `--configs`, left to right; a later
section replaces a key (lists and mappings included) rather than merging into it. Then
`--KEY VALUE` flags override single keys. This module does the same, maps the keys that
have an lmforge counterpart, and says for every other key why it was not carried over.

When the imported file has no `defaults` section, OA_DEFAULTS stands in for the one in
OA's configs/config.yaml: only the keys that change what is trained. Keys that are off in
OA (false, empty, 0) need nothing in lmforge and are passed over silently.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lmforge.config.loader import (
    KeyPath,
    RawConfig,
    _node_lines,
    read_document,
    apply_overrides,
    parse_override,
    validate,
)
from lmforge.config.schema import Config
from lmforge.errors import LmforgeError

# OA's configs/config.yaml `defaults` (April 2023), the keys that change what is trained.
OA_DEFAULTS: dict[str, Any] = {
    "rng_seed": 0xA1221F97,
    "learning_rate": 1e-5,
    "gradient_checkpointing": False,
    "gradient_accumulation_steps": 32,
    "per_device_train_batch_size": 2,
    "per_device_eval_batch_size": 2,
    "adam_beta1": 0.9,
    "adam_beta2": 0.95,
    "adam_epsilon": 1e-12,
    "weight_decay": 0.0,
    "warmup_steps": 600,
    "eval_steps": 200,
    "save_strategy": "steps",
    "save_steps": 1000,
    "max_length": 512,
    "num_train_epochs": 3,
    "logging_steps": 10,
    "max_grad_norm": 2.0,
    "save_total_limit": 4,
    "dtype": "fp16",
    "datasets": [
        "webgpt",
        "squad_v2",
        "adversarial_qa",
        "trivia_qa_nocontext",
        "xsum",
        "cnn_dailymail",
        "multi_news",
        "scitldr",
        {"soda": {"input_max_length": 1024}},
        "joke",
        "gsm8k",
        "dive_mt",
        "wmt2019_zh-en",
        "wmt2019_ru-en",
        "wmt2019_de-en",
        "ted_trans_nl-en",
        "ted_trans_de-ja",
        "wmt2019_de-en",
        "samsum",
        "soda_dialogue",
    ],
    "datasets_extra": [],
    "cache_dir": ".cache",
    "loss_fn": "CrossEntropyLoss",
    "log_dir": "base",
    "log_wandb": True,
    "output_dir": "saved_model",
    "random_offset_probability": 0.8,
    "label_masking": True,
    "deepspeed_config": "configs/zero_config.json",
}

# Keys this module reads (mapped, or used to resolve another key).
USED = {
    "model_name",
    "learning_rate",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "warmup_steps",
    "gradient_accumulation_steps",
    "per_device_train_batch_size",
    "max_length",
    "num_train_epochs",
    "eval_steps",
    "save_steps",
    "save_strategy",
    "save_total_limit",
    "logging_steps",
    "max_grad_norm",
    "dtype",
    "gradient_checkpointing",
    "output_dir",
    "rng_seed",
    "deepspeed_config",
    "datasets",
    "datasets_extra",
    "cache_dir",
    "loss_fn",
    "label_masking",
}

# Why a key that is on in OA has no lmforge counterpart.
REASONS = {
    "log_dir": "lmforge writes its logs into run.output_dir",
    "per_device_eval_batch_size": "lmforge evaluates with train.micro_batch_size",
    "log_wandb": "lmforge logs locally; add train.report_to: [wandb] for Weights & Biases",
    "random_offset_probability": "OA's collator started multi-turn threads at a random message; lmforge trains on "
    "whole conversations",
    "val_max_length": "lmforge validates with data.max_length",
    "eval_size": "cap each validation set with data.datasets[*].max_val_set",
    "eval_accumulation_steps": "a memory setting of OA's evaluation loop",
    "use_custom_sampler": "OA's per-dataset epoch sampler; lmforge mixes by data.datasets[*].weight and data.mix_size",
    "sort_by_length": "lmforge does not order examples by length",
    "samples_mixing": "lmforge's nearest is data.packing (attention stays within each example)",
    "quantization": "8-bit AdamW (bitsandbytes); lmforge's optimizers are adamw, adalite and lilith",
    "int8_training": "lmforge trains in fp32/bf16/fp16 only",
    "use_flash_attention": "set model.attn_implementation: flash_attention_2",
    "residual_dropout": "lmforge keeps the model's own dropout settings",
    "freeze_layer": "lmforge freezes only embeddings (model.freeze_embeddings)",
    "use_system_prefix": "lmforge adds no system prompt of its own; put system turns in the data",
    "use_system_tag": "OA's system-property tags have no lmforge counterpart",
    "per_digit_tokens": "lmforge keeps the tokenizer's own splitting",
    "fuse_gelu": "an OA speed patch; results do not depend on it",
    "peft_model": "OA's LoRA settings do not map onto lmforge's",
}

# Keys that matter only when another key switches them on.
DEPENDS = {
    "system_prefix": "use_system_prefix",
    "system_property_dropout": "use_system_tag",
    "system_add_length": "use_system_tag",
    "peft_type": "peft_model",
}

# OA dataset loaders whose data lmforge reads, as the public source OA loaded.
HUB_SOURCES: dict[str, dict[str, Any]] = {
    # OA read OllieStanley/oa_dolly_15k, a reformatted copy of the same rows.
    "dolly15k": {"path": "databricks/databricks-dolly-15k", "format": "dolly"},
    # OA trained on the answer text as it is: calculator annotations and the #### line kept.
    "gsm8k": {"path": "openai/gsm8k", "subset": "main", "format": "gsm8k", "options": {"calculator": "keep"}},
}

# Loaders lmforge cannot read, and why.
DATASET_REASONS = {
    "ikala": "an internal iKala dataset, not public (seed 001's card: remove it to reproduce)",
    "webgpt": "openai/webgpt_comparisons (a question with two rated answers): no lmforge format reads it",
    "joke": "a GitHub gist JSONL with fields joke/explaination: no lmforge format reads it",
}

# The pairs the hub's ted_talks_iwslt loader names as configs ("<src>_<tgt>_<year>").
TED_CONFIGS = {("eu", "ca"), ("nl", "en"), ("nl", "hi"), ("de", "ja"), ("fr-ca", "hi")}

# OA's default for a dataset without val_split (get_one_dataset and load_oasst_export).
OA_VAL_SPLIT = 0.2

_PAIR = re.compile(r"^[a-z]+-[a-z]+$")


@dataclass
class NotCarried:
    key: str
    where: str
    reason: str


@dataclass
class Imported:
    """An lmforge config (a plain, unsectioned mapping) made from an OA config."""

    config: dict[str, Any]
    origins: dict[KeyPath, str] = field(default_factory=dict)
    """lmforge key path -> where the OA value came from (file:line, OA default, a flag)."""
    not_carried: list[NotCarried] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Keys carried over that do not behave exactly as in OA."""
    source: str = ""


# --------------------------------------------------------------------------- reading


@dataclass
class _OAConfig:
    """OA's merged `conf`, with where each key was set and where its value sits in the file."""

    values: dict[str, Any] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, KeyPath | None] = field(default_factory=dict)
    lines: dict[KeyPath, str] = field(default_factory=dict)

    def set(self, key: str, value: Any, where: str, node: KeyPath | None = None) -> None:
        self.values[key], self.where[key], self.nodes[key] = value, where, node

    def line(self, key: str, *below: str) -> str:
        """file:line of a part of key's value, else where the key was set."""
        node = self.nodes.get(key)
        if node is not None:
            for depth in range(len(below), -1, -1):
                if node + below[:depth] in self.lines:
                    return self.lines[node + below[:depth]]
        return self.where[key]


def _read_sections(path: Path, names: list[str]) -> _OAConfig:
    node, document = read_document(path)  # missing file, invalid YAML, not a mapping: one-line errors
    conf = _OAConfig()
    _node_lines(node, path, (), conf.lines)

    def apply(section: str) -> None:
        body = document.get(section)
        if isinstance(body, list) and section == "datasets":
            # Seed 001's card shows its `datasets` section as the bare list it holds.
            conf.set("datasets", body, conf.lines[(section,)], (section,))
            return
        if body is not None and not isinstance(body, dict):
            raise LmforgeError(f"{conf.lines[(section,)]}: section '{section}' must be a mapping of trainer keys")
        for key, value in (body or {}).items():
            conf.set(str(key), value, conf.lines[(section, str(key))], (section, str(key)))

    def apply_defaults() -> None:
        for key, value in OA_DEFAULTS.items():
            conf.set(key, value, "OA default")
        if "defaults" in document:
            apply("defaults")

    available = ["defaults", *(s for s in document if s != "defaults")]
    apply_defaults()  # OA's trainer always starts from its defaults
    for name in (n for given in names for n in given.split(",")):  # OA also takes "a,b"
        if name == "defaults":
            apply_defaults()
        elif name in document:
            apply(name)
        else:
            close = difflib.get_close_matches(name, available, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise LmforgeError(f"{path}: no section '{name}'{hint}; sections: {', '.join(available)}")
    return conf


def _apply_oa_overrides(conf: _OAConfig, overrides: list[tuple[str, Any, str]]) -> None:
    """(key, value, where) for OA keys, like OA's own `--KEY VALUE` flags."""
    known = set(conf.values) | USED | set(REASONS) | set(DEPENDS)
    for key, value, where in overrides:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise LmforgeError(f"{where}: '{key}' is not a key of the OA trainer config{hint}")
        conf.set(key, value, where)


# --------------------------------------------------------------------------- values


def _number(conf: _OAConfig, key: str, kind: type) -> Any:
    """OA writes 1e-5 unquoted, which YAML reads as a string; OA itself calls float()."""
    value = conf.values[key]
    if isinstance(value, bool):
        raise LmforgeError(f"{conf.line(key)}: {key} = {value!r}: expected a number")
    try:
        number = float(value)
        if kind is int:
            if number != int(number):
                raise ValueError
            return int(number)
        return int(number) if isinstance(value, int) else number
    except (TypeError, ValueError, OverflowError):
        expected = "an integer" if kind is int else "a number"
        raise LmforgeError(f"{conf.line(key)}: {key} = {value!r}: expected {expected}") from None


def _flag(conf: _OAConfig, key: str) -> bool:
    value = conf.values[key]
    if not isinstance(value, bool):
        raise LmforgeError(f"{conf.line(key)}: {key} = {value!r}: expected true or false")
    return value


def _local(root: Path, *parts: str) -> str:
    """OA resolves relative paths against the trainer's working directory; here: root."""
    joined = os.path.join(*parts)
    return joined if os.path.isabs(joined) else os.path.normpath(os.path.join(root, joined))


# --------------------------------------------------------------------------- mapping


class _Builder:
    def __init__(self, conf: _OAConfig):
        self.conf = conf
        self.imported = Imported(config={})

    def put(self, path: str, value: Any, *keys: str) -> None:
        """Set an lmforge key path from the OA keys named (their file:line become its origin)."""
        node = self.imported.config
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        if keys:
            where = [(self.conf.line(k), k) for k in keys]
            self.imported.origins[tuple(parts)] = ", ".join(w if k in w else f"{w} ({k})" for w, k in where)

    def drop(self, key: str, reason: str, where: str | None = None) -> None:
        self.imported.not_carried.append(NotCarried(key, where or self.conf.line(key), reason))

    def note(self, text: str) -> None:
        self.imported.notes.append(text)


def _translate(conf: _OAConfig, root: Path, deepspeed: bool, world_size: int) -> Imported:
    b = _Builder(conf)
    values = conf.values

    model = str(values["model_name"])
    output_dir = values.get("output_dir") or f"{model}-{values.get('log_dir')}-finetuned"  # OA's own fallback
    b.put("run.output_dir", str(output_dir), "output_dir")
    b.put("run.seed", _number(conf, "rng_seed", int), "rng_seed")
    # A relative model path is local when it exists under root; otherwise it may be a hub name.
    local = not os.path.isabs(model) and (root / model).is_dir()
    b.put("model.name_or_path", _local(root, model) if local else model, "model_name")

    b.put("data.prompt_format", "openassistant")  # <|prompter|>…<|endoftext|><|assistant|>…
    b.put("data.max_length", _number(conf, "max_length", int), "max_length")
    b.put("data.overlength", "truncate", "max_length")  # OA's collator truncates, never drops
    datasets = _datasets(b, root)
    if datasets:
        b.put("data.datasets", datasets, "datasets")

    loss = values.get("loss_fn")
    if loss not in (None, "CrossEntropyLoss"):
        b.drop("loss_fn", f"OA's {loss}; lmforge trains this recipe with cross-entropy (train.objective ce)")
    b.put("train.objective.name", "ce")
    b.put("train.optimizer.name", "adamw")  # OA: the Trainer's AdamW (8-bit only with quantization)
    b.put("train.optimizer.lr", _number(conf, "learning_rate", float), "learning_rate")
    b.put("train.optimizer.weight_decay", _number(conf, "weight_decay", float), "weight_decay")
    b.put(
        "train.optimizer.betas",
        [_number(conf, "adam_beta1", float), _number(conf, "adam_beta2", float)],
        "adam_beta1",
        "adam_beta2",
    )
    b.put("train.optimizer.eps", _number(conf, "adam_epsilon", float), "adam_epsilon")
    # OA sets no lr_scheduler_type, so the Trainer's default applies: linear warmup and decay.
    b.put("train.schedule.name", "linear")
    b.put("train.schedule.warmup_steps", _number(conf, "warmup_steps", int), "warmup_steps")

    micro = _number(conf, "per_device_train_batch_size", int)
    accumulation = _number(conf, "gradient_accumulation_steps", int)
    b.put("train.micro_batch_size", micro, "per_device_train_batch_size")
    b.put(
        "train.global_batch_size",
        micro * accumulation * world_size,
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
    )
    b.note(
        f"train.global_batch_size = {micro} per device x {accumulation} accumulation x {world_size} "
        "process(es) (--world-size); OA's batch grows with the number of GPUs"
    )
    b.put("train.epochs", _number(conf, "num_train_epochs", float), "num_train_epochs")
    b.put("train.eval_every", _number(conf, "eval_steps", int), "eval_steps")
    strategy = values.get("save_strategy", "steps")
    if strategy == "steps":
        b.put("train.save_every", _number(conf, "save_steps", int), "save_steps")
    elif strategy != "no":  # "no": lmforge saves only the final model when save_every is empty
        b.drop("save_strategy", f"'{strategy}': lmforge saves every train.save_every steps")
    b.put("train.save_total_limit", _number(conf, "save_total_limit", int), "save_total_limit")
    b.put("train.logging_steps", _number(conf, "logging_steps", int), "logging_steps")
    b.put("train.max_grad_norm", _number(conf, "max_grad_norm", float), "max_grad_norm")
    _precision(b)
    b.put("train.gradient_checkpointing", _flag(conf, "gradient_checkpointing"), "gradient_checkpointing")
    if values.get("label_masking") is False:
        b.drop("label_masking", "lmforge always trains on the responses only")

    if values.get("deepspeed_config"):
        if deepspeed:
            path = _local(root, str(values["deepspeed_config"]))
            b.put("train.deepspeed", path, "deepspeed_config")
            if not Path(path).is_file():
                b.note(
                    f"train.deepspeed: {path} does not exist here; OA resolves it against the trainer's "
                    "directory (model/model_training): pass --root"
                )
        else:
            b.drop("deepspeed_config", "OA uses it only when run with --deepspeed (pass --deepspeed)")

    for key, value in values.items():
        switch = DEPENDS.get(key)
        if key in USED or value in (None, False, 0, "", [], {}) or (switch and not values.get(switch)):
            continue
        if key == "poly_eps" and values.get("loss_fn") != "Poly":
            continue
        b.drop(key, REASONS.get(key, "no lmforge counterpart"))
    return b.imported


def _precision(b: _Builder) -> None:
    dtype = str(b.conf.values.get("dtype"))
    precision = {"fp16": "fp16", "float16": "fp16", "bf16": "bf16", "bfloat16": "bf16"}.get(dtype, "fp32")
    if precision == "fp32" and dtype not in ("fp32", "float32", "None"):
        b.drop("dtype", f"'{dtype}': lmforge's precisions are fp32, bf16, fp16")
        return
    b.put("train.precision", precision, "dtype")
    if precision != "fp32":
        b.note(
            f"train.precision {precision}: OA also loaded the weights in {precision}; lmforge keeps "
            "model.dtype (float32) under autocast"
        )


def _datasets(b: _Builder, root: Path) -> list[dict[str, Any]]:
    conf = b.conf
    entries: list[dict[str, Any]] = []
    names: dict[str, int] = {}
    for key in ("datasets", "datasets_extra"):  # OA trains on both lists, one after the other
        items = conf.values.get(key) or []
        if not isinstance(items, list):
            raise LmforgeError(f"{conf.line(key)}: {key} must be a list of dataset names")
        for index, item in enumerate(items):
            if isinstance(item, str):
                name, options = item, {}
            elif isinstance(item, dict) and len(item) == 1:
                name, options = next(iter(item.items()))
                options = options or {}
            else:
                raise LmforgeError(
                    f"{conf.line(key, str(index))}: {key}[{index}] must be a name or {{name: {{options}}}}"
                )
            if not isinstance(options, dict):
                raise LmforgeError(f"{conf.line(key, str(index))}: options of dataset '{name}' must be a mapping")
            where = conf.line(key, str(index))
            entry = _dataset(b, str(name).lower(), dict(options), where, root)
            if entry is not None:
                count = names[entry["name"]] = names.get(entry["name"], 0) + 1
                if count > 1:  # OA's default list names wmt2019_de-en twice
                    entry["name"] = f"{entry['name']}-{count}"
                b.imported.origins[("data", "datasets", str(len(entries)))] = f"{where} ({key}: {name})"
                entries.append(entry)
    return entries


def _dataset(b: _Builder, name: str, options: dict[str, Any], where: str, root: Path) -> dict[str, Any] | None:
    label = f"datasets: {name}"
    entry: dict[str, Any] = {"name": name}
    pair = name.rpartition("_")[2]
    if name in DATASET_REASONS:
        b.drop(label, DATASET_REASONS[name], where)
        return None
    if name in HUB_SOURCES:
        entry.update(copy.deepcopy(HUB_SOURCES[name]))
        if name == "gsm8k":
            b.note("gsm8k: OA validated on its test split; lmforge holds out val_split of the train split")
        else:
            b.note("dolly15k: OA read the OllieStanley/oa_dolly_15k copy; lmforge reads the original rows")
    elif name.startswith(("wmt2019_", "ted_trans_")) and _PAIR.match(pair):
        source, target = pair.split("-")
        both_ways = f"OA translated each pair {source}<->{target} in a random direction; lmforge {source}->{target}"
        if name.startswith("wmt2019_"):
            entry.update(path="wmt/wmt19", subset=pair)
            b.note(f"{name}: {both_ways}; OA read the first 100,000 pairs and validated on wmt19's validation split")
        else:  # OA: load_dataset("ted_talks_iwslt", language_pair=[source, target], year="2016")
            entry.update(path="IWSLT/ted_talks_iwslt", subset=f"{source}_{target}_2016")
            if (source, target) in TED_CONFIGS:
                b.note(f"{name}: {both_ways}")
            else:
                b.note(
                    f"{name}: {both_ways}; the hub's ted_talks_iwslt names only a few pairs as configs and "
                    'builds others from loader arguments: save this pair as JSONL of {"translation": {...}} '
                    "and point path at it"
                )
        entry.update(format="translation", options={"direction": pair})
    elif name == "oasst_export":
        if not options.get("input_file_path"):
            b.drop(label, "no input_file_path", where)
            return None
        path = _local(root, str(b.conf.values.get("cache_dir") or ""), str(options.pop("input_file_path")))
        entry.update(
            path=path, format="oasst_trees", lang=str(options.pop("lang", "en")), options={"threads": "all"}
        )  # OA trains on every thread of a tree
        top_k = options.pop("top_k", None)
        if top_k == 1:
            entry["options"]["threads"] = "best"
        elif top_k is not None:
            b.drop(f"{label}.top_k", "lmforge keeps the best-ranked thread or all threads", where)
        if not Path(path).exists():
            b.note(f"oasst_export: {path} does not exist here (OA read input_file_path inside cache_dir)")
    else:
        b.drop(label, "no lmforge counterpart for this OA dataset loader", where)
        return None

    entry["val_split"] = options.pop("val_split", OA_VAL_SPLIT)
    for cap in ("max_train_set", "max_val_set"):
        if cap in options:
            entry[cap] = options.pop(cap)
    for option in options:
        b.drop(f"{label}.{option}", "no lmforge counterpart for this dataset option", where)
    return entry


# --------------------------------------------------------------------------- entry point


def import_oa(
    path: str | Path,
    sections: list[str],
    overrides: list[str] | None = None,
    num_train_epochs: float | None = None,
    deepspeed: bool = False,
    world_size: int = 1,
    root: str | Path | None = None,
) -> tuple[Imported, Config]:
    """Read an OA trainer YAML as `trainer_sft.py --configs SECTIONS` would, and return the
    lmforge config (validated) with what could not be carried over.

    overrides: `KEY=VALUE` strings; a plain KEY is an OA trainer key (like OA's `--KEY VALUE`),
    a dotted one (`train.max_steps`) an lmforge key path set on the result.
    root: what relative paths in the file are relative to (default: the file's directory).
    """
    path = Path(path)
    if world_size < 1:
        raise LmforgeError(f"--world-size {world_size}: need at least one process")
    conf = _read_sections(path, sections)
    oa_overrides, lmforge_overrides = [], []
    for override in overrides or []:
        if "." in override.partition("=")[0]:
            lmforge_overrides.append(override)
            continue
        key, value = parse_override(override, "key=value")
        oa_overrides.append((key, value, f"--set {key}"))
    if num_train_epochs is not None:
        oa_overrides.append(("num_train_epochs", num_train_epochs, "--num-train-epochs"))
    _apply_oa_overrides(conf, oa_overrides)
    if conf.values.get("model_name") in (None, ""):
        raise LmforgeError(
            f"{path}: no model_name in sections {', '.join(sections)}; "
            "choose a section that sets it, or --set model_name=PATH"
        )

    imported = _translate(conf, Path(path.parent if root is None else root), deepspeed, world_size)
    flags = [*(f"--set {o}" for o in overrides or [])]
    if num_train_epochs is not None:
        flags.append(f"--num-train-epochs {num_train_epochs:g}")
    if deepspeed:
        flags.append("--deepspeed")
    imported.source = f"{path} --configs {' '.join(sections)}{''.join(' ' + f for f in flags)}"

    raw = RawConfig(data=imported.config, origins=dict(imported.origins))
    apply_overrides(raw, lmforge_overrides)
    return imported, validate(raw)


def render(imported: Imported) -> str:
    """The config as YAML, headed by comments saying where it came from and what was left out."""
    lines = ["# Imported from an Open-Assistant trainer config by lmforge config import-oa:", f"#   {imported.source}"]
    if imported.not_carried:
        lines.append("# Not carried over:")
        lines += [f"#   {item.key} ({item.where}): {item.reason}" for item in imported.not_carried]
    if imported.notes:
        lines.append("# Carried over, but not exactly as OA did it:")
        lines += [f"#   {note}" for note in imported.notes]
    body = yaml.safe_dump(imported.config, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100)
    return "\n".join(lines) + "\n" + body
