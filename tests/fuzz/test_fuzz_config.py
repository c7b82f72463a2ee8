"""Fuzzed config files: a valid config, mutated at random — values of the wrong type,
negative, huge, not among the choices; unknown keys; a mapping where a value belongs and
the reverse; broken YAML text, cut-off files, odd indentation, invalid UTF-8 — and loaded
through `load_config`. Every outcome is a Config or an `LmforgeError` of one line that
names the file (and line, where there is one) and, for a mutated value, its key path."""

from __future__ import annotations

import copy
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmforge.config import load_config
from lmforge.config.schema import Config
from lmforge.errors import LmforgeError
from tests.fuzz.test_fuzz_records import get, paths

FUZZ = settings(
    max_examples=300,
    deadline=5000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

BASE: dict[str, Any] = {
    "model": {"tokenizer": "tok", "size": {"hidden_size": 64, "num_layers": 2, "num_heads": 4}},
    "data": {
        "datasets": [{"path": "a.jsonl", "format": "alpaca", "val_split": 0.1, "options": {"threads": "all"}}],
        "max_length": 128,
        "prompt_format": "remask",
    },
    "train": {"epochs": 1, "optimizer": {"lr": 0.001}, "report_to": ["tensorboard"]},
    "run": {"seed": 1},
}


def load(data: bytes) -> tuple[Path, Config | None, str | None]:
    with tempfile.TemporaryDirectory(prefix="lmforge-fuzz-") as folder:
        path = Path(folder) / "config.yaml"
        path.write_bytes(data)
        try:
            return path, load_config(path), None
        except LmforgeError as exc:
            message = str(exc)
    assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"
    assert re.match(rf"^{re.escape(str(path))}(:\d+)?: \S", message), message
    return path, None, message


def test_the_base_config_is_valid():
    _, config, error = load(yaml.safe_dump(BASE).encode())
    assert error is None and config.train.optimizer.lr == 0.001


WRONG = st.sampled_from(
    ["text", "not_a_choice", "", 3, 0, -1, -0.5, 10**30, 1e308, float("inf"), float("nan"), True, None, [], {}, [1, 2]]
    + [{"zz": 1}, "1e-3", "- a", "a: b"]
)


@FUZZ
@given(st.data(), st.sampled_from(["value", "unknown_key", "wrap", "unwrap"]))
def test_a_mutated_value_names_its_key_path(data, kind):
    config = copy.deepcopy(BASE)
    key = data.draw(st.sampled_from(paths(config)))
    parent, last = get(config, key[:-1]), key[-1]
    if kind == "value":
        parent[last] = data.draw(WRONG)
    elif kind == "unknown_key":
        mappings = [p for p in [(), *paths(config)] if isinstance(get(config, p), dict)]
        key = data.draw(st.sampled_from(mappings)) + ("zz_unknown",)
        get(config, key[:-1])["zz_unknown"] = data.draw(WRONG)
    elif kind == "wrap":  # one level too deep
        parent[last] = data.draw(st.sampled_from([{"value": parent[last]}, [parent[last]]]))
    else:  # a mapping or list given where its first value belongs
        value = parent[last]
        if isinstance(value, dict) and value:
            value = next(iter(value.values()))
        parent[last] = value[0] if isinstance(value, list) and value else "x"
    path, config, error = load(yaml.safe_dump(config).encode())
    if error is None:
        return
    dotted = [".".join(str(k) for k in key[:depth]) for depth in range(len(key), 0, -1)]
    assert any(f" {d}" in error or f"'{d}" in error for d in dotted), (key, error)
    if kind == "unknown_key":
        assert f"unknown key '{'.'.join(map(str, key))}'" in error, error


YAML_NOISE = st.sampled_from(
    [":", ": ", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "*zz", "!!python/name:os.system ", "!!binary ", "!!int "]
    + ["? ", "|", ">", "%", "@", "`", "#", "'", '"', "\t", "\n", "\n  ", "  ", "\x00", "\x85", "<<: *a\n"]
    + ["\ufeff", "x: &a [*a]\n", "[" * 3000, "9" * 5000, "\n" + "model: {}\n"]
)


@FUZZ
@given(st.data(), st.sampled_from(["insert", "cut", "indent", "utf8", "duplicate_line"]))
def test_broken_yaml_text_is_one_line(data, kind):
    text = yaml.safe_dump(BASE).encode()
    at = data.draw(st.integers(0, len(text)))
    if kind == "insert":
        text = text[:at] + data.draw(YAML_NOISE).encode() + text[at:]
    elif kind == "cut":
        text = text[:at]
    elif kind == "utf8":
        text = text[:at] + data.draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + text[at:]
    else:
        lines = text.split(b"\n")
        index = data.draw(st.integers(0, len(lines) - 1))
        if kind == "indent":
            lines[index] = data.draw(st.sampled_from([b" ", b"  ", b"\t", b"   "])) + lines[index]
        else:
            lines.insert(index, lines[index])
        text = b"\n".join(lines)
    load(text)
