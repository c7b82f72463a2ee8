"""Bootstrap's rank rows: responses are trained after the prompt they were sampled from, and
the gold and generated sequences share it, so each prompt is computed once for all of them."""

from __future__ import annotations

from lmforge.bootstrap.rank_data import RankCollator, encode_response, rank_rows, sampling_prompt
from lmforge.data.conversation import Conversation, Segment
from lmforge.objectives.preference import prompt_groups


def test_generated_responses_follow_the_prompt_they_were_sampled_from(tokenizer, remask_question):
    prompt_format, question = remask_question
    sampled_from = tokenizer(sampling_prompt(question, prompt_format, tokenizer), add_special_tokens=False)["input_ids"]
    encoded = encode_response(question, "3 + 4 = 7.\n<|answer|>\n7", prompt_format, tokenizer, 512)
    first_label = next(i for i, label in enumerate(encoded["labels"]) if label != -100)
    assert encoded["input_ids"][:first_label][-len(sampled_from) :] == sampled_from
    # a question without a rationale is still trained after the rationale-first prompt it was sampled with
    direct = Conversation((Segment("user", question.segments[0].text), Segment("assistant", "7")), "q.jsonl:2")
    assert sampling_prompt(direct, prompt_format, tokenizer) == sampling_prompt(question, prompt_format, tokenizer)


def test_gold_and_generated_sequences_share_the_prompt(tokenizer, remask_question):
    prompt_format, question = remask_question
    rows = rank_rows(
        [question],
        [
            {
                "question_id": 0,
                "correct": ["3 + 4 = 7.\n<|answer|>\n7", "4 + 3 = 7.\n<|answer|>\n7"],
                "incorrect": ["3 + 4 = 8.\n<|answer|>\n8"],
            }
        ],
        prompt_format,
        tokenizer,
        512,
    )
    assert rows[0]["order"] == [0, 0, 0, 1] and rows[0]["is_gold"] == [True, False, False, False]
    groups = prompt_groups(RankCollator(tokenizer.pad_token_id)(rows))
    assert groups is not None and len(groups) == 1 and len(groups[0].responses) == 4
