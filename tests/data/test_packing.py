"""Packing: best-fit plan, packed rows, the collator, and THE equality test: per-token
losses of a packed batch equal those of the same examples run one by one, through the
training forward (`forward_logits`, model in train mode, no KV cache)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmforge.data.collate import PadCollator
from lmforge.data.conversation import Conversation, Segment
from lmforge.data.packing import PackedCollator, pack_rows, plan_bins
from lmforge.data.pipeline import DatasetSpec, build_datasets
from lmforge.data.tokenize import IGNORE_INDEX, encode_conversation
from lmforge.models.loading import build_model
from lmforge.objectives.forward import forward_logits


def test_plan_bins_best_fit_decreasing():
    # longest first: 7 opens row 0 (3 free), 6 row 1 (4 free), 5 row 2 (5 free); 4 fits row 1
    # exactly, 3 fits row 0 exactly, 2 goes to the only row with room left (row 2)
    assert plan_bins([6, 5, 4, 3, 7, 2], 10) == [[3, 4], [0, 2], [1, 5]]


def test_pack_rows_restarts_positions_and_hides_each_first_label():
    rows = [
        {"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "token_roles": [0, 1, 1]},
        {"input_ids": [4, 5], "labels": [4, 5], "token_roles": [4, 4]},
    ]  # plain text: first label set
    [packed], report = pack_rows(rows, 8)
    assert packed == {
        "input_ids": [1, 2, 3, 4, 5],
        "labels": [-100, 2, 3, -100, 5],
        "token_roles": [0, 1, 1, 4, 4],
        "position_ids": [0, 1, 2, 0, 1],
    }
    assert (report.rows, report.tokens, report.slots, report.efficiency) == (1, 5, 8, 5 / 8)


def test_packed_collator_pads_as_a_segment_of_its_own_without_attention_mask():
    rows = [
        {"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "token_roles": [0, 1, 1], "position_ids": [0, 1, 0]},
        {"input_ids": [4], "labels": [-100], "token_roles": [0], "position_ids": [0]},
    ]
    batch = PackedCollator(pad_token_id=9)(rows)
    assert "attention_mask" not in batch
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 9, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 0], [0, 0, 1]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [-100, -100, -100]]
    assert batch["token_roles"].tolist() == [[0, 1, 1], [0, -1, -1]]


EXAMPLES = [
    Conversation((Segment("user", "What is 12 plus 7?"), Segment("assistant", "12 plus 7 is 19."))),
    Conversation((Segment("user", "Name a color of the rainbow."), Segment("assistant", "Red."))),
    Conversation(
        (Segment("user", "What is 3 times 4?"), Segment("rationale", "3 times 4 is 12."), Segment("answer", "12"))
    ),
    Conversation((Segment("text", "The cat sat on the mat. The dog ran to the park."),)),
    Conversation(
        (
            Segment("user", "Hello there, how are you today?"),
            Segment("assistant", "I am fine, thank you."),
            Segment("user", "Please write a short poem about the sea."),
            Segment("assistant", "The sea is blue and the sky is wide."),
        )
    ),
]


def per_token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[B, T, V], [B, T] -> [B, T-1] cross-entropy of each shifted target (0 where ignored)."""
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    ).view(labels.shape[0], -1)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_losses_equal_one_by_one(tokenizer, remask, attention):
    fmt = remask
    rows = [encode_conversation(c, fmt, tokenizer).as_row() for c in EXAMPLES]
    lengths = [len(r["input_ids"]) for r in rows]
    model = build_model(
        "llama",
        {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "max_position_embeddings": 256},
        tokenizer,
        seed=0,
        attn_implementation=attention,
    )
    model.train()  # the training code path (no dropout in this config, so train mode is deterministic)

    packed, report = pack_rows(rows, max_length=sum(lengths[:3]) + 4)
    assert report.rows < len(rows) and any(p["position_ids"].count(0) > 1 for p in packed)  # rows hold several
    batch = PackedCollator(tokenizer.pad_token_id)([{**p, "example_id": i} for i, p in enumerate(packed)])
    packed_losses = per_token_losses(forward_logits(model, batch), batch["labels"])  # [R, T-1]

    single = PadCollator(tokenizer.pad_token_id)
    compared = 0
    for row_index, row in enumerate(packed):
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["position_ids"])]
        for start, end in zip(starts, starts[1:]):
            example = next(r for r in rows if r["input_ids"] == row["input_ids"][start:end])
            alone = single([example])
            expected = per_token_losses(forward_logits(model, alone), alone["labels"])[0]  # [L-1]
            # within the packed row, the targets of tokens start+1 .. end-1
            got = packed_losses[row_index, start : end - 1]
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
            compared += 1
    assert compared == len(EXAMPLES)


def test_packing_through_build_datasets_reports_efficiency(tmp_path, tokenizer, remask, write_jsonl):
    fmt = remask
    path = write_jsonl(
        tmp_path / "q.jsonl", [{"instruction": f"What is {a} plus 7?", "output": f"{a + 7}"} for a in range(40)]
    )
    data = build_datasets([DatasetSpec(str(path), val_split=0.1)], fmt, tokenizer, 64, "drop", seed=0, packing=True)
    packing = data.packing
    assert packing.examples == 36 and packing.rows == len(data.train) < 36
    assert packing.efficiency > 0.8
    assert sum(len(ids) for ids in data.train["input_ids"]) == packing.tokens
    assert all(len(ids) <= 64 for ids in data.train["input_ids"])
    assert "position_ids" in data.train.column_names and data.val is not None  # val stays unpacked
