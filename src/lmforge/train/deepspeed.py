"""DeepSpeed for `train.deepspeed`: read and check the user's DeepSpeed JSON before any work,
and show the values transformers' Trainer will put in place of its "auto" entries.

Who decides what at train time (transformers 5.x, `transformers/integrations/deepspeed.py`):

- `TrainingArguments(deepspeed=...)` fills batch sizes, gradient clipping, fp16/bf16, the
  optimizer's lr/betas/eps/weight_decay and the scheduler's warmup_min_lr/warmup_max_lr from
  its own arguments (`HfTrainerDeepSpeedConfig.trainer_config_process`); `Trainer.train()`
  then fills the ZeRO bucket sizes from the model's hidden size and the scheduler's step
  counts (`trainer_config_finalize`). A value that is not "auto" must agree with those
  arguments, or training stops with a list of mismatches.
- With an `optimizer` block the Trainer never calls `create_optimizer`
  (`deepspeed_optim_sched` hands DeepSpeed a `DummyOptim`): DeepSpeed builds that optimizer
  over every trainable parameter with one weight decay, so lmforge's optimizer and its
  no-decay group (biases, norms, added-token rows) are gone. Without one, lmforge's
  `LmforgeTrainer.create_optimizer` runs under DeepSpeed (transformers sets
  zero_allow_untested_optimizer).
- With a `scheduler` block DeepSpeed's schedule replaces train.schedule; without one,
  lmforge's `create_scheduler` drives whichever optimizer runs. Even the matching DeepSpeed
  schedule is not lmforge's step for step: WarmupLR and its kin set warmup_min_lr before
  the first update and step from there, so they run one update behind, and warm up over at
  least 2 steps. (A 2-process CPU run of the tiny preset: ZeRO-3 without the two blocks
  matches DDP to 1e-9; with seed 001's blocks it does not.)

`resolve_deepspeed_config` runs transformers' own filling code (deepspeed need not be
installed), so `lmforge config show` prints what DeepSpeed will be given.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from accelerate.utils.deepspeed import HfDeepSpeedConfig as AccelerateDeepSpeedConfig
from transformers import TrainingArguments
from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig, is_deepspeed_available

from lmforge.config import Config
from lmforge.config.loader import _node_lines
from lmforge.errors import LmforgeError

KEY = "train.deepspeed"

# Top-level keys DeepSpeed reads (DeepSpeedConfig._initialize_params and the engine, as of
# 0.19.8), plus blocks older releases accept and 0.19.8 rejects with its own message.
KNOWN_KEYS = frozenset(
    {
        "activation_checkpointing",
        "aio",
        "autotuning",
        "bf16",
        "bfloat16",
        "checkpoint",
        "comet",
        "comms_logger",
        "communication_data_type",
        "compile",
        "csv_monitor",
        "data_efficiency",
        "data_types",
        "dataloader_drop_last",
        "datastates_ckpt",
        "disable_allgather",
        "disable_python_gc",
        "dump_state",
        "expert_parallel",
        "flops_profiler",
        "fp16",
        "gradient_accumulation_steps",
        "gradient_allreduce_op",
        "gradient_clipping",
        "gradient_predivide_factor",
        "hybrid_engine",
        "log_level",
        "managed_gradient_accumulation",
        "memory_breakdown",
        "optimizer",
        "pipeline",
        "prescale_gradients",
        "scheduler",
        "seq_parallel_communication_data_type",
        "sequence_parallel_size",
        "steps_per_print",
        "tensor_parallel",
        "tensorboard",
        "timers",
        "torch_autocast",
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "use_data_before_expert_parallelism",
        "vocabulary_size",
        "wall_clock_breakdown",
        "wandb",
        "weight_quantization",
        "zero_allow_untested_optimizer",
        "zero_force_ds_cpu_optimizer",
        "zero_optimization",
        # rejected by 0.19.8
        "amp",
        "compression_training",
        "curriculum_learning",
        "eigenvalue",
        "elasticity",
        "graph_harvesting",
        "nebula",
        "progressive_layer_drop",
        "quantize_training",
        "sparse_attention",
        "sparse_gradients",
    }
)

# Keys of the blocks whose pydantic models in DeepSpeed forbid unknown keys (0.19.8, plus the
# MiCS and LoCo keys that older releases accept).
BLOCK_KEYS = {
    "zero_optimization": frozenset(
        {
            "allgather_bucket_size",
            "allgather_partitions",
            "allgather_sequential",
            "compute_grad_norm",
            "contiguous_gradients",
            "cpu_offload",
            "cpu_offload_param",
            "cpu_offload_use_pin_memory",
            "elastic_checkpoint",
            "enable_sanity_checks",
            "gather_16bit_weights_on_model_save",
            "ignore_unused_parameters",
            "leaf_module",
            "legacy_stage1",
            "load_from_fp32_weights",
            "log_trace_cache_warnings",
            "max_live_parameters",
            "max_reuse_distance",
            "memory_efficient_linear",
            "model_persistence_threshold",
            "module_granularity_threshold",
            "offload_optimizer",
            "offload_param",
            "overlap_comm",
            "override_module_apply",
            "param_persistence_threshold",
            "parameter_alignment",
            "pipeline_loading_checkpoint",
            "prefetch_bucket_size",
            "reduce_bucket_size",
            "reduce_scatter",
            "round_robin_gradients",
            "save_muon_momentum_buffer_in_memory",
            "stage",
            "stage3_allgather_sequential",
            "stage3_gather_16bit_weights_on_model_save",
            "stage3_gather_fp16_weights_on_model_save",
            "stage3_max_live_parameters",
            "stage3_max_reuse_distance",
            "stage3_model_persistence_threshold",
            "stage3_module_granularity_threshold",
            "stage3_param_persistence_threshold",
            "stage3_prefetch_bucket_size",
            "stage3_use_all_reduce_for_fetch_params",
            "sub_group_size",
            "use_all_reduce_for_fetch_params",
            "use_multi_rank_bucket_allreduce",
            "zenflow",
            "zero_hpz_partition_size",
            "zero_quantized_gradients",
            "zero_quantized_nontrainable_weights",
            "zero_quantized_weights",
            "mics_shard_size",
            "mics_hierarchical_params_gather",
            "zeropp_loco_param",
        }
    ),
    "fp16": frozenset(
        {
            "auto_cast",
            "consecutive_hysteresis",
            "enabled",
            "fp16_master_weights_and_grads",
            "hysteresis",
            "initial_scale_power",
            "loss_scale",
            "loss_scale_window",
            "min_loss_scale",
        }
    ),
    "bf16": frozenset(
        {
            "bf16_master_weights_and_grads",
            "bf16_optimizer_states",
            "check_grad_overflow",
            "enabled",
            "immediate_grad_update",
        }
    ),
}

# The keys whose "auto" transformers fills (HfTrainerDeepSpeedConfig.trainer_config_process
# and trainer_config_finalize); an "auto" anywhere else would reach DeepSpeed as a string.
HIDDEN_SIZE_KEYS = (
    "zero_optimization.reduce_bucket_size",
    "zero_optimization.stage3_prefetch_bucket_size",
    "zero_optimization.stage3_param_persistence_threshold",
)
AUTO_KEYS = frozenset(
    {
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "train_batch_size",
        "gradient_clipping",
        "optimizer.params.lr",
        "optimizer.params.betas",
        "optimizer.params.eps",
        "optimizer.params.weight_decay",
        "scheduler.params.warmup_min_lr",
        "scheduler.params.warmup_max_lr",
        "scheduler.params.warmup_num_steps",
        "scheduler.params.total_num_steps",
        "fp16.enabled",
        "bf16.enabled",
        *HIDDEN_SIZE_KEYS,
    }
)
STAGE3_ONLY = frozenset(HIDDEN_SIZE_KEYS[1:])  # filled only when zero_optimization.stage is 3
NUMERIC_KEYS = frozenset(
    {
        *(AUTO_KEYS - {"optimizer.params.betas", "fp16.enabled", "bf16.enabled"}),
        "steps_per_print",
        "zero_optimization.stage",
        "zero_optimization.sub_group_size",
        "zero_optimization.allgather_bucket_size",
        "zero_optimization.stage3_max_live_parameters",
        "zero_optimization.stage3_max_reuse_distance",
        "zero_optimization.stage3_model_persistence_threshold",
        "fp16.loss_scale",
        "fp16.loss_scale_window",
        "fp16.initial_scale_power",
        "fp16.hysteresis",
        "fp16.min_loss_scale",
        "scheduler.params.cos_min_ratio",
        "scheduler.params.warmup_min_ratio",
    }
)
MAPPING_KEYS = ("fp16", "bf16", "optimizer", "optimizer.params", "scheduler", "scheduler.params", "zero_optimization")

# The DeepSpeed scheduler that draws each lmforge schedule; the others have none.
DEEPSPEED_SCHEDULES = {"linear": "WarmupDecayLR", "cosine": "WarmupCosineLR", "constant": "WarmupLR"}
WARMUP_COSINE_MIN_RATIO = 0.0001  # WarmupCosineLR's default cos_min_ratio


def require_deepspeed() -> None:
    """Fail before any work when train.deepspeed is set but the package is missing."""
    if not is_deepspeed_available():
        raise LmforgeError(f"{KEY}: DeepSpeed is not installed; pip install 'lmforge[deepspeed]'")


# --------------------------------------------------------------------------- reading


class _Where:
    """Turns a key path inside the DeepSpeed config into a message prefix: file:line for a
    JSON file (lines read with the YAML composer, as JSON is YAML flow syntax), the config
    key's origin for an inline mapping."""

    def __init__(self, file: Path | None, origin: str | None, lines: dict[tuple[str, ...], str]):
        self.file, self.origin, self.lines = file, origin, lines

    def error(self, path: str, problem: str, value: Any = ...) -> LmforgeError:
        shown = "" if value is ... else f" = {json.dumps(value)}"
        if self.file is None:
            where = f"{self.origin}: " if self.origin else ""
            return LmforgeError(f"{where}{KEY}.{path}{shown}: {problem}")
        keys = tuple(path.split("."))
        line = next((self.lines[keys[:d]] for d in range(len(keys), 0, -1) if keys[:d] in self.lines), str(self.file))
        return LmforgeError(f"{line}: {KEY}: {path}{shown}: {problem}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of two equal keys silently; DeepSpeed's own reader refuses them
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key '{key}'")
        seen[key] = value
    return seen


def load_deepspeed_config(value: str | dict, origin: str | None = None) -> dict[str, Any]:
    """The DeepSpeed config that `train.deepspeed` names, checked; "auto" values stay.

    `value` is a JSON file path or an inline mapping; `origin` is where the key was set
    (file:line or `--set train.deepspeed`), for messages. A relative path is read from the
    current directory, like every other path in an lmforge config (data files, tokenizer).
    """
    if isinstance(value, dict):
        content, where = copy.deepcopy(value), _Where(None, origin, {})
    else:
        path = Path(value).expanduser()
        said = f"{origin}: " if origin else ""
        if not path.is_file():
            resolved = "" if path.is_absolute() else f" (looked for {path.resolve()})"
            raise LmforgeError(f"{said}{KEY}: {value}: DeepSpeed config file not found{resolved}")
        text = path.read_text(encoding="utf-8")
        try:
            content = json.loads(text, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as exc:
            raise LmforgeError(f"{path}:{exc.lineno}:{exc.colno}: {KEY}: invalid JSON: {exc.msg}") from exc
        except ValueError as exc:
            raise LmforgeError(f"{path}: {KEY}: invalid DeepSpeed config: {exc}") from exc
        lines: dict[tuple[str, ...], str] = {}
        try:
            _node_lines(yaml.compose(text, Loader=yaml.SafeLoader), path, (), lines)
        except yaml.YAMLError:
            lines = {}  # valid JSON YAML can't read (tabs): messages name the file without a line
        where = _Where(path, origin, lines)
        if not isinstance(content, dict):
            raise LmforgeError(f"{path}:1: {KEY}: a DeepSpeed config must be a JSON object")
    _check_content(content, where)
    return content


def _get(tree: dict[str, Any], path: str, default: Any = None) -> Any:
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, dict):
        return [leaf for key, value in tree.items() for leaf in _leaves(value, f"{prefix}{key}.")]
    return [(prefix[:-1], tree)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_content(ds: dict[str, Any], where: _Where) -> None:
    for path in MAPPING_KEYS:
        value = _get(ds, path)
        if value is not None and not isinstance(value, dict):
            raise where.error(path, "must be a JSON object", value)
    for block, known in [("", KNOWN_KEYS), *BLOCK_KEYS.items()]:
        for key in (_get(ds, block) if block else ds) or {}:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise where.error(f"{block}.{key}" if block else key, f"unknown DeepSpeed config key{hint}")

    stage = _get(ds, "zero_optimization.stage", 0)
    if stage not in (0, 1, 2, 3) or isinstance(stage, bool):
        raise where.error("zero_optimization.stage", "the ZeRO stage must be 0, 1, 2 or 3", stage)

    for path, value in _leaves(ds):
        if value == "auto":
            if path not in AUTO_KEYS:
                raise where.error(
                    path,
                    'transformers fills "auto" only for batch sizes, gradient_clipping, '
                    "fp16/bf16.enabled, optimizer lr/betas/eps/weight_decay, scheduler warmup "
                    "and step counts, and the ZeRO bucket sizes; give a value",
                    value,
                )
            if path in STAGE3_ONLY and stage != 3:
                raise where.error(
                    path,
                    f'transformers fills this "auto" only under ZeRO stage 3 (stage is {stage}); give a value',
                    value,
                )
        elif path in NUMERIC_KEYS and not _is_number(value):
            auto = ' or "auto"' if path in AUTO_KEYS else ""
            raise where.error(path, f"must be a number{auto}", value)
        elif path in ("fp16.enabled", "bf16.enabled") and not isinstance(value, bool):
            raise where.error(path, 'must be true, false or "auto"', value)
        elif path == "optimizer.params.betas" and not (
            isinstance(value, list) and len(value) == 2 and all(map(_is_number, value))
        ):
            raise where.error(path, 'must be two numbers or "auto"', value)

    if _get(ds, "fp16.enabled") is True and _get(ds, "bf16.enabled") is True:
        raise where.error(
            "bf16.enabled",
            'fp16.enabled and bf16.enabled are both true; enable one (or set both to "auto" to follow train.precision)',
            True,
        )


# --------------------------------------------------------------------------- lmforge vs the JSON


def _source(config: Config) -> str:
    value = config.train.deepspeed
    return value if isinstance(value, str) else "the inline mapping"


def check_replaced_blocks(ds_config: dict[str, Any], config: Config) -> None:
    """Refuse an `optimizer`/`scheduler` block that would silently replace a different
    train.optimizer / train.schedule (see the module docstring for why it replaces them)."""
    source, train = _source(config), config.train
    optimizer = ds_config.get("optimizer")
    if optimizer is not None:
        kind = str(optimizer.get("type", ""))
        fix = f"remove the 'optimizer' block from {source}"
        if train.optimizer.name != "adamw":
            raise LmforgeError(
                f"{KEY}: {source} has an 'optimizer' block ({kind}), which replaces lmforge's "
                f"optimizer: train.optimizer.name {train.optimizer.name} would not be used; {fix}"
            )
        adamw = kind.lower() == "adamw" or (
            kind.lower() == "adam" and _get(optimizer, "params.adam_w_mode", True) is True
        )
        if not adamw:
            raise LmforgeError(
                f"{KEY}: {source}'s 'optimizer' block is {kind or 'untyped'}, which replaces "
                f'train.optimizer adamw; use "type": "AdamW" or {fix}'
            )
        if config.model.freeze_embeddings and train.optimizer.weight_decay > 0:
            raise LmforgeError(
                f"{KEY}: {source}'s 'optimizer' block decays every trainable parameter, which moves "
                f"the frozen embedding rows (model.freeze_embeddings with train.optimizer.weight_decay "
                f"{train.optimizer.weight_decay:g}); {fix}"
            )

    scheduler = ds_config.get("scheduler")
    if scheduler is not None:
        kind, params = str(scheduler.get("type", "")), scheduler.get("params") or {}
        name, fix = train.schedule.name, f"remove the 'scheduler' block from {source}"
        expected = DEEPSPEED_SCHEDULES.get(name)
        if expected is None:
            raise LmforgeError(
                f"{KEY}: {source} has a 'scheduler' block ({kind}), which replaces train.schedule, "
                f"and DeepSpeed has no {name} schedule; {fix} (lmforge's schedule then drives the "
                f"optimizer under DeepSpeed)"
            )
        if kind != expected:
            raise LmforgeError(
                f"{KEY}: {source}'s 'scheduler' block {kind or 'untyped'} replaces train.schedule "
                f"{name}, which DeepSpeed writes as {expected}; change its type or {fix}"
            )
        has_warmup = (train.schedule.warmup_steps or 0) > 0 or (
            train.schedule.warmup_steps is None and train.schedule.warmup_ratio > 0
        )
        if has_warmup and params.get("warmup_type") != "linear":
            shown = params.get("warmup_type", "log (DeepSpeed's default)")
            raise LmforgeError(
                f"{KEY}: {source}'s 'scheduler' block warms up with warmup_type {shown}, "
                f'train.schedule {name} linearly; set "warmup_type": "linear" or {fix}'
            )
        if name == "cosine":
            ratio = params.get("cos_min_ratio", WARMUP_COSINE_MIN_RATIO)
            if not math.isclose(ratio, train.schedule.min_lr_ratio, abs_tol=1e-12):
                raise LmforgeError(
                    f"{KEY}: {source}'s WarmupCosineLR ends at cos_min_ratio {ratio:g}, "
                    f"train.schedule.min_lr_ratio is {train.schedule.min_lr_ratio:g}; set "
                    f'"cos_min_ratio": {train.schedule.min_lr_ratio:g} or {fix}'
                )


# --------------------------------------------------------------------------- "auto" values


def _fill_arguments(config: Config) -> dict[str, Any]:
    """TrainingArguments values transformers reads to fill "auto" that lmforge's own
    training arguments don't carry (lmforge builds its optimizer and schedule itself)."""
    optimizer, schedule = config.train.optimizer, config.train.schedule
    kwargs: dict[str, Any] = {
        "weight_decay": optimizer.weight_decay,
        # TrainingArguments reads a value below 1 as a ratio of the total steps, like lmforge
        "warmup_steps": schedule.warmup_steps if schedule.warmup_steps is not None else schedule.warmup_ratio,
    }
    if optimizer.name == "adamw":  # an optimizer block is refused for the others
        kwargs.update(adam_beta1=optimizer.betas[0], adam_beta2=optimizer.betas[1], adam_epsilon=optimizer.eps)
    return kwargs


def deepspeed_training_arguments(ds_config: dict[str, Any], config: Config) -> dict[str, Any]:
    """Keyword arguments to add to lmforge's TrainingArguments for a DeepSpeed run: the
    config itself ("auto" kept: the Trainer fills it) and the values it fills from."""
    check_replaced_blocks(ds_config, config)
    return {"deepspeed": ds_config, **_fill_arguments(config)}


class _TrainerArgs(SimpleNamespace):
    """The TrainingArguments attributes transformers' filling code reads, for any world
    size (a real TrainingArguments takes its world size from the running processes)."""

    get_warmup_steps = TrainingArguments.get_warmup_steps


def _trainer_args(config: Config, world_size: int) -> _TrainerArgs:
    from lmforge.train.pipeline import gradient_accumulation  # the pipeline imports this module

    train = config.train
    # the values lmforge's training_arguments passes (tests/train/test_deepspeed.py compares)
    return _TrainerArgs(
        world_size=world_size,
        per_device_train_batch_size=train.micro_batch_size,
        gradient_accumulation_steps=gradient_accumulation(train.global_batch_size, train.micro_batch_size, world_size),
        max_grad_norm=train.max_grad_norm,
        learning_rate=train.optimizer.lr,
        fp16=train.precision == "fp16",
        bf16=train.precision == "bf16",
        fp16_full_eval=False,
        bf16_full_eval=False,
        save_on_each_node=False,
        # TrainingArguments' defaults, unless lmforge's optimizer sets them
        **{
            "adam_beta1": TrainingArguments.adam_beta1,
            "adam_beta2": TrainingArguments.adam_beta2,
            "adam_epsilon": TrainingArguments.adam_epsilon,
            **_fill_arguments(config),
        },
    )


class _TrainerFill(HfTrainerDeepSpeedConfig, AccelerateDeepSpeedConfig):
    """transformers' HfTrainerDeepSpeedConfig on accelerate's config reader. Its own
    __init__ is skipped: it demands the deepspeed package and registers the config
    process-wide (is_deepspeed_zero3_enabled() would turn true for model loading)."""

    def __init__(self, config: dict[str, Any]):
        AccelerateDeepSpeedConfig.__init__(self, config)  # deep-copies the mapping
        self._dtype = None
        self.mismatches: list[str] = []


def _model_stub(config: Config) -> SimpleNamespace | None:
    """Something with the model's `.config`, for transformers' hidden-size lookup; None
    when the model is not on this disk (its "auto" bucket sizes are filled at train time)."""
    if config.model.name_or_path is None:
        return SimpleNamespace(config=SimpleNamespace(hidden_size=config.model.size.hidden_size))
    if not (Path(config.model.name_or_path) / "config.json").is_file():
        return None
    from transformers import AutoConfig

    try:
        return SimpleNamespace(
            config=AutoConfig.from_pretrained(
                config.model.name_or_path, trust_remote_code=config.model.trust_remote_code
            )
        )
    except (OSError, ValueError):
        return None


def _set_aside(tree: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """Blank out `paths` (None is neither "auto" nor a value transformers compares), keeping
    the key order; returns the values for _put_back."""
    removed = {}
    for path in paths:
        *parents, last = path.split(".")
        node = _get(tree, ".".join(parents)) if parents else tree
        if isinstance(node, dict) and last in node:
            removed[path], node[last] = node[last], None
    return removed


def _put_back(tree: dict[str, Any], removed: dict[str, Any]) -> None:
    for path, value in removed.items():
        *parents, last = path.split(".")
        (_get(tree, ".".join(parents)) if parents else tree)[last] = value


# transformers' names in its mismatch list -> the lmforge keys they come from
_LMFORGE_NAMES = {
    "per_device_train_batch_size": "train.micro_batch_size",
    "gradient_accumulation_steps": "train.global_batch_size / (micro_batch_size x processes)",
    "train_batch_size (calculated)": "train.global_batch_size",
    "max_grad_norm": "train.max_grad_norm",
    "learning_rate": "train.optimizer.lr",
    "adam_beta1+adam_beta2": "train.optimizer.betas",
    "adam_epsilon": "train.optimizer.eps",
    "weight_decay": "train.optimizer.weight_decay",
    "fp16|fp16_full_eval": "train.precision",
    "bf16|bf16_full_eval": "train.precision",
    "num_training_steps (calculated)": "the total optimizer steps",
    "warmup_steps": "train.schedule warmup",
}
_MISMATCH = re.compile(r"^- ds (\S+)=(.*) vs hf (.+?)=(.*)$")


def _describe_mismatch(line: str) -> str:
    match = _MISMATCH.match(line)
    if not match:
        return line.lstrip("- ")
    ds_key, ds_value, hf_key, hf_value = match.groups()
    return f"{ds_key} = {ds_value} but {_LMFORGE_NAMES.get(hf_key, hf_key)} gives {hf_value}"


def resolve_deepspeed_config(
    ds_config: dict[str, Any], config: Config, world_size: int, total_steps: int | None = None
) -> dict[str, Any]:
    """`ds_config` with its "auto" values filled as the Trainer will fill them for a run of
    `config` on `world_size` processes, by transformers' own HfTrainerDeepSpeedConfig.

    Values that need what is not known here stay "auto": the ZeRO bucket sizes when the
    model's config.json is not on this disk, the scheduler's step counts when
    `total_steps` is None. Explicit values that disagree with the config are an error (the
    Trainer would stop on them once the model is loaded).
    """
    check_replaced_blocks(ds_config, config)
    args = _trainer_args(config, world_size)
    fill = _TrainerFill(ds_config)
    model = _model_stub(config)
    later = [key for key in HIDDEN_SIZE_KEYS if model is None and fill.is_auto(key)]
    if total_steps is None:
        later.append("scheduler.params.total_num_steps")
        if 0 < args.warmup_steps < 1:  # a ratio of the unknown total
            later.append("scheduler.params.warmup_num_steps")
    removed = _set_aside(fill.config, later)
    fill.trainer_config_process(args)
    try:
        # transformers reads the model only for a hidden-size "auto"; any set aside need none
        fill.trainer_config_finalize(args, model, total_steps or 0)
    except ValueError as exc:  # the mismatches below, or a model config without a hidden size
        if not fill.mismatches:
            raise LmforgeError(f"{KEY}: {_source(config)}: {' '.join(str(exc).split())}") from exc
    _put_back(fill.config, removed)
    if fill.mismatches:
        found = "; ".join(_describe_mismatch(line) for line in fill.mismatches)
        raise LmforgeError(f'{KEY}: {_source(config)} disagrees with the lmforge config: {found}; set these to "auto"')
    return fill.config


# --------------------------------------------------------------------------- lmforge config show


def _total_steps(config: Config) -> tuple[int | None, str]:
    """Total optimizer steps when they can be counted from local files, and how."""
    from lmforge.train.steps import estimate_total_steps

    if config.train.max_steps:
        return config.train.max_steps, "train.max_steps"
    if not config.data.datasets:
        return None, "no data.datasets"
    for entry in config.data.datasets:
        if not Path(entry.path).is_file():  # a folder or hub dataset: counting it may download
            return None, f"{entry.path} is not a local data file"
    try:
        return estimate_total_steps(config), "estimated from data.datasets"
    except (LmforgeError, OSError) as exc:
        return None, str(exc)


def deepspeed_summary(config: Config, world_size: int) -> str:
    """The `# deepspeed` block `lmforge config show` prints after the config."""
    ds = load_deepspeed_config(config.train.deepspeed)
    total, how = _total_steps(config)
    resolved = resolve_deepspeed_config(ds, config, world_size, total)
    processes = f"{world_size} process{'es' if world_size != 1 else ''}"
    lines = [
        f"# deepspeed (resolved for {processes}): {_source(config)}",
        f"# total optimizer steps: {total} ({how})" if total else f"# total optimizer steps unknown: {how}",
    ]
    pending = [path for path, value in _leaves(resolved) if value == "auto"]
    if pending:
        lines.append(f'# still "auto", filled when training starts: {", ".join(pending)}')
    return "\n".join(lines) + "\n" + json.dumps(resolved, indent=2) + "\n"
