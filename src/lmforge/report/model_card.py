"""The Hugging Face model card (README.md) of a finished run or an export, built from the
run directory alone, or from a model directory alone (its run deleted or left behind:
model/lmforge.json carries the same facts, see report/provenance.py):

    run.json            status, wall time, versions, data reports, final metrics
    config.yaml         base model, adapter, data, objective, optimizer, schedule, batch
    metrics.jsonl       scores of the tasks evaluated during training
    model/lmforge.json  prompt format, rationale-first or not, stop strings
    eval/*.json         `lmforge eval` results records (eval/results.py)
    loss_curve.png

YAML front matter (license, base_model, datasets, tags, model-index) then the training
procedure in the manner of the seed cards: data, objective, optimizer, schedule, batch and
sequence, hardware and wall time, an evaluation table and the loss curve. Every file but
run.json is optional: a missing one leaves its section out. Reading the files and the facts
the front matter and body share are in report/card_inputs.py; this module renders.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from lmforge.data.conversation import Conversation, Segment
from lmforge.data.formats import get_format
from lmforge.errors import LmforgeError
from lmforge.eval.results import format_value
from lmforge.models.adapters import update_scale
from lmforge.report.card_inputs import (
    HUB_DATASET,
    EvalRow,
    RunFiles,
    dataset_entries,
    dataset_id,
    dataset_ids,
    evaluation_rows,
    hub_base_model,
    is_adapter_artifact,
    is_described_model,
    model_index,
    quantize_bits,
    read_card_files,
    title,
)
from lmforge import rundir
from lmforge.objectives.registry import OBJECTIVES

CARD_FILE = "README.md"
CURVE_FILE = "loss_curve.png"

OBJECTIVE_NAMES = {name: spec.title for name, spec in OBJECTIVES.items()}
OBJECTIVE_SETTINGS = {  # (label, shown as a percentage)
    "ratio": ("MixCE ratio (eta)", False),
    "p_in": ("Input masking probability", True),
    "p_label": ("Label masking probability", True),
    "p_answer_only": ("Answer-only (full rationale label masking) probability", True),
    "weight": ("Regularization weight", False),
    "fused": ("Masked and full pass in one forward", False),
    "beta": ("beta", False),
    "tau": ("tau", False),
    "gamma": ("Target reward margin (gamma)", False),
}


# ------------------------------------------------------------------------ small helpers


def _num(value: Any) -> str:
    """1e-05, 0.003, 32, 0.1, yes: values as a config would spell them."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "/".join(_num(v) for v in value)
    return str(value)


def _percent(value: float) -> str:
    return f"{100 * value:g}%"


def _duration(seconds: float) -> str:
    """
    >>> _duration(42.4), _duration(725), _duration(3 * 3600 + 240)
    ('42 s', '12 min 05 s', '3 h 04 min')
    """
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


# ------------------------------------------------------------------------ front matter


def tags(files: RunFiles, export: dict[str, Any] | None) -> list[str]:
    """lmforge, the objective, the adapter method, the bits of the weights, then run.card.tags."""
    adapter = files.section("model", "adapter")
    quantization = files.section("model", "quantization")
    found = ["lmforge", files.section("train", "objective").get("name", "ce")]
    if adapter:
        found.append(adapter.get("type", "lora"))
        if quantization:
            found.append("qlora")
    bits = quantize_bits(export.get("quantize")) if export else quantization.get("bits") if adapter else None
    if bits:
        found += [f"{bits}-bit", "bitsandbytes"]
    found += files.section("run", "card").get("tags") or []
    return list(dict.fromkeys(str(tag) for tag in found))


def front_matter(files: RunFiles, export: dict[str, Any] | None, rows: list[EvalRow]) -> dict[str, Any]:
    card = files.section("run", "card")
    matter: dict[str, Any] = {"license": card.get("license") or "other"}
    if card.get("language"):
        matter["language"] = list(card["language"])
    base = hub_base_model(files.section("model").get("name_or_path"))
    if base:
        matter["base_model"] = base
    matter["library_name"] = "peft" if is_adapter_artifact(files, export) else "transformers"
    if dataset_ids(files):
        matter["datasets"] = dataset_ids(files)
    matter["tags"] = tags(files, export)
    matter["pipeline_tag"] = "text-generation"
    index = model_index(files, rows)
    if index:
        matter["model-index"] = index
    return matter


