"""`lmforge train`: config -> model + tokenizer -> data -> Trainer with objective -> run
directory. It turns the config object into the pieces below it (data, model, objective,
optimizer, schedule, Trainer arguments); `ablate`, `bootstrap`, `estimate`,
`train/steps.py` and `train/deepspeed.py` read the config object too."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, TrainerCallback, TrainingArguments

from lmforge.config import Config, dump_config
from lmforge.data.cache import clear_cache
from lmforge.data.formats import PromptFormat, get_format
from lmforge.data.pipeline import TokenizedData
from lmforge.errors import LmforgeError
from lmforge.eval.callback import build_task_eval_callback
from lmforge.models.adapters import (
    BASE_DIR,
    adapter_base,
    adapter_settings,
    attach_adapter,
    base_model,
    is_adapter_dir,
    load_adapter_model,
    quantization_config,
    stored_numel,
    trainable_summary,
)
from lmforge.models.freezing import freeze_embeddings
from lmforge.models.loading import build_model, load_model, load_tokenizer
from lmforge.models.tokens import add_special_tokens
from lmforge.objectives import build_objective
from lmforge.objectives.registry import OBJECTIVES
from lmforge.objectives.remask import MASK_TOKEN
from lmforge.train.data_builders import DataBuilder, default_data_builder
from lmforge.train.efficiency import machine_roof, run_efficiency, summary_line
from lmforge.train.preemption import Preemption
from lmforge.train.reference import prepare_candidates
from lmforge.report.model_card import write_model_card
from lmforge.report.plots import plot_loss_curve
from lmforge.report.provenance import describe_model
from lmforge import rundir
from lmforge.train.compile import compile_decoder
from lmforge.train.callbacks import MetricsJsonl, NonFiniteGuard
from lmforge.train.deepspeed import (
    deepspeed_training_arguments,
    load_deepspeed_config,
    require_deepspeed,
    resolve_deepspeed_config,
)
from lmforge.train.distributed import check_devices, has_accelerator, on_main, process_state, world_size
from lmforge.train.trainer import LmforgeTrainer

MODEL_META_FILE = "lmforge.json"


@dataclass
class TrainResult:
    run_dir: Path
    model_dir: Path | None
    """None when a signal stopped the run (`interrupted_at`)."""
    metrics: dict[str, Any]
    data: TokenizedData
    interrupted_at: int | None = None
    """The step whose checkpoint a SIGTERM/SIGINT stop saved; --resume continues from it."""

    def require_finished(self) -> TrainResult:
        """For commands that go on with the model: a stopped run stops them too."""
        if self.interrupted_at is not None:
            raise Interrupted(self.run_dir, self.interrupted_at)
        return self


class Interrupted(LmforgeError):
    def __init__(self, run_dir: Path, step: int):
        super().__init__(f"{run_dir}: stopped by a signal after step {step}, checkpoint saved; continue with --resume")


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
    if OBJECTIVES[objective_name].masking and tokenizer.mask_token is None:
        return [MASK_TOKEN]
    return []


def needed_special_tokens(config: Config, tokenizer) -> list[str]:
    """The special tokens training adds: those of every format an example may be rendered in
    (format augmentation included) and the objective's mask token."""
    names = [config.data.prompt_format, *config.data.format_augmentation]
    needed = [token for name in names for token in get_format(name).special_tokens(tokenizer)]
    return list(dict.fromkeys(needed + objective_tokens(config.train.objective.name, tokenizer)))


@dataclass
class PreparedModel:
    model: Any
    tokenizer: Any
    prompt_format: PromptFormat
    new_ids: list[int]
    """Ids of the tokens lmforge added (frozen embeddings and adapters keep their rows trainable)."""
    adapter: dict[str, Any] | None = None
    """The adapter's settings (model.adapter, or those of the adapter that keeps training)."""
    base: str | None = None
    """What the adapter's base is: model.name_or_path, or the run's base/ for a fresh model."""


