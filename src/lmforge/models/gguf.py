"""Models held as a single `.gguf` file (llama.cpp's format): transformers reads the file's
metadata as config and tokenizer and dequantizes its tensors into an ordinary model.

Loading dequantizes in memory on every load. A bitsandbytes-quantized load cannot start
from a GGUF file (transformers refuses to combine the two), so `convert_gguf` writes the
dequantized model once as a safetensors directory, which loads like any other.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import torch

from lmforge.errors import LmforgeError

GGUF_MAGIC = b"GGUF"
SOURCE_FILE = "gguf_source.json"
"""Written into a converted directory: which file (path, size, mtime) it was made from."""
CACHE_ENV = "LMFORGE_CACHE"


def is_gguf(path: str | os.PathLike | None) -> bool:
    """Whether `path` names a GGUF file (by its extension; the file need not exist).

    >>> is_gguf("models/SmolLM2-135M.Q4_1.gguf"), is_gguf("models/smollm2"), is_gguf(None)
    (True, False, False)
    """
    return path is not None and str(path).lower().endswith(".gguf")


def cache_root() -> Path:
    """Where lmforge keeps what it derives once and reuses ($LMFORGE_CACHE, else
    $XDG_CACHE_HOME/lmforge, else ~/.cache/lmforge)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "lmforge"


def check_gguf(path: str | os.PathLike, key: str = "model.name_or_path") -> Path:
    """The GGUF file `path` names, or a one-line error when it is missing or not a GGUF file."""
    file = Path(path).expanduser()
    if not file.exists():
        raise LmforgeError(f"{key}: GGUF file '{path}' does not exist")
    if not file.is_file():
        raise LmforgeError(f"{key}: '{path}' is not a file (a .gguf path must name a GGUF file)")
    with file.open("rb") as handle:
        magic = handle.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise LmforgeError(f"{key}: '{path}' is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r})")
    return file


# what transformers raises on a file it cannot read or does not support
_READ_ERRORS = (OSError, ValueError, KeyError, IndexError, struct.error)


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _architecture(file: Path) -> str | None:
    """general.architecture of a GGUF file, or None when its metadata cannot be read."""
    from gguf import GGUFReader

    try:
        return str(GGUFReader(str(file)).fields["general.architecture"].contents())
    except Exception:  # noqa: BLE001 (only words an error about a file that already failed)
        return None


def _gguf_config(file: Path, key: str):
    """The transformers config the file's metadata describes; an unsupported architecture
    or unreadable metadata is a one-line error before any tensor is read."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(file.parent), gguf_file=file.name)
    except _READ_ERRORS as exc:
        architecture = _architecture(file)
        if architecture is None:
            raise LmforgeError(
                f"{key}: the GGUF file '{file}' cannot be read (truncated or damaged?): {_first_line(exc)}"
            ) from exc
        raise LmforgeError(
            f"{key}: '{file}' holds a '{architecture}' model, which transformers cannot dequantize ({_first_line(exc)})"
        ) from exc


def _dense_loading() -> dict:
    """from_pretrained options that dequantize every tensor: with the `kernels` package,
    transformers would otherwise keep the GGUF blocks packed, which cannot be trained or saved."""
    try:
        from transformers import GgufConfig
    except ImportError:  # transformers before GgufConfig always dequantized
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def load_gguf_tokenizer(path: str | os.PathLike, key: str = "model.name_or_path"):
    """The tokenizer a GGUF file's tokenizer.ggml.* metadata describes (with its chat template)."""
    from transformers import AutoTokenizer

    file = check_gguf(path, key)
    try:
        return AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name)
    except _READ_ERRORS as exc:
        _gguf_config(file, key)  # an unsupported architecture or unreadable file says so; else:
        raise LmforgeError(
            f"{key}: cannot build a tokenizer from the metadata of '{path}': {_first_line(exc)}"
        ) from exc


def load_gguf_model(
    path: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
    key: str = "model.name_or_path",
):
    """The model in a GGUF file, dequantized to `dtype`: an ordinary, trainable, saveable model."""
    from transformers import AutoModelForCausalLM

    file = check_gguf(path, key)
    kwargs = {"config": _gguf_config(file, key), "dtype": dtype, **_dense_loading()}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(str(file.parent), gguf_file=file.name, **kwargs)
    except _READ_ERRORS as exc:
        raise LmforgeError(f"{key}: cannot load the GGUF model '{path}': {_first_line(exc)}") from exc
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # weights are dense already; drop the GGUF marker that forbids training and saving
        quantizer.remove_quantization_config(model)
    return model


def _source_record(file: Path) -> dict:
    stat = file.stat()
    return {"source": str(file.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def convert_gguf(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    key: str = "model.name_or_path",
) -> Path:
    """Write the GGUF file's model (dequantized, safetensors) and tokenizer to `out_dir`, once.

    The directory is written under a temporary name and moved into place complete, so an
    existing `out_dir` is a finished conversion: it is returned as it is when it was made from
    this same file, and never overwritten otherwise.
    """
    file = check_gguf(path, key)
    out = Path(out_dir).expanduser()
    record = _source_record(file)
    if out.exists():
        return _existing_conversion(out, record, key)
    tokenizer = load_gguf_tokenizer(file, key)
    model = load_gguf_model(file, dtype, key=key)
    # one staging directory per process: ranks that convert at once do not write into each other's files
    staging = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        (staging / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(staging, out)
        except OSError:
            if not out.exists():
                raise
            return _existing_conversion(out, record, key)  # another process finished first
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _existing_conversion(out: Path, record: dict, key: str) -> Path:
    marker = out / SOURCE_FILE
    found = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None
    if found != record:
        what = f"a conversion of {found.get('source')} as it was then" if found else "not an lmforge GGUF conversion"
        raise LmforgeError(
            f"{key}: cannot convert '{record['source']}' into {out}: that directory exists and is "
            f"{what}; remove it or choose another"
        )
    return out


def conversion_dir(path: str | os.PathLike) -> Path:
    """Where `cached_conversion` keeps the conversion of the GGUF file at `path`: named by the
    file's stem and a digest of its absolute path, size and mtime (a changed file is converted
    again rather than read from a stale copy)."""
    file = Path(path).expanduser()
    stat = file.stat()
    digest = hashlib.sha256(f"{file.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_root() / "gguf" / f"{file.stem}-{digest}"


def cached_conversion(path: str | os.PathLike, key: str = "model.name_or_path") -> Path:
    """A safetensors model directory for the GGUF file at `path`, converted on first use."""
    file = check_gguf(path, key)
    return convert_gguf(file, conversion_dir(file), key=key)