# ------------------------------------------------------------------------ body sections


def summary(files: RunFiles, export: dict[str, Any] | None) -> str:
    """One paragraph: what the model is (base, method), objective, data, steps."""
    model = files.section("model")
    adapter = model.get("adapter") or {}
    base_name = model.get("name_or_path")
    hub = hub_base_model(base_name)
    base = f"[{hub}](https://huggingface.co/{hub})" if hub else f"the local model `{base_name}`" if base_name else None
    if adapter:
        kind = "DoRA" if adapter.get("type") == "dora" else "LoRA"
        what = f"a {kind} adapter (rank {adapter.get('r')}) for {base or 'a freshly built model'}"
    elif base:
        what = f"a full fine-tune of {base}"
    else:
        size = model.get("size") or {}
        what = (
            f"a {model.get('architecture', 'llama')} model (hidden size {size.get('hidden_size')}, "
            f"{size.get('num_layers')} layers, {size.get('num_heads')} attention heads) initialized at random"
        )
    objective = files.section("train", "objective").get("name", "ce")
    on = f" on {', '.join(f'`{d}`' for d in dataset_ids(files))}" if dataset_ids(files) else ""
    steps = files.run.get("global_step")
    text = (
        f"**{title(files)}** is {what}, trained with lmforge using the "
        f"{OBJECTIVE_NAMES.get(objective, objective)} objective{on}"
        + (f" for {steps} optimizer steps." if steps is not None else ".")
    )
    if export:
        text += " This folder is an export of that run; see *Export* below."
    return text


def data_section(files: RunFiles) -> list[str]:
    """Each dataset with its counts and removals (run.json's reports), then the filters."""
    pairs = dataset_entries(files)
    if not pairs:
        return []
    hashes = files.run.get("data_sha256") or {}
    lines = ["## Training data", ""]
    for entry, report in pairs:
        name = dataset_id(entry, report, hashes)
        fmt = report.get("format") or entry.get("format", "auto")
        digest = hashes.get(entry.get("path") or report.get("path"))
        head = f"- **{name}** (`{fmt}` format" + (", detected" if report.get("detected") else "")
        head += f"; sha256 `{digest[:12]}…`)" if digest and digest != HUB_DATASET else ")"
        if report:
            dropped = ", ".join(f"{reason} {count}" for reason, count in (report.get("dropped") or {}).items())
            head += (
                f": {report.get('records', 0)} records → {report.get('examples', 0)} examples; "
                f"{report.get('train', 0)} train / {report.get('val', 0)} validation / "
                f"{report.get('test', 0)} test; dropped: {dropped or 'none'}; "
                f"truncated: {report.get('truncated', 0)}"
            )
            if report.get("train"):
                head += (
                    f"; {report.get('mean_tokens')} tokens per training example on average "
                    f"(max {report.get('max_tokens')})"
                )
        filters = [
            f"{label} {_num(entry[key])}"
            for key, label in (
                ("subset", "subset"),
                ("lang", "languages"),
                ("min_chars", "min characters"),
                ("max_chars", "max characters"),
                ("max_train_set", "at most train"),
                ("max_val_set", "at most validation"),
                ("weight", "mix weight"),
            )
            if entry.get(key) is not None
        ]
        lines.append(head + (f". Filters: {', '.join(filters)}." if filters else "."))
    data = files.section("data")
    dedup = data.get("dedup") or {}
    near = f"near (MinHash, Jaccard ≥ {_num(dedup.get('threshold'))})"
    kinds = [kind for kind, on in (("exact", dedup.get("exact")), (near, dedup.get("near"))) if on]
    lines += ["", f"- Deduplication: {' and '.join(kinds) if kinds else 'none'}"] if dedup else [""]
    if data.get("mix_size"):
        lines.append(f"- Training mix: {data['mix_size']} examples drawn by dataset weight")
    for stage in data.get("stages") or []:
        weights = ", ".join(f"{k} {_num(v)}" for k, v in (stage.get("weights") or {}).items())
        lines.append(
            f"- Stage `{stage.get('name')}`: {weights}"
            + (f" ({stage['mix_size']} examples)" if stage.get("mix_size") else "")
        )
    return lines + [""]