def _load_base(config: Config, tokenizer, seed: int):
    """The model to train, before special tokens are added: pretrained (maybe quantized),
    freshly built, or an lmforge adapter model whose adapter keeps training."""
    model_cfg = config.model
    quantization = model_cfg.quantization.model_dump() if model_cfg.quantization else None
    source = model_cfg.name_or_path
    if is_adapter_dir(source):
        if model_cfg.adapter is not None:
            raise LmforgeError(
                f"model.adapter: {source} already holds an adapter, which keeps training; remove "
                "model.adapter (or lmforge export --merge it to train a new adapter on the result)"
            )
        return load_adapter_model(
            Path(source),
            len(tokenizer),
            model_cfg.dtype,
            trainable=True,
            quantization=quantization,
            trust_remote_code=model_cfg.trust_remote_code,
            attn_implementation=model_cfg.attn_implementation,
        )
    if source:
        return load_model(
            source,
            model_cfg.dtype,
            model_cfg.trust_remote_code,
            model_cfg.attn_implementation,
            quantization_config(quantization) if quantization else None,
            allow_pickle=model_cfg.allow_pickle,
        )
    return build_model(
        model_cfg.architecture,
        model_cfg.size.model_dump(),
        tokenizer,
        model_cfg.dtype,
        seed,
        model_cfg.attn_implementation,
    )


def _fresh_base_on_disk(model, tokenizer, config: Config, run_dir: Path):
    """An adapter on a freshly built model needs that model again to be loaded: the main
    process saves it to RUN_DIR/base once (a resumed run finds it there), and a quantized
    base is then loaded from it, quantized."""
    state = process_state()
    base_dir = run_dir / BASE_DIR

    def save_once() -> None:
        if not (base_dir / "config.json").is_file():
            staging = run_dir / (BASE_DIR + ".tmp")
            model.save_pretrained(str(staging))
            tokenizer.save_pretrained(str(staging))
            os.replace(staging, base_dir)

    on_main(state, save_once)
    model_cfg = config.model
    if model_cfg.quantization is not None:
        model = load_model(
            str(base_dir), model_cfg.dtype, quantization_config=quantization_config(model_cfg.quantization.model_dump())
        )
    # what the adapter records as its base (peft copies it into adapter_config.json)
    model.config._name_or_path = str(base_dir.resolve())
    return model


def prepare_model_and_tokenizer(config: Config, seed: int, run_dir: Path | None = None) -> PreparedModel:
    """Tokenizer and model with the special tokens the prompt format and objective need,
    wrapped in a trainable adapter when model.adapter asks for one. `run_dir` is where a
    freshly built base is kept for an adapter run."""
    model_cfg = config.model
    tokenizer = load_tokenizer(
        model_cfg.tokenizer or model_cfg.name_or_path,
        model_cfg.trust_remote_code,
        key="model.tokenizer" if model_cfg.tokenizer else "model.name_or_path",
    )
    prompt_format = get_format(config.data.prompt_format)
    model = _load_base(config, tokenizer, seed)
    continuing = is_adapter_dir(model_cfg.name_or_path)
    if continuing:
        missing = [t for t in needed_special_tokens(config, tokenizer) if t not in tokenizer.get_vocab()]
        if missing:
            raise LmforgeError(
                f"data.prompt_format: the adapter in {model_cfg.name_or_path} was trained without "
                f"the tokens {', '.join(missing)}; keep its prompt format"
            )
        settings = adapter_settings(Path(model_cfg.name_or_path))
        spec = {
            "type": "dora" if settings.get("use_dora") else "lora",
            "r": settings["r"],
            "alpha": settings["lora_alpha"],
            "rslora": bool(settings.get("use_rslora")),
        }
        return PreparedModel(model, tokenizer, prompt_format, [], spec, adapter_base(Path(model_cfg.name_or_path)))
    new_ids = add_special_tokens(model, tokenizer, needed_special_tokens(config, tokenizer))
    if model_cfg.adapter is None:
        return PreparedModel(model, tokenizer, prompt_format, new_ids)
    base = model_cfg.name_or_path
    if base is None:
        if run_dir is None:
            raise LmforgeError("model.adapter: an adapter on a freshly built model needs a run directory for its base")
        model = _fresh_base_on_disk(model, tokenizer, config, run_dir)
        base = str((run_dir / BASE_DIR).resolve())
    spec = model_cfg.adapter.model_dump()
    model = attach_adapter(model, spec, new_ids, config.train.gradient_checkpointing)
    return PreparedModel(model, tokenizer, prompt_format, new_ids, spec, base)


