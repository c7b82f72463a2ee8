"""ReMask-CoT and Masked Thought corrupt each example by its own rules and draws, whatever
row, batch, padding or packing it lands in: an example's masks are the same packed beside
others, padded in a batch, or alone."""

from __future__ import annotations

import pytest
import torch

from lmforge.data.collate import PadCollator
from lmforge.data.conversation import ROLE_IDS
from lmforge.data.packing import PackedCollator, pack_rows
from lmforge.objectives.remask import RegularizationNoise

PROMPT, RATIONALE, ANSWER, ASSISTANT = (
    ROLE_IDS["prompt"],
    ROLE_IDS["rationale"],
    ROLE_IDS["answer"],
    ROLE_IDS["assistant"],
)
MASK = 99


def example(example_id: int, roles: list[int]) -> dict:
    ids = [10 + (7 * example_id + i) % 80 for i in range(len(roles))]
    labels = [-100 if role == PROMPT else token for token, role in zip(ids, roles)]
    return {"input_ids": ids, "labels": labels, "token_roles": roles, "example_id": example_id}


COT = [PROMPT] * 4 + [RATIONALE] * 12 + [ANSWER] * 2
CHAT = [PROMPT] * 3 + [ASSISTANT] * 9
EXAMPLES = [
    example(0, COT),
    example(1, CHAT),
    example(2, [PROMPT] * 2 + [RATIONALE] * 20 + [ANSWER]),
    example(3, [PROMPT] * 5 + [ASSISTANT] * 30),
]


def corrupted(noise, batch) -> dict[int, tuple[list[int], list[int]]]:
    """Each example's (masked inputs, labels), cut out of whatever rows it was in."""
    out = noise(batch)
    owners = batch.get("token_example_ids")
    found = {}
    for row in range(batch["input_ids"].shape[0]):
        for e in EXAMPLES:
            if owners is not None:
                where = (owners[row] == e["example_id"]).nonzero().squeeze(1)
            elif int(batch["example_id"][row]) == e["example_id"]:
                where = torch.arange(len(e["input_ids"]))
            else:
                continue
            if where.numel():
                labels = out["labels"][row, where].tolist()
                if owners is not None:  # packing blanks each example's first label (never a target)
                    labels[0] = e["labels"][0]
                found[e["example_id"]] = (out["masked_input_ids"][row, where].tolist(), labels)
    return found


@pytest.mark.parametrize("p_answer_only", [0.0, 0.5])
def test_masks_do_not_depend_on_packing_padding_or_batch(p_answer_only):
    noise = RegularizationNoise(MASK, p_in=0.4, p_label=0.3, p_answer_only=p_answer_only, seed=3)
    padded = corrupted(noise, PadCollator(0)(EXAMPLES))
    alone = {k: v for e in EXAMPLES for k, v in corrupted(noise, PadCollator(0)([e])).items()}
    reordered = corrupted(noise, PadCollator(0)(EXAMPLES[::-1]))
    packed_rows, _ = pack_rows(EXAMPLES, 80)
    packed = corrupted(noise, PackedCollator(0)(packed_rows))
    assert len(packed_rows) < len(EXAMPLES)  # several examples did share a packed row
    assert padded == alone == reordered == packed
    assert any(MASK in inputs for inputs, _ in padded.values())  # something was masked


def test_each_packed_example_follows_its_own_rules():
    """A chat example packed beside a CoT one still gets plain input masking over its whole
    response; an answer-only draw drops only its own example's rationale labels."""
    noise = RegularizationNoise(MASK, p_in=1.0, p_label=0.0, p_answer_only=1.0, seed=0)
    packed_rows, _ = pack_rows(EXAMPLES[:2], 64)
    assert len(packed_rows) == 1
    out = corrupted(noise, PackedCollator(0)(packed_rows))
    cot_inputs, cot_labels = out[0]
    chat_inputs, chat_labels = out[1]
    assert [t == MASK for t in cot_inputs] == [role == RATIONALE for role in COT]  # answers never masked
    assert [t == MASK for t in chat_inputs] == [role == ASSISTANT for role in CHAT]
    assert all(label == -100 for label, role in zip(cot_labels, COT) if role == RATIONALE)  # answer only
    assert chat_labels == EXAMPLES[1]["labels"]  # the chat example's labels untouched


def test_build_assigns_example_ids_before_packing(tmp_path, tokenizer):
    """The same example id for an example whether the data is packed or not."""
    import json

    from lmforge.data.formats import get_format
    from lmforge.data.pipeline import DatasetSpec, build_datasets

    path = tmp_path / "cot.jsonl"
    path.write_text(
        "".join(
            json.dumps({"question": f"q {i}", "rationale": "r " * (i % 5 + 1), "answer": str(i)}) + "\n"
            for i in range(12)
        )
    )
    remask = get_format("remask")
    tokenizer.add_special_tokens({"additional_special_tokens": remask.special_tokens(tokenizer)})
    spec = [DatasetSpec(str(path), format="cot", val_split=0.0)]
    plain = build_datasets(spec, remask, tokenizer, 128, "drop", seed=1).train
    packed = build_datasets(spec, remask, tokenizer, 128, "drop", seed=1, packing=True).train
    by_id = {row["example_id"]: row["input_ids"] for row in plain}
    for row in packed:
        start = 0
        for example_id in dict.fromkeys(row["token_example_ids"]):
            n = row["token_example_ids"].count(example_id)
            assert row["input_ids"][start : start + n] == by_id[example_id]
            start += n