def procedure_section(files: RunFiles) -> list[str]:
    """The seed cards' "Training details" list."""
    train, model, data = files.section("train"), files.section("model"), files.section("data")
    run = files.run
    versions = run.get("versions") or {}
    items: list[str] = []
    if versions.get("lmforge"):
        items.append(
            f"Framework: lmforge {versions['lmforge']} (transformers {versions.get('transformers')}, "
            f"torch {versions.get('torch')})"
        )
    items += _objective_items(train) + _adapter_items(model) + _optimizer_items(train) + _batch_items(train, run)
    if data.get("max_length"):
        over = "truncated" if data.get("overlength") == "truncate" else "dropped"
        if data.get("packing") == "split":  # no example is too long: each is cut across rows
            how = "(examples concatenated and split across full rows)"
        else:
            how = f"(longer examples {over})" + ("; examples packed into full rows" if data.get("packing") else "")
        items.append(f"Training sequence length: {data['max_length']} tokens {how}")
    if data.get("format_augmentation"):
        items.append(f"Prompt-format augmentation: {', '.join(data['format_augmentation'])}")
    items += _length_items(train, run)
    if train.get("precision"):
        mixed = " mixed precision" if train["precision"] != "fp32" else ""
        items.append(f"Precision: {train['precision']}{mixed}, weights {model.get('dtype', 'float32')}")
    if train.get("neftune_alpha"):
        items.append(f"NEFTune noise: alpha {_num(train['neftune_alpha'])}")
    if train.get("gradient_checkpointing"):
        items.append("Gradient checkpointing: on")
    if model.get("freeze_embeddings"):
        items.append("Embeddings frozen (the rows of tokens lmforge added stay trainable)")
    if run.get("added_tokens"):
        items.append(f"Special tokens added: {len(run['added_tokens'])}")
    if files.section("run").get("seed") is not None:
        items.append(f"Seed: {files.section('run')['seed']}")
    items += _hardware_items(train, run, versions)
    return ["## Training procedure", "", *(f"- {item}" for item in items), ""] if items else []


def _objective_items(train: dict[str, Any]) -> list[str]:
    objective = dict(train.get("objective") or {})
    if not objective:
        return []
    name = objective.pop("name", "ce")
    items = [f"Objective: {OBJECTIVE_NAMES.get(name, name)}"]
    for key, value in objective.items():
        label, percent = OBJECTIVE_SETTINGS.get(key, (key, False))
        items.append(f"{label}: {_percent(value) if percent else _num(value)}")
    return items


def _optimizer_items(train: dict[str, Any]) -> list[str]:
    items = []
    optimizer = dict(train.get("optimizer") or {})
    if optimizer:
        lr, name = optimizer.pop("lr", None), optimizer.pop("name", "adamw")
        settings = ", ".join(f"{k.replace('_', ' ')} {_num(v)}" for k, v in optimizer.items())
        items.append(
            f"Optimizer: {'AdamW' if name == 'adamw' else name.capitalize()}" + (f" ({settings})" if settings else "")
        )
        if lr is not None:
            items.append(f"Learning rate: {_num(lr)}")
    if train.get("max_grad_norm") is not None:
        items.append(f"Gradient clipping: max norm {_num(train['max_grad_norm'])}")
    schedule = dict(train.get("schedule") or {})
    if schedule:
        steps, ratio = schedule.pop("warmup_steps", None), schedule.pop("warmup_ratio", 0.0)
        if steps is not None:
            warmup = f"warmup {steps} step{'s' if steps != 1 else ''}"
        else:
            warmup = f"warmup {_percent(ratio)} of the steps" if ratio else "no warmup"
        settings = ", ".join(f"{k} {_num(v)}" for k, v in schedule.items() if k != "name")
        items.append(
            f"Learning rate schedule: {schedule.get('name', 'cosine')}"
            + (f" ({settings})" if settings else "")
            + f", {warmup}"
        )
    return items