def save_final_model(trainer: LmforgeTrainer, prepared: PreparedModel, cot: bool, config: Config) -> Path:
    """Write the final model to model.tmp/ and move it into place only when complete.

    Every process takes part in the save (FSDP and ZeRO-3 gather the sharded weights), the
    main process alone writes files and moves them. An adapter run's model/ holds the
    adapter, the tokenizer and, for a freshly built base, that base in model/base/.
    """
    state = process_state()
    run_dir = config.output_path
    tokenizer, prompt_format = prepared.tokenizer, prepared.prompt_format
    final_dir = run_dir / rundir.MODEL_DIR
    staging = run_dir / (rundir.MODEL_DIR + ".tmp")
    if state.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    state.wait_for_everyone()
    template = prompt_format.chat_template(cot)
    if template is not None:
        tokenizer.chat_template = template
    stop_ids = [tokenizer.convert_tokens_to_ids(s) for s in prompt_format.stop_strings(tokenizer)]
    generation_config = GenerationConfig(
        eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id
    )
    base_model(trainer.model).generation_config = generation_config
    trainer.save_model(str(staging))
    state.wait_for_everyone()
    if state.is_main_process:
        tokenizer.save_pretrained(str(staging))
        meta = {"prompt_format": prompt_format.name, "cot": cot, "stop_strings": prompt_format.stop_strings(tokenizer)}
        if prepared.adapter is not None:
            generation_config.save_pretrained(str(staging))  # peft saves the adapter only
            fresh_base = run_dir / BASE_DIR
            if prepared.base == str(fresh_base.resolve()):
                shutil.copytree(fresh_base, staging / BASE_DIR)
            quantization = config.model.quantization
            meta["adapter"] = {
                **prepared.adapter,
                "base": prepared.base,
                "quantization": quantization.model_dump() if quantization else None,
            }
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
    fsdp_config = {
        "version": 2,
        "reshard_after_forward": fsdp.reshard_after_forward,
        "cpu_offload": fsdp.cpu_offload,
        "state_dict_type": fsdp.state_dict_type,
    }
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


def training_arguments(
    config: Config,
    run_dir: Path,
    accumulation: int,
    has_val: bool,
    sequential: bool = False,
    deepspeed: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainingArguments:
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
        **(overrides or {}),
    )


