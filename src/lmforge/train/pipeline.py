"""`lmforge train`: config -> model + tokenizer -> data -> Trainer with objective -> run
directory. The only place below the CLI that reads the config object."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset

import torch
from transformers import GenerationConfig, TrainerCallback, TrainingArguments

from lmforge.config import Config, dump_config
from lmforge.data.cache import clear_cache, data_fingerprint, load_tokenized, save_tokenized
from lmforge.data.collate import PadCollator
from lmforge.data.formats import PromptFormat, get_format
from lmforge.data.from_config import build_from_config, dataset_specs
from lmforge.data.packing import PackedCollator
from lmforge.data.pipeline import TokenizedData
from lmforge.data.sources import file_sha256
from lmforge.errors import LmforgeError
from lmforge.eval.callback import build_task_eval_callback
from lmforge.models.freezing import freeze_embeddings
from lmforge.models.loading import build_model, load_model, load_tokenizer
from lmforge.models.tokens import add_special_tokens
from lmforge.objectives import build_objective
from lmforge.objectives.forward import NoiseSeeds
from lmforge.objectives.remask import MASK_TOKEN, NoiseEpoch, NoisyCollator, RegularizationNoise
from lmforge.report.plots import plot_loss_curve
from lmforge.train import rundir
from lmforge.train.callbacks import MetricsJsonl, NonFiniteGuard
from lmforge.train.deepspeed import (
    deepspeed_training_arguments, load_deepspeed_config, require_deepspeed, resolve_deepspeed_config,
)
from lmforge.train.distributed import check_devices, has_accelerator, on_main, process_state, world_size
from lmforge.train.trainer import LmforgeTrainer

MODEL_META_FILE = "lmforge.json"
NOISE_OBJECTIVES = ("remask", "remask_cot", "masked_thought")


@dataclass
class TrainResult:
    run_dir: Path
    model_dir: Path
    metrics: dict[str, Any]
    data: TokenizedData


def gradient_accumulation(global_batch: int, micro_batch: int, processes: int) -> int:
    per_step = micro_batch * processes
    if global_batch % per_step:
        raise LmforgeError(
            f"train.global_batch_size {global_batch} is not divisible by train.micro_batch_size {micro_batch} "
            f"x {processes} process{'es' if processes > 1 else ''} = {per_step}"
        )
    return global_batch // per_step


_INTEGRATION_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def check_integrations(report_to: list[str]) -> None:
    """Fail before any work when a requested logging integration is not installed."""
    for name in report_to:
        if importlib.util.find_spec(_INTEGRATION_MODULES[name]) is None:
            raise LmforgeError(f"train.report_to: '{name}' needs the {name} package (pip install {name})")


def objective_tokens(objective_name: str, tokenizer) -> list[str]:
    """Masking objectives need a mask token; add `<|mask|>` when the tokenizer has none."""
    if objective_name in NOISE_OBJECTIVES and tokenizer.mask_token is None:
        return [MASK_TOKEN]
    return []


def mask_token_id(tokenizer) -> int:
    return tokenizer.mask_token_id if tokenizer.mask_token is not None else tokenizer.convert_tokens_to_ids(MASK_TOKEN)


def build_noise(objective: dict[str, Any], tokenizer, seed: int) -> RegularizationNoise | None:
    """The collate-time corruption a masking objective trains on (None for CE/MixCE)."""
    name = objective["name"]
    if name not in NOISE_OBJECTIVES:
        return None
    return RegularizationNoise(mask_token_id(tokenizer), objective["p_in"], objective.get("p_label", 0.0),
                               objective.get("p_answer_only", 0.0), cot_rules=name != "remask", seed=seed)


def needed_special_tokens(config: Config, tokenizer) -> list[str]:
    """The special tokens training adds: those of every format an example may be rendered in
    (format augmentation included) and the objective's mask token."""
    names = [config.data.prompt_format, *config.data.format_augmentation]
    needed = [token for name in names for token in get_format(name).special_tokens(tokenizer)]
    return list(dict.fromkeys(needed + objective_tokens(config.train.objective.name, tokenizer)))