def _length_items(train: dict[str, Any], run: dict[str, Any]) -> list[str]:
    epoch = (run.get("final_metrics") or {}).get("epoch")
    done = [f"{run['global_step']} optimizer steps"] if run.get("global_step") is not None else []
    if train.get("max_steps"):
        done += [f"{epoch:.3g} epochs"] if isinstance(epoch, (int, float)) else []
        return [f"Steps: max_steps {train['max_steps']}" + (f" ({', '.join(done)})" if done else "")]
    if train.get("epochs") is not None:
        return [f"Epochs: {_num(train['epochs'])}" + (f" ({', '.join(done)})" if done else "")]
    return []


def _adapter_items(model: dict[str, Any]) -> list[str]:
    adapter, quantization = model.get("adapter") or {}, model.get("quantization") or {}
    items = []
    if adapter:
        r, alpha = adapter.get("r", 16), adapter.get("alpha", 32.0)
        value = update_scale({"r": r, "alpha": alpha, "rslora": bool(adapter.get("rslora"))})
        scale = f"alpha/sqrt(r) = {value:.4g} (rank-stabilized)" if adapter.get("rslora") else f"alpha/r = {value:.4g}"
        targets = adapter.get("target_modules", "all-linear")
        targets = ", ".join(targets) if isinstance(targets, list) else f"{targets} layers"
        items.append(
            f"Adapter: {'DoRA' if adapter.get('type') == 'dora' else 'LoRA'}, r {r}, alpha {_num(alpha)} "
            f"(update scale {scale}), dropout {_num(adapter.get('dropout', 0.05))}, on {targets}"
        )
        if adapter.get("modules_to_save"):
            items.append(f"Trained in full and saved with the adapter: {', '.join(adapter['modules_to_save'])}")
    if quantization:
        bits = quantization.get("bits", 4)
        kind = f"4-bit {str(quantization.get('type', 'nf4')).upper()}" if bits == 4 else "8-bit (LLM.int8())"
        double = ", double quantization" if bits == 4 and quantization.get("double_quant") else ""
        items.append(
            f"Base quantization (QLoRA): {kind}{double}, {quantization.get('compute_dtype', 'bf16')} "
            "compute (bitsandbytes)"
        )
    return items


def _batch_items(train: dict[str, Any], run: dict[str, Any]) -> list[str]:
    micro, total = train.get("micro_batch_size"), train.get("global_batch_size")
    if not micro or not total:
        return []
    processes = run.get("processes") or 1
    accumulation = total // (micro * processes) if total % (micro * processes) == 0 else None
    plural = "es" if processes > 1 else ""
    return [
        f"Batch size: {micro} per process × {processes} process{plural}, accumulated to {total}"
        + (f" ({accumulation} accumulation step{'s' if accumulation != 1 else ''})" if accumulation else "")
    ]


def _hardware_items(train: dict[str, Any], run: dict[str, Any], versions: dict[str, str]) -> list[str]:
    items = []
    processes = run.get("processes") or 1
    engine = (
        "FSDP2" if train.get("fsdp") else "DeepSpeed" if train.get("deepspeed") else "DDP" if processes > 1 else None
    )
    items.append(
        f"Hardware: {processes} process{'es' if processes > 1 else ''}"
        + (f" ({engine})" if engine else "")
        + "; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
    )
    try:
        started = dt.datetime.fromisoformat(run["started"])
        ended = dt.datetime.fromisoformat(run["ended"])
    except (KeyError, TypeError, ValueError):
        return items
    resumed = (
        f"; resumed from {Path(run['resumed_from']).name}, first started {run.get('first_started')}"
        if run.get("resumed_from")
        else ""
    )
    items.append(
        f"Wall time: {_duration((ended - started).total_seconds())} ({run['started']} → {run['ended']}{resumed})"
    )
    return items


