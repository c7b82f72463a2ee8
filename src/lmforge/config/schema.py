"""The typed run configuration. Unknown keys are errors; every field has a sane default.

Only the entry point (cli / pipeline functions) reads this object; builders below it take
plain arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator


from lmforge.models.presets import PRESETS as MODEL_PRESETS
from lmforge.models.presets import resolve_preset
from lmforge.objectives.registry import OBJECTIVES
from lmforge.strict import Probability, Strict, tagged_union  # noqa: F401 (Strict: re-exported)


# --------------------------------------------------------------------------- model


class ModelSize(Strict):
    """Size of a freshly built model (used when `model.name_or_path` is not given)."""

    hidden_size: int = Field(256, gt=0)
    num_layers: int = Field(4, gt=0)
    num_heads: int = Field(4, gt=0)
    num_kv_heads: int | None = Field(None, gt=0)
    intermediate_size: int | None = Field(None, gt=0)
    head_dim: int | None = Field(None, gt=0)
    """Width of one attention head (default: hidden_size / num_heads); llama, mistral, cohere."""
    max_position_embeddings: int = Field(2048, gt=0)
    vocab_size: int | None = Field(None, gt=0)
    """Embedding rows (default: the tokenizer's length); more rows than tokens are unused."""
    tie_word_embeddings: bool = True

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelSize:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.num_kv_heads and self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not divisible by num_kv_heads {self.num_kv_heads}")
        return self


class AdapterConfig(Strict):
    """A LoRA or DoRA adapter trained through peft on a frozen base (docs/methods.md)."""

    type: Literal["lora", "dora"] = "lora"
    r: int = Field(16, gt=0)
    """Rank of the low-rank update."""
    alpha: float = Field(32.0, gt=0.0)
    """The update is scaled by alpha / r (alpha / sqrt(r) with rslora): changing alpha
    changes the effective learning rate by the same factor (seed 002)."""
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: Union[Literal["all-linear"], list[str]] = "all-linear"  # noqa: UP007
    """Linear layers that get an adapter: every linear layer but the output head, or module
    names (e.g. [q_proj, v_proj]); each name must match some module."""
    rslora: bool = False
    """Rank-stabilized LoRA: scale by alpha / sqrt(r)."""
    modules_to_save: list[str] = Field(default_factory=list)
    """Modules trained in full and saved with the adapter (e.g. [lm_head])."""

    @field_validator("target_modules")
    @classmethod
    def _some_targets(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("give at least one module name, or 'all-linear'")
        return value


class QuantizationConfig(Strict):
    """A bitsandbytes-quantized frozen base for QLoRA (needs lmforge[qlora])."""

    bits: Literal[4, 8] = 4
    type: Literal["nf4", "fp4"] = "nf4"
    """4-bit data type (NormalFloat4 as in QLoRA, or FP4)."""
    double_quant: bool = True
    """Quantize the quantization constants too (QLoRA's double quantization)."""
    compute_dtype: Literal["bf16", "fp32"] = "bf16"
    """Dtype of the dequantized weights in each matmul."""


class ModelConfig(Strict):
    name_or_path: str | None = None
    """A local Hugging Face causal-LM directory, a .gguf file (dequantized on load), an
    lmforge adapter model directory (its adapter keeps training), or a hub name when online."""
    preset: Literal["palm-tiny", "palm-150m", "palm-410m", "palm-1b"] | None = None
    """A PaLM-style model (palm-tiny, palm-150m, palm-410m, palm-1b; DESIGN 3.13): sets
    model.architecture (cohere) and model.size, which may only repeat its values."""
    architecture: Literal["llama", "gpt2", "gpt_neox", "qwen2", "mistral", "cohere"] = "llama"
    """Architecture of a freshly built model (only when name_or_path is empty)."""
    size: ModelSize = ModelSize()
    tokenizer: str | None = None
    """Tokenizer directory; defaults to name_or_path. Required for a fresh model."""
    trust_remote_code: bool = False
    """Let a hub model run its own modelling code (logged when on)."""
    allow_pickle: bool = False
    """Load pickled weights (.bin, .pt) when a model has no safetensors; a pickle can run code."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    freeze_embeddings: bool = False
    """Freeze input and output embeddings; rows of tokens added by lmforge stay trainable."""
    attn_implementation: str | None = None
    adapter: AdapterConfig | None = None
    """Train a LoRA/DoRA adapter instead of every weight; empty: full finetuning."""
    quantization: QuantizationConfig | None = None
    """Load the frozen base quantized (QLoRA); needs model.adapter."""

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data):
        if isinstance(data, dict) and data.get("preset") in MODEL_PRESETS:
            return resolve_preset(data)
        return data

    @model_validator(mode="after")
    def _has_a_source(self) -> ModelConfig:
        if self.name_or_path is None and self.tokenizer is None:
            raise ValueError("give model.name_or_path, or model.tokenizer for a freshly built model")
        if self.quantization is not None and self.adapter is None:
            raise ValueError("quantization: a quantized base trains only through an adapter; set model.adapter too")
        return self


# --------------------------------------------------------------------------- data


DatasetFormat = Literal[
    "auto",
    "messages",
    "sharegpt",
    "oasst_trees",
    "oasst_messages",
    "alpaca",
    "dolly",
    "reddit_instruct",
    "cot",
    "tinycot",
    "gsm8k",
    "arc",
    "translation",
    "text",
    "pairs",
]


class FormatOptions(Strict):
    """Options of particular record formats (each names the formats it applies to)."""

    calculator: Literal["strip", "keep"] = "strip"
    """gsm8k: remove or keep calculator annotations like <<48/2=24>>."""
    threads: Literal["best", "all"] = "best"
    """oasst_*: the best-ranked path of each tree, or every root-to-leaf path."""
    keep_synthetic: bool = False
    """oasst_*: keep threads through synthetic (model-written) messages."""
    strip_citations: bool = True
    """dolly: remove citation markers like [42] from the context."""
    direction: str | None = Field(None, pattern=r"^[A-Za-z_]+-[A-Za-z_]+$")
    """translation: source-target language codes, e.g. zh-en (from Chinese into English)."""
    arc_answer: Literal["both", "letter", "text"] = "both"
    """arc: the response is 'B. text', 'B' or 'text'."""
    min_score: int | None = None
    """reddit_instruct: drop comments scored below this."""
    text_field: str = "text"
    """text: the field holding the document."""


class DatasetEntry(Strict):
    path: str
    """A data file (.jsonl/.json/.csv, optionally .gz/.zst, or .parquet), a Hugging Face
    dataset folder, or a hub name. data.streaming also reads tokenized shards (`lmforge data
    prepare --tokenize`): a `.ds` file, or a folder holding them (tokens/<source>/)."""
    name: str | None = None
    """How reports and data.stages refer to this dataset (default: the file name)."""
    format: DatasetFormat = "auto"
    options: FormatOptions = FormatOptions()
    subset: str | None = None
    """Hugging Face dataset configuration (e.g. 'main' for openai/gsm8k)."""
    split: str = "train"
    """Hugging Face dataset split to read."""
    lang: str | None = None
    """Keep only records in these languages, comma separated ('en,de'); records that carry
    no language are kept."""
    on_bad_record: Literal["error", "skip"] = "error"
    encoding_errors: Literal["strict", "replace"] = "strict"
    """Invalid UTF-8: an error naming the byte offset, or U+FFFD replacement."""
    val_split: float = Field(0.05, ge=0.0, lt=1.0)
    """Share held out for validation. data.streaming: the documents whose text (token ids,
    for tokenized shards) hashes into this share (default there 0: none); max_val_set of
    them (default 256) are scored."""
    test_split: float = Field(0.0, ge=0.0, lt=1.0)
    max_train_set: int | None = Field(None, gt=0)
    max_val_set: int | None = Field(None, ge=0)
    weight: float | None = Field(None, ge=0.0)
    """Share of the training mix (normalized over datasets); without weights the mix is
    every dataset's whole train split."""
    priority: Literal["high", "medium", "low"] | None = Field(None, exclude=True)
    """Instead of a weight: high, medium and low are weights 4, 2 and 1 before
    normalization (data/mixing.py PRIORITY_WEIGHTS); the saved config holds the weight."""
    min_chars: int | None = Field(None, ge=0)
    """Drop examples whose trained text is shorter than this many characters."""
    max_chars: int | None = Field(None, gt=0)
    """Drop examples whose whole text is longer than this many characters."""

    @field_validator("lang")
    @classmethod
    def _languages(cls, value: str | None) -> str | None:
        if value is not None and not [code for code in value.split(",") if code.strip()]:
            raise ValueError("give at least one language code, e.g. 'en,de'")
        return value

    @model_validator(mode="before")
    @classmethod
    def _priority_sets_weight(cls, data):
        if isinstance(data, dict) and data.get("priority") is not None:
            from lmforge.data.mixing import PRIORITY_WEIGHTS

            if data.get("weight") is not None:
                raise ValueError("give a weight or a priority, not both")
            if data["priority"] in PRIORITY_WEIGHTS:  # an unknown priority is the Literal's error
                data = {**data, "weight": PRIORITY_WEIGHTS[data["priority"]]}
        return data

    @model_validator(mode="after")
    def _splits_leave_train(self) -> DatasetEntry:
        if self.val_split + self.test_split >= 1.0:
            raise ValueError("val_split + test_split must leave some data for training")
        return self


class DedupConfig(Strict):
    """Duplicate removal before the split, within and across datasets."""

    exact: bool = True
    """Drop examples whose normalized text (case, whitespace, punctuation) was seen before."""
    near: bool = True
    """Drop near-duplicates: MinHash LSH over word n-grams (datasketch)."""
    threshold: float = Field(0.8, gt=0.0, le=1.0)
    """Estimated Jaccard similarity at which two examples count as near-duplicates."""
    num_perm: int = Field(128, ge=16)
    ngram: int = Field(5, ge=1)


class DecontaminateConfig(Strict):
    """Benchmark decontamination (data/decontaminate.py): drop training examples that share
    a word n-gram with an evaluation set, in `lmforge train`/`data inspect` and in
    `lmforge data prepare`."""

    sets: list[str] = Field(min_length=1)
    """Evaluation sets as local files (.jsonl/.json/.csv/.parquet, optionally .gz/.zst, or
    .txt with one item a line): every text field of every record is indexed."""
    ngram: int = Field(13, ge=3)
    """Words per n-gram (13, as GPT-3); a text field shorter than this contributes none."""


class StageEntry(Strict):
    """One stage of a multi-stage schedule: its own training mix."""

    name: str
    weights: dict[str, float]
    """Dataset name -> weight; datasets not named are left out of this stage."""
    mix_size: int | None = Field(None, gt=0)
    """Training examples in this stage (default: as many as the stage's datasets hold)."""
    tokens: int | None = Field(None, gt=0)
    """data.streaming: this stage's budget in training tokens (rounded up to whole optimizer
    steps of train.global_batch_size x data.max_length tokens)."""
    steps: int | None = Field(None, gt=0)
    """data.streaming: this stage's budget in optimizer steps (instead of tokens). Every stage
    but the last needs a budget; the last runs the steps left to train.max_steps."""
    lr_scale: float = Field(1.0, gt=0.0)
    """data.streaming: the learning rate of this stage's steps is train.schedule's (which spans
    the whole run) times this."""

    @model_validator(mode="after")
    def _one_budget(self) -> StageEntry:
        if self.tokens is not None and self.steps is not None:
            raise ValueError("give tokens or steps, not both")
        return self


PromptFormatName = Literal["remask", "openassistant", "chat_template", "chatml", "alpaca", "instruction", "qa"]


class DataConfig(Strict):
    datasets: list[DatasetEntry] = Field(default_factory=list)
    prompt_format: PromptFormatName = "remask"
    format_augmentation: list[PromptFormatName] = Field(default_factory=list)
    """Render each training example in a format drawn from this list (deterministic by
    seed); validation and the saved model use prompt_format."""
    max_length: int = Field(512, gt=8)
    overlength: Literal["truncate", "drop"] = "drop"
    """What to do with an example longer than max_length tokens."""
    dedup: DedupConfig = DedupConfig()
    decontaminate: DecontaminateConfig | None = None
    """Drop training examples sharing a long n-gram with these evaluation sets."""
    mix_size: int | None = Field(None, gt=0)
    """Training examples drawn by the dataset weights (default: all the datasets hold)."""
    stages: list[StageEntry] = Field(default_factory=list)
    packing: Literal[False, True, "split"] = False
    """Pack several examples into each max_length row (position ids restart per example;
    attention stays within each example). true: whole examples, best fit. split (plain
    text only): the examples concatenated in data order and cut into rows of exactly
    max_length tokens, the last shorter; a piece starting a row restarts its positions and
    is not trained on its first token. Split cuts long examples instead of applying
    data.overlength, and packs the validation examples the same way."""
    streaming: bool = False
    """Pretraining on plain text streamed from the datasets (README "Pretraining: streaming
    mixtures and stages"): rows of max_length tokens packed on the fly, memory flat in the
    corpus size, resumable mid-stream; needs train.max_steps."""
    fill: Literal["source", "mix"] = "source"
    """data.streaming: `source` fills each row from one source drawn by weight (MPT-1B's
    rule, seed 003); `mix` draws the source of each document."""
    isolate_documents: bool = True
    """data.streaming: position ids restart at each document, so attention stays within it;
    false: each row is one causal sequence across its documents."""

    @model_validator(mode="before")
    @classmethod
    def _stream_holds_out_when_asked(cls, data):
        # a stream holds documents out only when a dataset sets val_split (data/mixture.py):
        # the 5% default would take 5% of a corpus from training for a validation set of a
        # few hundred documents
        if isinstance(data, dict) and data.get("streaming") is True and isinstance(data.get("datasets"), list):
            data = {
                **data,
                "datasets": [{"val_split": 0.0, **d} if isinstance(d, dict) else d for d in data["datasets"]],
            }
        return data

    @model_validator(mode="after")
    def _streaming_keys(self) -> DataConfig:
        kinds = {entry.priority is not None for entry in self.datasets if entry.weight is not None}
        if len(kinds) > 1:
            raise ValueError("data.datasets: give every dataset a weight or every dataset a priority, not a mix")
        for index, stage in enumerate(self.stages):
            budget = "tokens" if stage.tokens is not None else "steps" if stage.steps is not None else None
            if not self.streaming and (budget or stage.lr_scale != 1.0):
                key = budget or "lr_scale"
                raise ValueError(f"data.stages[{index}].{key}: only with data.streaming: true (use mix_size)")
            if self.streaming and stage.mix_size is not None:
                raise ValueError(f"data.stages[{index}].mix_size: streaming stages take tokens or steps")
        if not self.streaming:
            from lmforge.data.shards import is_token_shards

            for index, entry in enumerate(self.datasets):
                if is_token_shards(entry.path):
                    raise ValueError(
                        f"data.datasets[{index}].path: {entry.path} holds tokenized shards (lmforge data prepare "
                        "--tokenize), which only data.streaming: true reads; set it, or give the text shards"
                    )
        if self.streaming and self.mix_size is not None:
            raise ValueError("data.mix_size: streaming draws rows until train.max_steps; remove data.mix_size")
        if self.streaming and self.packing:
            raise ValueError("data.packing: streaming rows are always packed; remove data.packing")
        if self.streaming and self.decontaminate is not None:
            # the stream reads documents as they come (data/stream_reader.py) and drops none
            raise ValueError(
                "data.decontaminate: not applied with data.streaming: true; decontaminate the corpus with "
                "`lmforge data prepare` and stream its shards, or remove data.decontaminate"
            )
        return self


# --------------------------------------------------------------------------- training


# Each objective declares its settings next to its loss (objectives/registry.py).
Objective = tagged_union(*(spec.config for spec in OBJECTIVES.values()), default="ce")
OBJECTIVE_CONFIGS: dict[str, type[Strict]] = {name: spec.config for name, spec in OBJECTIVES.items()}


class AdamWConfig(Strict):
    name: Literal["adamw"] = "adamw"
    lr: float = Field(1e-5, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0.0)


class AdaliteConfig(Strict):
    """pytorch-optimizer's Adalite (seed 000); its weight_decay is the source's "Lambda"."""

    name: Literal["adalite"]
    lr: float = Field(1e-5, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    g_norm_min: float = Field(1e-10, gt=0.0)
    ratio_min: float = Field(1e-4, ge=0.0)
    tau: float = Field(1.0, gt=0.0)
    eps1: float = Field(1e-6, gt=0.0)
    eps2: float = Field(1e-10, gt=0.0)


class LilithConfig(Strict):
    """Lilith (seed 004; docs/methods.md), implemented in lmforge.optim.lilith."""

    name: Literal["lilith"]
    lr: float = Field(1e-5, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    eps: float = Field(1e-8, gt=0.0)
    beta1_m: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    beta2_m: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.99
    beta_v: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.999
    g_norm_min: float = Field(1e-4, gt=0.0)
    ratio_min: float = Field(1e-4, ge=0.0)
    acceleration: float = 1.0
    ema_k: int = Field(0, ge=0)
    ema_beta: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.99


OptimizerConfig = tagged_union(AdamWConfig, AdaliteConfig, LilithConfig, default="adamw")


class _Warmup(Strict):
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    """Warmup as a fraction of all optimizer steps (seed 000: 0.2)."""
    warmup_steps: int | None = Field(None, ge=0)
    """Warmup as a number of steps (seed 001: 2000); overrides warmup_ratio."""


class CosineSchedule(_Warmup):
    name: Literal["cosine"] = "cosine"
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)


class LinearSchedule(_Warmup):
    name: Literal["linear"]


class ConstantSchedule(_Warmup):
    name: Literal["constant"]


class OneCycleSchedule(_Warmup):
    """One-cycle cosine without cycle momentum (seed 004); warmup = the rising phase."""

    name: Literal["one_cycle"]
    div_factor: float = Field(25.0, gt=0.0)
    final_div_factor: float = Field(1e4, gt=0.0)


class SigmoidSchedule(_Warmup):
    """Sigmoid warmup: starts slow, rapidly accelerates, then stabilizes (seed 002)."""

    name: Literal["sigmoid"]
    steepness: float = Field(10.0, gt=0.0)
    decay: Literal["none", "cosine"] = "none"


class WSDSchedule(_Warmup):
    """Warmup-stable-decay."""

    name: Literal["wsd"]
    decay_ratio: float = Field(0.1, gt=0.0, lt=1.0)
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)
    decay_type: Literal["cosine", "linear", "1-sqrt"] = "cosine"


ScheduleConfig = tagged_union(
    CosineSchedule, LinearSchedule, ConstantSchedule, OneCycleSchedule, SigmoidSchedule, WSDSchedule, default="cosine"
)


class EvalTaskEntry(Strict):
    """A task evaluated during training (lmforge eval's options; docs/commands/eval.md)."""

    task: str
    """A task data file or a known task name, as for `lmforge eval --task`."""
    every: int = Field(gt=0)
    """Evaluate every this many optimizer steps."""
    shots: int = Field(0, ge=0)
    format: str | None = None
    """Prompt format: plain or a data.prompt_format name (default: the one being trained)."""
    fewshot_seed: int = 1234
    """Seed of the few-shot draws (lmforge eval --fewshot-seed)."""
    fewshot_sampler: Literal["harness", "per-item", "first_n"] | None = None
    """How few-shot examples are drawn (lmforge eval --fewshot-sampler); default: the task's own."""
    fewshot_file: str | None = None
    limit: int | None = Field(None, gt=0)
    batch_size: int = Field(16, gt=0)
    max_new_tokens: int | None = Field(None, gt=0)
    """Generation limit; default: the task's own (BBH 1024), else 256."""
    langs: str | None = None


class FSDPConfig(Strict):
    """FSDP2 (PyTorch's fully_shard), through the Trainer's FSDP support (accelerate).
    Launch with torchrun or accelerate launch; parameters, gradients and optimizer state are
    sharded over the processes."""

    reshard_after_forward: bool = True
    """Free each layer's gathered parameters after its forward (ZeRO-3-like, least memory);
    false keeps them until the backward (ZeRO-2-like, less communication)."""
    transformer_layer_cls_to_wrap: list[str] | None = None
    """Module classes sharded as one unit (default: the model's own `_no_split_modules`,
    e.g. LlamaDecoderLayer)."""
    cpu_offload: bool = False
    """Keep sharded parameters and optimizer state in CPU memory between uses."""
    state_dict_type: Literal["FULL_STATE_DICT", "SHARDED_STATE_DICT"] = "FULL_STATE_DICT"
    """How checkpoints are written: one full state dict, or one shard per process."""


class TrainConfig(Strict):
    objective: Objective = Field(default_factory=lambda: OBJECTIVES["ce"].config())
    optimizer: OptimizerConfig = AdamWConfig()
    schedule: ScheduleConfig = CosineSchedule()
    global_batch_size: int = Field(128, gt=0)
    """Examples per optimizer step, over all processes and accumulation steps."""
    micro_batch_size: int = Field(8, gt=0)
    """Examples per forward pass on one process."""
    epochs: float = Field(1.0, gt=0.0)
    max_steps: int | None = Field(None, gt=0)
    """Stop after this many optimizer steps (overrides epochs)."""
    max_grad_norm: float = Field(1.0, ge=0.0)
    eval_every: int | None = Field(None, gt=0)
    save_every: int | None = Field(None, gt=0)
    save_total_limit: int = Field(2, gt=0)
    logging_steps: int = Field(10, gt=0)
    max_consecutive_nonfinite: int = Field(3, ge=0)
    """Stop the run when more than this many updates in a row have a NaN/inf loss."""
    neftune_alpha: float | None = Field(None, gt=0.0)
    """NEFTune noise alpha (docs/methods.md; the seeds use 10); off when empty."""
    gradient_checkpointing: bool = False
    compile: bool = False
    """torch.compile the model's transformer body for training (one process or DDP): its
    elementwise ops fused into few kernels. The first steps pay the compilation (tens of
    seconds; cached on disk after); generation during training stays eager."""
    preemption_grace_s: float = Field(300.0, gt=0)
    """After SIGTERM/SIGINT the run finishes its step and saves a checkpoint; if that takes
    longer than this, the process ends without it (the previous checkpoint stays)."""
    measure_roof: bool = True
    """Time large matrix products for about 2 s at start-up, so the run summary can say
    which share of the machine's matmul throughput the training achieved."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Mixed precision (autocast): bf16 on CPU and GPU, fp16 (with loss scaling) on GPU
    only. The weights keep model.dtype."""
    fsdp: FSDPConfig | None = None
    """Shard the model over processes with FSDP2 (see FSDPConfig); empty: DDP when launched
    with several processes."""
    deepspeed: str | dict | None = None
    """A DeepSpeed config: a JSON file path or an inline mapping; "auto" values are filled
    from this config (lmforge config show prints them). Needs lmforge[deepspeed]."""
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(default_factory=list)
    dataloader_workers: int = Field(0, ge=0)
    eval_tasks: list[EvalTaskEntry] = Field(default_factory=list)
    """Tasks evaluated every N steps; scores join the training log as eval_<task>_<metric>."""

    @model_validator(mode="after")
    def _one_sharding_engine(self) -> TrainConfig:
        if self.fsdp is not None and self.deepspeed is not None:
            raise ValueError("train.fsdp and train.deepspeed are both set; choose one sharding engine")
        if self.compile and (self.fsdp is not None or self.deepspeed is not None):
            engine = "train.fsdp" if self.fsdp is not None else "train.deepspeed"
            raise ValueError(
                f"train.compile: not with {engine} (compiled sharded training is untested here); remove one"
            )
        return self


class BootstrapConfig(Strict):
    """Rationale bootstrapping (Memphis-CoT, docs/commands/bootstrap.md). The finetuning stage of each round
    uses the `train` section (objective `rank`, or another ranking objective such as dpo)
    and `data.max_length`."""

    rounds: int = Field(3, gt=0)
    samples: int = Field(8, ge=2)
    """N responses sampled per question."""
    temperature: float = Field(0.5, ge=0.0)
    top_p: float = Field(0.8, gt=0.0, le=1.0)
    max_new_tokens: int = Field(512, gt=0)
    backend: Literal["auto", "transformers", "vllm"] = "auto"
    generation_batch_size: int = Field(64, gt=0)
    """Sequences per generate call (questions per call = this // samples)."""
    verifier: str = "numeric"
    """numeric, math_verify, or module:function."""
    answer_fallbacks: list[str] = Field(default_factory=list)
    """Answer rules tried, in this order, on a response without the `<|answer|>` tag: names
    from lmforge.eval.answers.RULES (e.g. harness_strict, last_number), checked when the
    verifier is built."""
    max_empty_rounds: int = Field(2, gt=0)
    pairing: Literal["pairs", "groups"] = "pairs"
    """How verified responses are ranked: `pairs` (seed 000: (correct, incorrect) pairs, each
    response used once) or `groups` (per question, every correct response above every
    incorrect one, correct ones tied with each other)."""


class CardConfig(Strict):
    """Metadata of the model card (README.md) written next to every final model and export."""

    license: str | None = None
    """A Hugging Face license id (e.g. apache-2.0); empty: 'other' (check the base model's)."""
    language: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    """Extra tags (lmforge adds the objective, adapter and quantization ones)."""
    model_name: str | None = None
    """Title of the card (default: the run directory's name)."""


class RunConfig(Strict):
    output_dir: str = "runs/lmforge"
    seed: int = 42
    card: CardConfig = CardConfig()


class Config(Strict):
    run: RunConfig = RunConfig()
    model: ModelConfig
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    bootstrap: BootstrapConfig = BootstrapConfig()

    @model_validator(mode="after")
    def _adapters_shard_with_ddp(self) -> Config:
        if self.model.adapter is not None and self.train.fsdp is not None:
            # PyTorch's fully_shard fails on peft's wrapped layers (checked with torch 2.13 /
            # peft 0.21); an adapter's gradients and optimizer state are small anyway
            raise ValueError(
                "model.adapter: adapters train with DDP or train.deepspeed, not train.fsdp; remove train.fsdp"
            )
        return self

    @property
    def output_path(self) -> Path:
        return Path(self.run.output_dir)
