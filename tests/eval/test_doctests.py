"""The worked examples in the eval modules' docstrings are tests too."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["answers", "metrics", "generate", "robustness", "callback"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"lmforge.eval.{name}")
    failed, attempted = doctest.testmod(module, verbose=False)
    assert attempted > 0 and failed == 0