def prompt_section(files: RunFiles) -> list[str]:
    name = files.meta.get("prompt_format") or files.section("data").get("prompt_format")
    if not name:
        return []
    cot = bool(files.meta.get("cot"))
    lines = [
        "## Prompt format",
        "",
        f"Trained in the `{name}` format"
        + (", rationale first: the model writes its reasoning, then the answer." if cot else "."),
    ]
    if files.meta.get("stop_strings"):
        lines[-1] += f" Generation stops at {', '.join(f'`{s}`' for s in files.meta['stop_strings'])}."
    if name == "chat_template":
        lines += ["", "The text is the tokenizer's own chat template (`tokenizer.apply_chat_template`)."]
        return lines + [""]
    segments = (
        (Segment("user", "[instruction]"), Segment("rationale", "[reasoning]"), Segment("answer", "[answer]"))
        if cot
        else (Segment("user", "[instruction]"), Segment("assistant", "[response]"))
    )
    try:
        pieces = get_format(name).render(Conversation(segments), SimpleNamespace(eos_token=files.eos_token or ""))
    except (LmforgeError, AttributeError, TypeError):
        return lines + [""]
    example = "".join(text for text, _ in pieces)
    return lines + [
        "",
        "The saved tokenizer's chat template renders the same text. One example:",
        "",
        "```text",
        example.rstrip("\n"),
        "```",
        "",
    ]


def evaluation_section(rows: list[EvalRow]) -> list[str]:
    if not rows:
        return []
    lines = ["## Evaluation", "", "| evaluation | task | shots | metric | value |", "|---|---|---:|---|---:|"]
    for row in rows:
        value = format_value(row.metric, row.value)
        if row.stderr is not None:
            value += f" ± {format_value(row.metric, row.stderr)}"
        shots = "" if row.shots is None else str(row.shots)
        lines.append(f"| {row.source} | {row.task} | {shots} | {row.metric} | {value} |")
    return lines + [""]


def usage_section(files: RunFiles, export: dict[str, Any] | None) -> list[str]:
    """Loading and prompting: plain transformers, or peft for an adapter."""
    model_id = title(files)
    name = files.meta.get("prompt_format") or files.section("data").get("prompt_format")
    bos = "" if name == "chat_template" else '(tokenizer.bos_token or "") + '  # chat templates add their own
    if is_adapter_artifact(files, export):
        base = files.section("model").get("name_or_path")
        base_line = (
            f'base = AutoModelForCausalLM.from_pretrained("{base}")'
            if base
            else 'base = AutoModelForCausalLM.from_pretrained(f"{path}/base")  # the freshly built base, saved alongside'
        )
        load = [
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'path = "{model_id}"  # this folder or its hub repository',
            "tokenizer = AutoTokenizer.from_pretrained(path)",
            base_line,
            "# tokens added in training: grow the base; their rows come from the adapter",
            "base.resize_token_embeddings(len(tokenizer), mean_resizing=False)",
            "model = PeftModel.from_pretrained(base, path)",
        ]
    else:
        bits = quantize_bits(export.get("quantize")) if export else None
        arguments = "path)  # bitsandbytes weights: needs the bitsandbytes package" if bits else "path)"
        load = [
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'path = "{model_id}"  # this folder or its hub repository',
            f"model = AutoModelForCausalLM.from_pretrained({arguments}",
            "tokenizer = AutoTokenizer.from_pretrained(path)",
        ]
    code = [
        *load,
        'messages = [{"role": "user", "content": "What is 12 plus 7?"}]',
        "prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)",
        f'inputs = tokenizer({bos}prompt, return_tensors="pt", add_special_tokens=False).to(model.device)',
        "output = model.generate(**inputs, max_new_tokens=256)",
        'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))',
    ]
    return [
        "## How to use",
        "",
        "```python",
        *code,
        "```",
        "",
        'Or with lmforge: `lmforge generate PATH --prompt "What is 12 plus 7?"`.',
        "",
    ]


