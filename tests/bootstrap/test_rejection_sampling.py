"""Rejection-sampling SFT rows (bootstrap with objective ce): exactly the deduplicated valid
correct samples, each trained after the prompt it was sampled from, labels on the response
alone, padded by the SFT data's PadCollator."""

from __future__ import annotations

from lmforge.bootstrap.pairs import unique_correct
from lmforge.bootstrap.rank_data import correct_rows, sampling_prompt
from lmforge.data.collate import PadCollator
from lmforge.data.tokenize import IGNORE_INDEX


def test_rows_are_the_unique_correct_samples_with_labels_on_the_response(tokenizer, remask_question):
    prompt_format, question = remask_question
    samples = [
        {"text": "3 + 4 = 7.\n<|answer|>\n7", "valid": True, "correct": True},
        {"text": "3  +  4 = 7.\n<|answer|>\n7", "valid": True, "correct": True},  # a whitespace duplicate
        {"text": "4 + 3 = 7.\n<|answer|>\n7", "valid": True, "correct": True},
        {"text": "3 + 4 = 8.\n<|answer|>\n8", "valid": True, "correct": False},
        {"text": "7", "valid": False, "correct": True},  # no rationale: never trained
    ]
    responses = unique_correct(samples)
    assert responses == ["3 + 4 = 7.\n<|answer|>\n7", "4 + 3 = 7.\n<|answer|>\n7"]

    rows = correct_rows(
        [question], [{"question_id": 0, "response": r} for r in responses], prompt_format, tokenizer, 512
    )
    prompt = tokenizer(sampling_prompt(question, prompt_format, tokenizer), add_special_tokens=False)["input_ids"]
    assert len(rows) == 2
    for row, response in zip(rows, responses):
        first_label = next(i for i, label in enumerate(row["labels"]) if label != IGNORE_INDEX)
        assert row["input_ids"][:first_label][-len(prompt) :] == prompt  # the prompt it was sampled from
        trained = [label for label in row["labels"] if label != IGNORE_INDEX]
        assert trained == row["input_ids"][first_label:]  # every response token, nothing of the prompt
        assert tokenizer.decode(trained) == response + tokenizer.eos_token

    batch = PadCollator(tokenizer.pad_token_id)(rows)
    assert batch["input_ids"].shape[0] == 2
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        assert batch["labels"][i, :n].tolist() == row["labels"]
        assert batch["labels"][i, n:].eq(IGNORE_INDEX).all() and batch["attention_mask"][i].sum() == n
        assert batch["token_roles"][i, :n].ge(0).all()
