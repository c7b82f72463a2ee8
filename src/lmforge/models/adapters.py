"""LoRA / DoRA adapters through peft, on a base that may be quantized by bitsandbytes
(QLoRA; docs/methods.md).

peft does the wrapping, saving and loading; this module adds what lmforge's runs need
around it: one-line errors for targets that match nothing, rows of added tokens that train
(and are saved) with the adapter, the effective update scale in the log, and finding the
base an adapter directory was trained on.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmforge.errors import LmforgeError

ADAPTER_CONFIG_FILE = "adapter_config.json"
BASE_DIR = "base"
"""A freshly built base is saved here (in the run directory and in its model/), since no
other copy of it exists."""
COMPUTE_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
INSTALL_QLORA = "pip install 'lmforge[qlora]'"


def is_adapter_dir(path: str | Path | None) -> bool:
    return path is not None and (Path(path) / ADAPTER_CONFIG_FILE).is_file()


def require_bitsandbytes(key: str = "model.quantization") -> None:
    if importlib.util.find_spec("bitsandbytes") is None:
        raise LmforgeError(f"{key}: needs bitsandbytes, which is not installed ({INSTALL_QLORA})")


def quantization_config(spec: dict[str, Any]):
    """transformers' BitsAndBytesConfig for a model.quantization mapping."""
    require_bitsandbytes()
    from transformers import BitsAndBytesConfig

    if spec["bits"] == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=spec["type"],
        bnb_4bit_use_double_quant=spec["double_quant"],
        bnb_4bit_compute_dtype=COMPUTE_DTYPES[spec["compute_dtype"]],
    )


def is_quantized(model: nn.Module) -> bool:
    return getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)


def update_scale(spec: dict[str, Any]) -> float:
    """What multiplies the low-rank product B·A: alpha/r, or alpha/sqrt(r) with rsLoRA.
    It multiplies the update as the learning rate does, so changing alpha changes the
    effective learning rate (seed 002)."""
    return spec["alpha"] / (math.sqrt(spec["r"]) if spec["rslora"] else spec["r"])


