"""The run summary's efficiency figures: token and slot counts per batch kind, the
summary's arithmetic, the roof probe, and a run that records them."""

from __future__ import annotations

import json

import pytest
import torch

from lmforge.train.efficiency import TokenCounter, efficiency_summary, matmul_roof, summary_line


def test_counter_reads_padding_from_the_mask_or_the_roles():
    counter = TokenCounter()
    counter.observe(
        {
            "input_ids": torch.zeros(2, 5, dtype=torch.long),
            "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]),
        }
    )
    assert (counter.tokens, counter.slots) == (8, 10)
    counter.observe(
        {
            "input_ids": torch.zeros(1, 4, dtype=torch.long),  # a packed row: roles -1 on padding
            "token_roles": torch.tensor([[0, 2, 2, -1]]),
        }
    )
    assert (counter.tokens, counter.slots) == (11, 14)


def test_summary_arithmetic_by_hand():
    # 600 real of 800 slots in 4 s, 10^6 parameters, two passes (ReMask), roof 10^9 per process x 2
    summary = efficiency_summary(TokenCounter(600, 800), 4.0, 1_000_000, 2, 1e9, processes=2)
    assert summary["tokens_per_second"] == 150.0 and summary["padding_fraction"] == 0.25
    assert summary["model_flops_per_second"] == pytest.approx(6 * 1e6 * 600 * 2 / 4.0)  # 1.8e9
    assert summary["roof_utilisation"] == pytest.approx(1.8e9 / 2e9)
    assert "150 tokens/s, 25.0% of batch slots padding" in summary_line(summary)
    assert efficiency_summary(TokenCounter(1, 1), 1.0, 1, 1, None)["roof_utilisation"] is None


def test_roof_probe_times_what_it_says():
    import time

    start = time.perf_counter()
    flops = matmul_roof(seconds=0.2, size=256)
    assert 0.2 <= time.perf_counter() - start < 5 and flops > 1e6


def test_a_run_records_its_efficiency(tmp_path, user_files):
    from lmforge.cli import main
    from tests.e2e.conftest import write_config

    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run", max_steps=2)
    assert main(["train", str(config)]) == 0
    efficiency = json.loads((tmp_path / "run" / "run.json").read_text())["final_metrics"]["efficiency"]
    assert efficiency["tokens_per_second"] > 0 and 0.0 <= efficiency["padding_fraction"] < 1.0
    assert 0.0 < efficiency["roof_utilisation"] < 1.0
    assert main(["train", str(config), "--overwrite", "--set", "train.measure_roof=false"]) == 0
    efficiency = json.loads((tmp_path / "run" / "run.json").read_text())["final_metrics"]["efficiency"]
    assert efficiency["roof_utilisation"] is None and efficiency["tokens_per_second"] > 0
