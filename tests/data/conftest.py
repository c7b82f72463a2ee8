"""Data-test fixtures."""

from __future__ import annotations

import pytest

from lmforge.data.formats import get_format


@pytest.fixture
def remask(tokenizer):
    """The remask prompt format, its special tokens added to the private `tokenizer`."""
    fmt = get_format("remask")
    tokenizer.add_special_tokens(
        {"additional_special_tokens": fmt.special_tokens(tokenizer)}, replace_extra_special_tokens=False
    )
    return fmt