def _is_linear(module: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    # bitsandbytes' Linear4bit / Linear8bitLt subclass nn.Linear
    return isinstance(module, (nn.Linear, Conv1D))


def linear_module_names(model: nn.Module) -> list[str]:
    """Distinct leaf names of the model's linear layers, output head excluded (what
    target_modules may name)."""
    head = model.get_output_embeddings()
    names = {
        name.rsplit(".", 1)[-1] for name, module in model.named_modules() if _is_linear(module) and module is not head
    }
    return sorted(names)


def check_target_modules(model: nn.Module, targets: str | list[str]) -> None:
    """Every listed name must match some module (peft would ignore a misspelt name as long
    as another one matches)."""
    if targets == "all-linear":
        if not linear_module_names(model):
            raise LmforgeError(f"model.adapter.target_modules: {type(model).__name__} has no linear layer to adapt")
        return
    names = [name for name, _ in model.named_modules()]
    for target in targets:
        if not any(name == target or name.endswith("." + target) for name in names):
            raise LmforgeError(
                f"model.adapter.target_modules: '{target}' matches no module of "
                f"{type(model).__name__}; its linear layers are {', '.join(linear_module_names(model))}"
            )


def _module_name(model: nn.Module, module: nn.Module) -> str:
    return next(name for name, candidate in model.named_modules() if candidate is module)


def added_token_rows(model: nn.Module, new_ids: list[int], modules_to_save: list[str]) -> dict[str, list[int]]:
    """peft trainable_token_indices for the rows of tokens lmforge added: they train and are
    saved with the adapter (a base loaded later is resized, and these rows come back from
    the adapter). The output head is listed only when it is not tied to the input
    embedding (peft follows a tied head itself); modules trained in full are left out."""
    if not new_ids:
        return {}
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    modules = [embedding]
    if head is not None and head.weight is not embedding.weight:
        modules.append(head)
    rows = {}
    for module in modules:
        name = _module_name(model, module)
        if not any(name == kept or name.endswith("." + kept) for kept in modules_to_save):
            rows[name] = list(new_ids)
    return rows


CPU_4BIT_ROWS = 32
"""bitsandbytes repacks 4-bit weights for its AVX512-BF16 CPU inference kernel in blocks
of 32 output rows, with one scale per quantization block of each row
(functional._convert_weight_packed_for_cpu)."""


def check_cpu_4bit_shapes(model: nn.Module) -> None:
    """Fail at load, not at the first evaluation, when a 4-bit layer's shape does not fit
    bitsandbytes' CPU inference kernel on this machine."""
    for name, module in model.named_modules():
        if not (getattr(module, "support_avx512bf16_for_cpu", False) and module.weight.device.type == "cpu"):
            continue
        blocksize = getattr(module.weight.quant_state, "blocksize", 64)
        if module.out_features % CPU_4BIT_ROWS or module.in_features % blocksize:
            raise LmforgeError(
                f"model.quantization: bitsandbytes' 4-bit CPU kernel needs output sizes divisible by {CPU_4BIT_ROWS} "
                f"and input sizes by {blocksize}, but {name} is {module.in_features} -> {module.out_features} "
                "(for a freshly built model size model.size accordingly, or use bits: 8)"
            )


def attach_adapter(model: nn.Module, spec: dict[str, Any], new_ids: list[int], gradient_checkpointing: bool):
    """Wrap `model` in a trainable peft adapter; the base stays frozen."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    check_target_modules(model, spec["target_modules"])
    if is_quantized(model):
        check_cpu_4bit_shapes(model)
        # fp32 norms and head, inputs that carry gradients: what a quantized base needs to train through
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    config = LoraConfig(
        r=spec["r"],
        lora_alpha=spec["alpha"],
        lora_dropout=spec["dropout"],
        target_modules=spec["target_modules"],
        use_rslora=spec["rslora"],
        use_dora=spec["type"] == "dora",
        modules_to_save=list(spec["modules_to_save"]) or None,
        trainable_token_indices=added_token_rows(model, new_ids, spec["modules_to_save"]) or None,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise LmforgeError(
            f"model.adapter: peft cannot wrap {type(model).__name__} this way: {str(exc).splitlines()[0]}"
        ) from exc


def trainable_summary(model: nn.Module, spec: dict[str, Any] | None) -> str:
    """'1,234 of 56,789 parameters train (2.17%)' plus the adapter's update scale."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(stored_numel(p) for p in model.parameters())
    line = f"{trainable:,} of {total:,} parameters train ({100 * trainable / max(total, 1):.2f}%)"
    if spec is not None:
        rule = (
            f"alpha/sqrt(r) = {spec['alpha']:g}/sqrt({spec['r']})"
            if spec["rslora"]
            else f"alpha/r = {spec['alpha']:g}/{spec['r']}"
        )
        line += f"; {spec['type']} r={spec['r']}, update scale {rule} = {update_scale(spec):.4g}"
    return line


def stored_numel(parameter: torch.Tensor) -> int:
    # a packed 4-bit weight stores two values per byte; count the values it holds
    shape = getattr(getattr(parameter, "quant_state", None), "shape", None)
    return math.prod(shape) if shape is not None else parameter.numel()


# --------------------------------------------------------------------------- loading


def adapter_settings(directory: Path) -> dict[str, Any]:
    return json.loads((directory / ADAPTER_CONFIG_FILE).read_text(encoding="utf-8"))


def adapter_base(directory: Path) -> str:
    """Where the base of the adapter in `directory` lies: its own base/ (a freshly built
    base travels with the model), the run's base/ for a checkpoint-N, else the path or hub
    name the adapter records."""
    for candidate in (directory / BASE_DIR, directory.parent / BASE_DIR):
        if (candidate / "config.json").is_file():
            return str(candidate)
    recorded = adapter_settings(directory).get("base_model_name_or_path")
    if not recorded:
        raise LmforgeError(
            f"{directory / ADAPTER_CONFIG_FILE}: records no base_model_name_or_path and no {BASE_DIR}/ "
            "directory lies beside it"
        )
    return recorded


def resize_for(model: nn.Module, vocabulary: int) -> None:
    """Grow a base to the trained tokenizer's size; the added rows are then loaded from
    the adapter (trainable tokens), so their initial values do not matter."""
    if model.get_input_embeddings().weight.shape[0] < vocabulary:
        model.resize_token_embeddings(vocabulary, mean_resizing=False)


def load_adapter_model(
    directory: Path,
    vocabulary: int,
    dtype: str = "float32",
    *,
    trainable: bool = False,
    quantization: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
):
    """The adapter in `directory` on its base: the base loaded (quantized by the
    model.quantization mapping `quantization`, when given) and grown to the trained
    tokenizer's `vocabulary`, then the adapter loaded onto it."""
    from lmforge.models.loading import load_model

    base = load_model(
        adapter_base(directory),
        dtype,
        trust_remote_code,
        attn_implementation,
        quantization_config(quantization) if quantization else None,
    )
    resize_for(base, vocabulary)
    return load_adapter(base, directory, trainable)


def load_adapter(base: nn.Module, directory: Path, trainable: bool):
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(base, str(directory), is_trainable=trainable)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise LmforgeError(f"{directory}: cannot load the adapter onto its base: {str(exc).splitlines()[0]}") from exc


def base_model(model: nn.Module) -> nn.Module:
    """The transformers model under any DDP/FSDP wrapper and any peft adapter."""
    from accelerate.utils import extract_model_from_parallel

    model = extract_model_from_parallel(model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model
