"""Safe defaults: weights load from safetensors only unless model.allow_pickle; remote code
only when asked (and logged); no eval/exec of data or model text anywhere in the package."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
import torch

import lmforge
from lmforge.errors import LmforgeError
from lmforge.models.loading import load_model
from tests.train.conftest import tiny_model


@pytest.fixture
def pickled_model_dir(tmp_path):
    model = tiny_model()
    (tmp_path / "pickled").mkdir()
    model.config.save_pretrained(tmp_path / "pickled")
    torch.save(model.state_dict(), tmp_path / "pickled" / "pytorch_model.bin")  # an old-style checkpoint
    assert not list((tmp_path / "pickled").glob("*.safetensors"))
    return tmp_path / "pickled"


def test_pickled_weights_are_refused_by_default(pickled_model_dir):
    with pytest.raises(LmforgeError, match=r"holds pickled weights \(pytorch_model.bin\).*model.allow_pickle: true"):
        load_model(str(pickled_model_dir))


def test_allow_pickle_loads_them(pickled_model_dir):
    model = load_model(str(pickled_model_dir), allow_pickle=True)
    reference = tiny_model()
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


def test_remote_code_is_logged_when_on(tmp_path, caplog):
    tiny_model().save_pretrained(tmp_path / "m")
    with caplog.at_level(logging.WARNING, logger="lmforge.models.loading"):
        load_model(str(tmp_path / "m"), trust_remote_code=True)
    assert "trust_remote_code is on" in caplog.text
    caplog.clear()
    load_model(str(tmp_path / "m"))
    assert "trust_remote_code" not in caplog.text


def test_the_package_never_evals_or_execs():
    """No eval/exec/compile builtins and no pickle loads in lmforge's source (the sandbox
    runs model-written programs in a child process; its runner is a string, not a call here)."""
    found = []
    for path in sorted(Path(lmforge.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else None
                dotted = (
                    f"{node.func.value.id}.{node.func.attr}"
                    if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                    else None
                )
                if name in ("eval", "exec", "compile") or dotted in ("pickle.load", "pickle.loads", "torch.load"):
                    found.append(f"{path.name}:{node.lineno} {name or dotted}")
    assert not found, found
