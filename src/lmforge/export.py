"""`lmforge export`: a finished run's model as a release directory — the full weights (an
adapter merged in), optionally in another dtype or quantized by bitsandbytes so that
`AutoModelForCausalLM.from_pretrained` loads it as is (seed 004 ships such an 8-bit copy),
with the tokenizer, lmforge.json and a model card.

The directory is written to OUTPUT.tmp/ and moved into place only when complete;
--overwrite replaces only a previous export, never another directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.errors import LmforgeError
from lmforge import rundir

EXPORT_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
QUANTIZE = {"8bit": {"bits": 8}, "4bit": {"bits": 4, "type": "nf4", "double_quant": True}}
META_FILE = "lmforge.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass(frozen=True)
class ExportRequest:
    run_dir: Path
    output: Path
    merge: bool = False
    dtype: str | None = None
    """bf16 | fp16 | fp32; default: the dtype the run trained in."""
    quantize: str | None = None
    """8bit | 4bit (bitsandbytes)."""
    overwrite: bool = False


def _finished_model_dir(run_dir: Path) -> Path:
    rundir.read_finished_run(run_dir, "an export")
    return run_dir / rundir.MODEL_DIR


def check_request(request: ExportRequest, model_dir: Path) -> bool:
    """Every refusal before any work; returns whether the run trained an adapter."""
    from lmforge.models.adapters import is_adapter_dir, require_bitsandbytes

    adapter = is_adapter_dir(model_dir)
    if request.merge and not adapter:
        raise LmforgeError(f"--merge: {request.run_dir} trained every weight, it has no adapter to merge")
    if request.quantize and adapter and not request.merge:
        raise LmforgeError("--quantize: the quantized copy holds full weights; add --merge to merge the adapter first")
    if request.dtype is not None and request.dtype not in EXPORT_DTYPES:
        raise LmforgeError(f"--dtype: '{request.dtype}' is not one of {', '.join(EXPORT_DTYPES)}")
    if request.quantize is not None:
        if request.quantize not in QUANTIZE:
            raise LmforgeError(f"--quantize: '{request.quantize}' is not one of {', '.join(QUANTIZE)}")
        require_bitsandbytes("--quantize")
    output = request.output
    if output.resolve() == request.run_dir.resolve() or request.run_dir.resolve() in output.resolve().parents:
        raise LmforgeError(f"--output: {output} lies inside the run directory; choose a directory outside it")
    if output.exists() and not output.is_dir():
        raise LmforgeError(f"--output: {output} is a file; choose a directory")
    if output.exists() and any(output.iterdir()):
        if not request.overwrite:
            raise LmforgeError(f"--output: {output} exists and is not empty; pass --overwrite to replace it")
        if not _is_export(output):  # --overwrite deletes it: only what an export wrote
            raise LmforgeError(
                f"--output: {output} is not an lmforge export (no {META_FILE} with an export "
                "record); --overwrite replaces only a previous export, choose another directory"
            )
    return adapter


def _is_export(directory: Path) -> bool:
    try:
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "export" in meta


def _trained_dtype(run_dir: Path) -> str:
    return (rundir.read_config(run_dir).get("model") or {}).get("dtype") or "float32"


def _full_model(model_dir: Path, adapter: bool, dtype: str):
    """The run's full model in `dtype`: its weights, or its adapter merged into the
    unquantized base (a QLoRA adapter is merged into the base it was quantized from)."""
    from lmforge.eval.checkpoint import resolve
    from lmforge.models.adapters import load_adapter_model
    from lmforge.models.loading import load_model, load_tokenizer

    source = resolve(model_dir)
    tokenizer = load_tokenizer(str(source.tokenizer_dir), key=str(source.tokenizer_dir))
    if not adapter:
        return load_model(str(model_dir), dtype), tokenizer
    return load_adapter_model(model_dir, len(tokenizer), dtype).merge_and_unload(), tokenizer


def _quantized(full_model, quantize: str, dtype: str, scratch: Path):
    """bitsandbytes quantizes while loading: save the full weights, load them quantized."""
    from lmforge.models.adapters import check_cpu_4bit_shapes, quantization_config
    from lmforge.models.loading import load_model

    full_dir = scratch / "full"
    full_model.save_pretrained(str(full_dir))
    spec = {**QUANTIZE[quantize], "compute_dtype": "bf16" if dtype == "bfloat16" else "fp32"}
    quantized = load_model(str(full_dir), dtype, quantization_config=quantization_config(spec))
    if quantize == "4bit":
        check_cpu_4bit_shapes(quantized)
    return quantized


def export_run(request: ExportRequest) -> Path:
    model_dir = _finished_model_dir(request.run_dir)
    adapter = check_request(request, model_dir)
    meta = json.loads((model_dir / META_FILE).read_text(encoding="utf-8")) if (model_dir / META_FILE).is_file() else {}
    dtype = EXPORT_DTYPES[request.dtype] if request.dtype else _trained_dtype(request.run_dir)
    output = request.output
    staging = output.with_name(output.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)  # the quantized path's scratch directory lies beside it
    description: dict[str, Any] = {
        "source": str(request.run_dir),
        "merged": adapter and request.merge,
        "adapter": adapter and not request.merge,
        "dtype": dtype,
        "quantize": request.quantize,
    }
    try:
        if adapter and not request.merge:
            _copy_adapter(model_dir, staging)
        else:
            _write_full(model_dir, adapter, dtype, request.quantize, staging)
        if not description["adapter"]:
            meta.pop("adapter", None)  # merged or full weights load without peft
        (staging / META_FILE).write_text(json.dumps({**meta, "export": description}, indent=2) + "\n", encoding="utf-8")
        from lmforge.report.model_card import write_model_card

        write_model_card(request.run_dir, staging, export=description)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if output.exists():
        shutil.rmtree(output)
    os.replace(staging, output)
    return output


def _copy_adapter(model_dir: Path, staging: Path) -> None:
    """An adapter export is the run's model/ as it is: adapter, tokenizer, and the base when
    it was built fresh."""
    shutil.copytree(model_dir, staging, ignore=shutil.ignore_patterns("training_args.bin", "README.md"))


def _write_full(model_dir: Path, adapter: bool, dtype: str, quantize: str | None, staging: Path) -> None:
    from transformers import GenerationConfig
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model, tokenizer = _full_model(model_dir, adapter, dtype)
    if (model_dir / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(str(model_dir))
    if quantize:
        with tempfile.TemporaryDirectory(dir=staging.parent, prefix=".export-") as scratch:
            # the generation config travels through the saved full weights
            _quantized(model, quantize, dtype, Path(scratch)).save_pretrained(str(staging))
    else:
        model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
