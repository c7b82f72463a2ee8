"""Regressions found by the fuzzed config loader (tests/fuzz/test_fuzz_config.py) and its
probes: each config once escaped as another exception (a traceback), hung, or was read
silently wrong. Now each is a one-line LmforgeError naming the file and line."""

from __future__ import annotations

import pytest

from lmforge.config.loader import load_config, parse_override
from lmforge.errors import LmforgeError

BASE = "model:\n  tokenizer: tok\n"


def error_of(path) -> str:
    with pytest.raises(LmforgeError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message, f"error message is not one line: {message!r}"
    return message


@pytest.mark.parametrize(
    "text, problem",
    [
        # once: yaml ConstructorError (compose accepted what safe_load then refused)
        (BASE + "train:\n  epochs: !!python/name:os.system\n", "4: invalid YAML: could not determine a constructor"),
        (BASE + "run:\n  seed: !!binary 'x'\n", "4: invalid YAML: failed to decode base64 data"),
        (BASE + "? [a, b]\n: 1\n", "3: key 'a sequence' must be a name (quote it to use it as one)"),
        # once: RecursionError
        (BASE + "data: &a\n  x: *a\n", "3: invalid YAML: an alias refers to the collection that holds it"),
        (BASE + "train: " + "[" * 5000 + "]" * 5000 + "\n", " invalid YAML: nested too deeply"),
        # once: ValueError "Exceeds the limit (4300 digits) for integer string conversion"
        (BASE + "train:\n  epochs: " + "9" * 5000 + "\n", "4: invalid YAML: a number of 5000 digits"),
        # once: "1 = True: Keys should be strings", without file or line
        (BASE + "true: 1\n", "3: key 'true' must be a name (quote it to use it as one)"),
        # once: the later 'model' silently replaced the first
        (BASE + "model:\n  tokenizer: other\n", "3: key 'model' is given twice (first on line 1)"),
        # once: yaml ReaderError from the loader's constructor (the rewrite's own slip, caught by the fuzzer)
        (
            BASE + "run:\n  name: a\x00b\n",
            "4: invalid YAML: unacceptable character #x0000: special characters are not allowed",
        ),
    ],
)
def test_yaml_the_safe_loader_refuses_is_one_line(tmp_path, text, problem):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    message = error_of(path)
    assert message.startswith(f"{path}:") and problem in message, message


# Once: the aliases expanded while validating and the load hung (a "billion laughs").
def test_aliases_expanding_aliases_are_refused(tmp_path):
    laughs = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9 if i else ["x"] * 9) + "]\n" for i in range(9))
    path = tmp_path / "c.yaml"
    path.write_text(BASE + laughs)
    assert error_of(path) == f"{path}:8: invalid YAML: more than 100000 values (aliases expanding aliases?)"


def test_merge_keys_still_work(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(BASE + "train:\n  <<: &common {epochs: 3}\n")
    assert load_config(path).train.epochs == 3


# Once: UnicodeDecodeError.
def test_invalid_utf8_names_line_and_offset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(BASE.encode() + b"run:\n  name: \xff\n")
    assert error_of(path) == f"{path}:4: invalid UTF-8 at byte offset 37"


# Once: RecursionError parsing a --set value.
def test_set_value_nested_beyond_reason_is_kept_as_text():
    assert parse_override("train.epochs=" + "[" * 5000) == ("train.epochs", "[" * 5000)