def prepare_model_and_tokenizer(config: Config, seed: int):
    """Tokenizer and model with the special tokens the prompt format and objective need;
    returns also the ids of tokens lmforge added (frozen-embedding training keeps those
    rows trainable)."""
    model_cfg = config.model
    tokenizer = load_tokenizer(model_cfg.tokenizer or model_cfg.name_or_path, model_cfg.trust_remote_code,
                               key="model.tokenizer" if model_cfg.tokenizer else "model.name_or_path")
    prompt_format = get_format(config.data.prompt_format)
    if model_cfg.name_or_path:
        model = load_model(model_cfg.name_or_path, model_cfg.dtype, model_cfg.trust_remote_code,
                           model_cfg.attn_implementation)
    else:
        model = build_model(model_cfg.architecture, model_cfg.size.model_dump(), tokenizer, model_cfg.dtype, seed,
                            model_cfg.attn_implementation)
    new_ids = add_special_tokens(model, tokenizer, needed_special_tokens(config, tokenizer))
    return model, tokenizer, prompt_format, new_ids


def save_final_model(trainer: LmforgeTrainer, tokenizer, prompt_format, cot: bool, run_dir: Path) -> Path:
    """Write the final model to model.tmp/ and move it into place only when complete.

    Every process takes part in the save (FSDP and ZeRO-3 gather the sharded weights), the
    main process alone writes files and moves them.
    """
    state = process_state()
    final_dir = run_dir / rundir.MODEL_DIR
    staging = run_dir / (rundir.MODEL_DIR + ".tmp")
    if state.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    state.wait_for_everyone()
    template = prompt_format.chat_template(cot)
    if template is not None:
        tokenizer.chat_template = template
    stop_ids = [tokenizer.convert_tokens_to_ids(s) for s in prompt_format.stop_strings(tokenizer)]
    model = trainer.model
    model.generation_config = GenerationConfig(
        eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id
    )
    trainer.save_model(str(staging))
    state.wait_for_everyone()
    if state.is_main_process:
        tokenizer.save_pretrained(str(staging))
        meta = {"prompt_format": prompt_format.name, "cot": cot, "stop_strings": prompt_format.stop_strings(tokenizer)}
        (staging / MODEL_META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        shutil.rmtree(final_dir, ignore_errors=True)
        os.replace(staging, final_dir)
    state.wait_for_everyone()
    return final_dir


def sharding_arguments(config: Config) -> dict[str, Any]:
    """The Trainer's FSDP2 arguments for train.fsdp (none for DDP or one process)."""
    fsdp = config.train.fsdp
    if fsdp is None:
        return {}
    fsdp_config = {"version": 2, "reshard_after_forward": fsdp.reshard_after_forward,
                   "cpu_offload": fsdp.cpu_offload, "state_dict_type": fsdp.state_dict_type}
    if fsdp.transformer_layer_cls_to_wrap:
        fsdp_config["transformer_layer_cls_to_wrap"] = fsdp.transformer_layer_cls_to_wrap
    return {"fsdp": True, "fsdp_config": fsdp_config}


def deepspeed_config(config: Config) -> dict[str, Any] | None:
    """train.deepspeed loaded and checked against the rest of the config before any work
    ("auto" values stay: the Trainer fills them)."""
    if config.train.deepspeed is None:
        return None
    require_deepspeed()
    loaded = load_deepspeed_config(config.train.deepspeed)
    resolve_deepspeed_config(loaded, config, world_size())  # disagreements are errors now, not at step 0
    return loaded


def training_arguments(config: Config, run_dir: Path, accumulation: int, has_val: bool,
                       sequential: bool = False, deepspeed: dict[str, Any] | None = None) -> TrainingArguments:
    train = config.train
    return TrainingArguments(
        output_dir=str(run_dir),
        per_device_train_batch_size=train.micro_batch_size,
        per_device_eval_batch_size=train.micro_batch_size,
        gradient_accumulation_steps=accumulation,
        num_train_epochs=train.epochs,
        max_steps=train.max_steps or -1,
        learning_rate=train.optimizer.lr,
        max_grad_norm=train.max_grad_norm,
        eval_strategy="steps" if (train.eval_every and has_val) else "no",
        eval_steps=train.eval_every,
        save_strategy="steps" if train.save_every else "no",
        save_steps=train.save_every or 500,
        save_total_limit=train.save_total_limit,
        logging_steps=train.logging_steps,
        seed=config.run.seed,
        data_seed=config.run.seed,
        report_to=list(train.report_to) or "none",
        remove_unused_columns=False,
        bf16=train.precision == "bf16",
        fp16=train.precision == "fp16",
        # without an accelerator the Trainer must be told so, or it refuses bf16 autocast
        use_cpu=not has_accelerator(),
        activation_checkpointing=train.gradient_checkpointing,
        # non-reentrant: works with frozen inputs (frozen embeddings), adapters and
        # objectives that run several forwards, without enable_input_require_grads
        activation_checkpointing_kwargs={"use_reentrant": False} if train.gradient_checkpointing else None,
        dataloader_pin_memory=torch.cuda.is_available(),
        dataloader_num_workers=train.dataloader_workers,
        save_only_model=False,
        train_sampling_strategy="sequential" if sequential else "random",
        disable_tqdm=False,
        **sharding_arguments(config),
        **(deepspeed_training_arguments(deepspeed, config) if deepspeed else {}),
    )


@dataclass
class PreparedData:
    """What the Trainer needs from a data builder, and what the run records about it."""

    train: Dataset
    val: Dataset | None
    collator: Callable
    eval_collator: Callable
    cot: bool
    """Most training examples have a rationale: the saved model answers rationale-first."""
    file_hashes: dict[str, str]
    summary: dict[str, Any]
    callbacks: list[TrainerCallback] = field(default_factory=list)
    tokenized: TokenizedData | None = None
    sequential: bool = False
    """Train in the dataset's order (multi-stage mixes) instead of a random order."""


DataBuilder = Callable[[Config, Any, PromptFormat], PreparedData]


def local_file_hashes(paths: list[str]) -> dict[str, str]:
    return {path: file_sha256(path) if Path(path).is_file() else "not a local file" for path in paths}


def tokenized_once(config: Config, tokenizer, prompt_format: PromptFormat) -> tuple[TokenizedData, dict[str, str]]:
    """The tokenized data and the data files' hashes. With several processes the main
    process builds it and caches it in the run directory by content hash; the others load
    that cache. (Their file hashes stay empty: only the main process writes run.json.)"""
    state = process_state()
    paths = [spec.path for spec in dataset_specs(config.data)]
    if state.num_processes == 1:
        return build_from_config(config.data, config.run.seed, prompt_format, tokenizer), local_file_hashes(paths)
    built: dict[str, Any] = {}

    def build_and_cache() -> str:
        built["data"] = build_from_config(config.data, config.run.seed, prompt_format, tokenizer)
        built["hashes"] = local_file_hashes(paths)
        key = data_fingerprint(config.data.model_dump(mode="json"), config.run.seed, prompt_format.name, tokenizer,
                               built["hashes"])
        return str(save_tokenized(built["data"], config.output_path, key))

    cached = on_main(state, build_and_cache)
    if state.is_main_process:
        return built["data"], built["hashes"]
    return load_tokenized(Path(cached)), {}


def sft_data(config: Config, tokenizer, prompt_format: PromptFormat) -> PreparedData:
    """Conversations from data.datasets, tokenized with label masks, padded per batch;
    masking objectives add their collate-time noise to training batches, NEFTune its
    per-example seeds."""
    data, file_hashes = tokenized_once(config, tokenizer, prompt_format)
    for report in data.reports:
        dropped = ", ".join(f"{k} {v}" for k, v in report.dropped.items()) or "none"
        print(f"[lmforge] {report.path}: {report.records} records ({report.format}"
              f"{', detected' if report.detected else ''}); train {report.train}, "
              f"val {report.val}, test {report.test}; dropped: {dropped}; truncated {report.truncated}")
    if data.packing:
        print(f"[lmforge] packing: {data.packing.examples} examples in {data.packing.rows} rows, "
              f"efficiency {data.packing.efficiency:.1%}")
    if config.train.objective.name == "remask_cot" and data.cot_fraction == 0.0:
        raise LmforgeError("train.objective.name: remask_cot needs CoT examples (question/rationale/answer), "
                           "but no training example has a rationale segment; use remask instead")
    collator = PadCollator(tokenizer.pad_token_id)
    train_collator = PackedCollator(tokenizer.pad_token_id) if config.data.packing else collator
    noise = build_noise(config.train.objective.model_dump(), tokenizer, config.run.seed)
    if noise:
        train_collator = NoisyCollator(train_collator, noise)
    seeds = NoiseSeeds(config.run.seed) if config.train.neftune_alpha else None
    if seeds:
        train_collator = NoisyCollator(train_collator, seeds)
    epoch_noise = [step for step in (noise, seeds) if step is not None]
    return PreparedData(
        train=data.train, val=data.val,
        collator=train_collator, eval_collator=collator,
        cot=data.cot_fraction >= 0.5,
        file_hashes=file_hashes,
        summary={"data": [r.as_dict() for r in data.reports]},
        callbacks=[NoiseEpoch(*epoch_noise)] if epoch_noise else [],
        tokenized=data,
        # stages are laid out one after the other (each shuffled within itself): keep that order
        sequential=bool(config.data.stages),
    )


def run_training(
    config: Config,
    overwrite: bool = False,
    resume: bool = False,
    extra_callbacks: list[TrainerCallback] = (),
    data_builder: DataBuilder = sft_data,
) -> TrainResult:
    """Train one run. Under torchrun / accelerate launch every process calls this; the main
    process alone creates or clears the run directory and writes its records."""
    check_integrations(config.train.report_to)
    check_devices(config.train.precision)
    accumulation = gradient_accumulation(config.train.global_batch_size, config.train.micro_batch_size, world_size())
    deepspeed = deepspeed_config(config)
    state = process_state()
    main = state.is_main_process
    run_dir = config.output_path
    checkpoint = on_main(state, lambda: rundir.prepare_run_dir(run_dir, overwrite=overwrite, resume=resume))
    model, tokenizer, prompt_format, new_ids = prepare_model_and_tokenizer(config, config.run.seed)
    data = data_builder(config, tokenizer, prompt_format)
    task_evals = build_task_eval_callback([entry.model_dump() for entry in config.train.eval_tasks], tokenizer,
                                          {"prompt_format": prompt_format.name, "cot": data.cot})
    partial = freeze_embeddings(model, new_ids) if config.model.freeze_embeddings else []

    record = None
    if main:
        (run_dir / "config.yaml").write_text(dump_config(config), encoding="utf-8")
        previous = rundir.read_run(run_dir) if resume else None
        record = rundir.start_run(
            run_dir, data.file_hashes,
            {**data.summary, "added_tokens": new_ids, "processes": state.num_processes,
             **({"resumed_from": str(checkpoint), "first_started": previous.get("started")} if previous else {})},
        )

    guard = NonFiniteGuard(config.train.max_consecutive_nonfinite)
    trainer = LmforgeTrainer(
        model=model,
        args=training_arguments(config, run_dir, accumulation, data.val is not None, data.sequential, deepspeed),
        train_dataset=data.train,
        eval_dataset=data.val,
        data_collator=data.collator,
        eval_data_collator=data.eval_collator,
        processing_class=tokenizer,
        # task evaluations before MetricsJsonl: their scores join the same log line
        callbacks=[guard, *([task_evals] if task_evals else []), MetricsJsonl(run_dir / "metrics.jsonl"),
                   *data.callbacks, *extra_callbacks],
        objective=build_objective(config.train.objective.name, config.train.objective.model_dump(),
                                  config.train.neftune_alpha),
        optimizer_spec=config.train.optimizer.model_dump(),
        schedule_spec=config.train.schedule.model_dump(),
        guard=guard,
        no_decay_params=partial,
    )
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        metrics = trainer.evaluate() if data.val is not None else {}
        model_dir = save_final_model(trainer, tokenizer, prompt_format, data.cot, run_dir)
        if main:
            plot_loss_curve(run_dir / "metrics.jsonl", run_dir / "loss_curve.png")
            clear_cache(run_dir)
    except BaseException as exc:
        if main:
            rundir.end_run(run_dir, record, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    metrics["skipped_updates"] = guard.skipped
    if main:
        rundir.end_run(run_dir, record, "finished", final_metrics=metrics, global_step=trainer.state.global_step)
    return TrainResult(run_dir, model_dir, metrics, data.tokenized)
