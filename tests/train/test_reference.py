"""Reference log-probabilities: the values of each candidate sequence under the starting
model (with an adapter: the base, adapter disabled), cached by weights and data, reused."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset

from lmforge.data.collate import CandidateCollator
from lmforge.models.adapters import attach_adapter
from lmforge.objectives.rank import sequence_logps
from lmforge.train import reference
from tests.train.conftest import PAD, tiny_model, token_rows


def candidate_rows(n: int = 5) -> Dataset:
    rows = token_rows(3 * n, seed=4)
    return Dataset.from_list(
        [
            {
                "input_ids": rows[3 * i]["input_ids"],
                "labels": rows[3 * i]["labels"],
                "rejected_input_ids": [rows[3 * i + 1]["input_ids"], rows[3 * i + 2]["input_ids"]],
                "rejected_labels": [rows[3 * i + 1]["labels"], rows[3 * i + 2]["labels"]],
            }
            for i in range(n)
        ]
    )


def unshared(model, train: Dataset) -> list[list[float]]:
    """Each sequence scored alone, without padding."""
    values = []
    with torch.no_grad():
        for row in train:
            sequences = [(row["input_ids"], row["labels"]), *zip(row["rejected_input_ids"], row["rejected_labels"])]
            values.append(
                [
                    sequence_logps(model(input_ids=torch.tensor([ids])).logits, torch.tensor([labels]))[0].item()
                    for ids, labels in sequences
                ]
            )
    return values


def test_values_are_each_sequences_log_prob_and_the_cache_is_reused(tmp_path, monkeypatch):
    model, train = tiny_model().eval(), candidate_rows()
    with_values = reference.add_reference_logps(model, train, CandidateCollator(PAD), 2, tmp_path, True)
    got = with_values["reference_logps"]
    assert [len(v) for v in got] == [3] * 5
    for mine, alone in zip(got, unshared(model, train)):
        assert mine == pytest.approx(alone, abs=1e-4)
    cache = tmp_path / "reference" / "reference_logps.json"
    assert json.loads(cache.read_text())["values"] == got

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the reference pass ran again")

    monkeypatch.setattr(reference, "candidate_scores", no_second_pass)
    assert (
        reference.add_reference_logps(model, with_values, CandidateCollator(PAD), 2, tmp_path, True)["reference_logps"]
        == got
    )
    with torch.no_grad():  # other starting weights: another key, so the pass runs again
        next(model.parameters()).add_(0.01)
    with pytest.raises(AssertionError, match="ran again"):
        reference.add_reference_logps(model, train, CandidateCollator(PAD), 2, tmp_path, True)


def test_with_an_adapter_the_reference_is_the_base(tmp_path):
    base = tiny_model().eval()
    train = candidate_rows(3)
    expected = unshared(base, train)
    model = attach_adapter(
        base,
        {
            "type": "lora",
            "r": 4,
            "alpha": 8.0,
            "dropout": 0.0,
            "target_modules": "all-linear",
            "rslora": False,
            "modules_to_save": [],
        },
        [],
        False,
    )
    for parameter in model.parameters():  # a trained adapter
        if parameter.requires_grad:
            parameter.data.add_(0.1)
    model.train()
    got = reference.add_reference_logps(model, train, CandidateCollator(PAD), 2, tmp_path, True)["reference_logps"]
    for mine, alone in zip(got, expected):
        assert mine == pytest.approx(alone, abs=1e-4)
    assert model.training  # left as it was
    with torch.no_grad():
        adapted = [
            sequence_logps(
                model.eval()(input_ids=torch.tensor([train[0]["input_ids"]])).logits, torch.tensor([train[0]["labels"]])
            )[0].item()
        ]
    assert adapted[0] != pytest.approx(expected[0][0], abs=1e-3)