def run_training(
    config: Config,
    overwrite: bool = False,
    resume: bool = False,
    extra_callbacks: list[TrainerCallback] = (),
    data_builder: DataBuilder | None = None,
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
    prepared = prepare_model_and_tokenizer(config, config.run.seed, run_dir)
    model, tokenizer, prompt_format, new_ids = (
        prepared.model,
        prepared.tokenizer,
        prepared.prompt_format,
        prepared.new_ids,
    )
    data = (data_builder or default_data_builder(config))(config, tokenizer, prompt_format)
    prepare_candidates(config, prepared, data, main)
    task_evals = build_task_eval_callback(
        [entry.model_dump() for entry in config.train.eval_tasks],
        tokenizer,
        {"prompt_format": prompt_format.name, "cot": data.cot},
    )
    # an adapter run's base is frozen whole; the adapter trains the added tokens' rows itself
    freeze = config.model.freeze_embeddings and prepared.adapter is None
    partial = freeze_embeddings(model, new_ids) if freeze else []
    parameters = sum(stored_numel(p) for p in model.parameters())
    if main:
        print(f"[lmforge] {trainable_summary(model, prepared.adapter)}")
    if config.train.compile:
        compile_decoder(model)  # after the reference log-probs and freezing: training alone runs it

    record = None
    if main:
        (run_dir / rundir.CONFIG_FILE).write_text(dump_config(config), encoding="utf-8")
        previous = rundir.read_run(run_dir) if resume else None
        record = rundir.start_run(
            run_dir,
            data.file_hashes,
            {
                **data.summary,
                "added_tokens": new_ids,
                "processes": state.num_processes,
                **({"adapter": {**prepared.adapter, "base": prepared.base}} if prepared.adapter else {}),
                **({"resumed_from": str(checkpoint), "first_started": previous.get("started")} if previous else {}),
            },
        )

    guard = NonFiniteGuard(config.train.max_consecutive_nonfinite)
    preemption = Preemption(config.train.preemption_grace_s)
    metrics_log = MetricsJsonl(run_dir / "metrics.jsonl")
    trainer = LmforgeTrainer(
        model=model,
        args=training_arguments(
            config, run_dir, accumulation, data.val is not None, data.sequential, deepspeed, data.trainer_arguments
        ),
        train_dataset=data.train,
        eval_dataset=data.val,
        data_collator=data.collator,
        eval_data_collator=data.eval_collator,
        processing_class=tokenizer,
        # task evaluations before MetricsJsonl: their scores join the same log line
        callbacks=[
            guard,
            *([task_evals] if task_evals else []),
            *data.callbacks,  # before MetricsJsonl: a stream's accounting joins the log line it writes
            metrics_log,
            preemption,
            *extra_callbacks,
        ],
        objective=build_objective(
            config.train.objective.name, config.train.objective.model_dump(), config.train.neftune_alpha
        ),
        optimizer_spec=config.train.optimizer.model_dump(),
        schedule_spec=config.train.schedule.model_dump(),
        guard=guard,
        no_decay_params=partial,
    )
    trainer.checkpoint_states["metrics_log"] = metrics_log  # the log's length at each save
    # first of all callbacks: the logging integrations (TensorBoard, wandb, mlflow) come
    # before ours and must see what these add to the training log (task scores, a stream's
    # mix/ accounting)
    for callback in reversed([*([task_evals] if task_evals else []), *data.callbacks]):
        trainer.callback_handler.callbacks.remove(callback)
        trainer.callback_handler.callbacks.insert(0, callback)
    try:
        roof = machine_roof(config.train.precision, trainer.args.device) if main and config.train.measure_roof else None
        try:
            trained = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        finally:
            preemption.close()
        if preemption.stopped_at is not None:  # SIGTERM/SIGINT: a checkpoint, no final model
            if main:
                rundir.end_run(run_dir, record, "interrupted", global_step=preemption.stopped_at)
            return TrainResult(run_dir, None, {}, data.tokenized, interrupted_at=preemption.stopped_at)
        metrics = trainer.evaluate() if data.val is not None else {}
        model_dir = save_final_model(trainer, prepared, data.cot, config)
        if main:
            plot_loss_curve(run_dir / "metrics.jsonl", run_dir / "loss_curve.png")
            clear_cache(run_dir)
    except BaseException as exc:
        if main:
            rundir.end_run(run_dir, record, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    metrics["skipped_updates"] = guard.skipped
    if data.final_metrics is not None:
        metrics.update(data.final_metrics(trainer.state.global_step))
    metrics["train_runtime"] = trained.metrics.get("train_runtime")  # the training loop's wall seconds
    metrics["efficiency"] = run_efficiency(
        trainer,
        trained.metrics.get("train_runtime", 0.0),
        parameters,
        OBJECTIVES[config.train.objective.name].passes,
        roof,
        state.num_processes,
    )
    if main:
        print(f"[lmforge] {summary_line(metrics['efficiency'])}")
    if main:
        # "finished" is written last: a kill before it leaves a run --resume finishes again
        record = rundir.ended(record, "finished", final_metrics=metrics, global_step=trainer.state.global_step)
        describe_model(run_dir, record)  # model/lmforge.json: the run's config, versions, data hashes, metrics
        write_model_card(run_dir, model_dir, run=record)
        rundir.write_json_atomic(run_dir / rundir.RUN_FILE, record)
    return TrainResult(run_dir, model_dir, metrics, data.tokenized)
