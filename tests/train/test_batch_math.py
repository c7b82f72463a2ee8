"""Gradient accumulation is derived from the global batch and checked against the processes."""

from __future__ import annotations

import pytest

from lmforge.errors import LmforgeError
from lmforge.train.pipeline import gradient_accumulation


@pytest.mark.parametrize(
    ("global_batch", "micro", "processes", "expected"),
    [(128, 8, 1, 16), (128, 8, 4, 4), (128, 128, 1, 1), (16, 1, 2, 8)],
)
def test_accumulation_steps(global_batch, micro, processes, expected):
    assert gradient_accumulation(global_batch, micro, processes) == expected


def test_indivisible_global_batch_names_the_keys():
    with pytest.raises(
        LmforgeError,
        match=r"train.global_batch_size 128 is not divisible by "
        r"train.micro_batch_size 8 x 3 processes = 24",
    ):
        gradient_accumulation(128, 8, 3)