def export_section(files: RunFiles, export: dict[str, Any]) -> list[str]:
    adapter = files.section("model", "adapter")
    items = []
    if export.get("source"):
        items.append(f"Exported from the run `{export['source']}`")
    if adapter:
        items.append(
            "The adapter merged into the base weights: a plain transformers model, no peft needed"
            if export.get("merged")
            else "The adapter alone (load it with peft on its base model)"
        )
    if export.get("dtype"):
        items.append(f"Weights saved in {export['dtype']}")
    bits = quantize_bits(export.get("quantize"))
    if bits:
        kind = "8-bit (LLM.int8())" if bits == 8 else "4-bit NF4"
        items.append(
            f"Quantized to {kind} with bitsandbytes; the quantization config is saved in config.json, "
            "so `from_pretrained` loads it as it is (needs the bitsandbytes package; its 0.45+ builds run on CPU too)"
        )
    elif export.get("quantize"):
        items.append(f"Quantized: {export['quantize']}")
    known = {"source", "merged", "dtype", "quantize"}
    items += [f"{key}: {value}" for key, value in export.items() if key not in known]
    return ["## Export", "", *(f"- {item}" for item in items), ""]


def config_section(files: RunFiles) -> list[str]:
    if not files.config_text:
        return []
    return [
        "## Training config",
        "",
        "<details><summary>config.yaml (the resolved config of the run)</summary>",
        "",
        "```yaml",
        files.config_text.rstrip("\n"),
        "```",
        "",
        "</details>",
        "",
    ]


# ------------------------------------------------------------------------ the card


def model_card(run_dir: Path, export: dict[str, Any] | None = None, run: dict[str, Any] | None = None) -> str:
    """The README.md text of a finished run (or of an export of it, described by `export`,
    e.g. {"merged": True, "dtype": "bf16", "quantize": "8bit", "source": "runs/x"}).
    `run_dir` may be a model directory alone whose lmforge.json describes its run (an
    export's lmforge.json names the export, which then describes it unless given). `run`:
    the run's record, when the run is finishing and has not written it yet."""
    files = read_card_files(Path(run_dir), run)
    if export is None and is_described_model(Path(run_dir)) and isinstance(files.meta.get("export"), dict):
        export = files.meta["export"]
    rows = evaluation_rows(files)
    matter = yaml.safe_dump(front_matter(files, export, rows), sort_keys=False, allow_unicode=True)
    body = [f"# {title(files)}", "", summary(files, export), ""]
    if export:
        body += export_section(files, export)
    body += data_section(files) + procedure_section(files) + prompt_section(files) + evaluation_section(rows)
    if (files.run_dir / CURVE_FILE).is_file():
        body += ["## Loss curve", "", f"![loss curve]({CURVE_FILE})", ""]
    body += usage_section(files, export) + config_section(files)
    return f"---\n{matter}---\n\n" + "\n".join(body)


def _replace_atomic(target: Path, write) -> None:
    temporary = target.with_name(target.name + ".tmp")
    write(temporary)
    os.replace(temporary, target)


def write_model_card(
    run_dir: Path, target_dir: Path, export: dict[str, Any] | None = None, run: dict[str, Any] | None = None
) -> Path:
    """Write `target_dir/README.md` (atomically) and copy the loss curve beside it, so the
    card's image link works inside model/ and export folders."""
    run_dir, target_dir = Path(run_dir), Path(target_dir)
    text = model_card(run_dir, export, run)
    target_dir.mkdir(parents=True, exist_ok=True)
    curve = run_dir / CURVE_FILE
    if curve.is_file() and curve.resolve() != (target_dir / CURVE_FILE).resolve():
        _replace_atomic(target_dir / CURVE_FILE, lambda tmp: shutil.copyfile(curve, tmp))
    card = target_dir / CARD_FILE
    _replace_atomic(card, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return card


def main(argv: list[str] | None = None) -> int:
    """`python -m lmforge.report.model_card DIR [TARGET_DIR]`: write DIR's card again, DIR
    being a finished run or a model directory alone (default target: DIR's model/ for a
    run, DIR itself for a model directory)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m lmforge.report.model_card", description=main.__doc__)
    parser.add_argument("directory", help="a finished run directory, or a model directory (its lmforge.json)")
    parser.add_argument("target", nargs="?", default=None, help="where README.md goes")
    args = parser.parse_args(argv)
    source = Path(args.directory)
    target = Path(args.target) if args.target else source if is_described_model(source) else source / rundir.MODEL_DIR
    try:
        card = write_model_card(source, target)
    except LmforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[lmforge] model card: {card}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
