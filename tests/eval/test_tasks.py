"""Task files: the kind is told from the fields; few-shot examples are drawn per item and
rendered exactly as the harness (plain) or the model's prompt format would."""

from __future__ import annotations


import pytest

from lmforge.errors import LmforgeError
from lmforge.eval.fewshot import PromptStyle, draw_shots, make_style
from lmforge.eval.tasks import load_task


@pytest.mark.parametrize(
    "name, kind",
    [
        ("gsm8k", "generate"),
        ("cot", "generate"),
        ("arc", "multiple_choice"),
        ("text", "perplexity"),
        ("chat", "perplexity"),
        ("translation", "translation"),
        ("squad", "qa"),
    ],
)
def test_kind_is_told_from_the_fields(task_files, name, kind):
    assert load_task(str(task_files[name])).kind == kind


def test_arc_digit_labels_give_the_gold_index(tmp_path, write_jsonl):
    path = write_jsonl(
        tmp_path / "arc.jsonl",
        [
            {
                "id": "a",
                "question": "q",
                "answerKey": "3",
                "choices": {"text": ["x", "y", "z"], "label": ["1", "2", "3"]},
            }
        ],
    )
    [item] = load_task(str(path)).items
    assert item.gold == 2 and item.choices == ("x", "y", "z") and item.target == "z"


def test_gsm8k_answer_splits_into_rationale_and_final_answer(task_files):
    item = load_task(str(task_files["gsm8k"])).items[0]
    assert item.target.endswith(f"\n#### {item.response[1].text}")
    assert [s.role for s in item.response] == ["rationale", "answer"]


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"prompt": "x", "completion": "y"}], "cannot tell the task type from the fields (completion, prompt)"),
        (
            [{"question": "q", "answerKey": "Z", "choices": {"text": ["a", "b"], "label": ["A", "B"]}}],
            "answerKey 'Z' is not among the choice labels",
        ),
        ([{"translation": {"de": "a", "fr": "b"}}], "say the direction with --langs"),
    ],
)
def test_bad_task_records_are_one_line_errors(tmp_path, write_jsonl, rows, message):
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(LmforgeError, match="t.jsonl:1: ") as error:
        load_task(str(path))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_unknown_file_type_is_an_error(tmp_path):
    (tmp_path / "t.xml").write_text("<x/>")
    with pytest.raises(LmforgeError, match="unsupported data file type"):
        load_task(str(tmp_path / "t.xml"))


def test_shots_are_drawn_per_item_without_the_item_itself(task_files):
    task = load_task(str(task_files["gsm8k"]))
    shots = draw_shots(task, 3, seed=5)
    assert all(item not in s and len(s) == 3 for item, s in zip(task.items, shots))
    limited = load_task(str(task_files["gsm8k"]), limit=4)  # --limit keeps the whole file as the pool
    assert [[s.where for s in item_shots] for item_shots in draw_shots(limited, 3, seed=5)] == [
        [s.where for s in item_shots] for item_shots in shots[:4]
    ]
    assert draw_shots(task, 3, seed=6) != shots


def test_more_shots_than_the_pool_holds_is_an_error(task_files):
    task = load_task(str(task_files["cot"]))  # 6 records: at most 5 shots
    assert len(draw_shots(task, 5, seed=0)[0]) == 5
    with pytest.raises(LmforgeError, match=r"--shots 6: the few-shot pool .*cot.jsonl has only 5 examples"):
        draw_shots(task, 6, seed=0)


def test_separate_fewshot_file_is_the_pool(task_files):
    task = load_task(str(task_files["cot"]), fewshot=str(task_files["gsm8k"]))
    assert len(draw_shots(task, 12, seed=0)[0]) == 12
    with pytest.raises(
        LmforgeError, match=r"few-shot file holds multiple_choice records \(arc\) but the task is generate \(cot\)"
    ):
        load_task(str(task_files["cot"]), fewshot=str(task_files["arc"]))


def test_plain_context_is_the_harness_layout(task_files, tokenizer):
    task = load_task(str(task_files["cot"]))
    shot, query = task.items[1], task.items[0]
    context = PromptStyle("plain", tokenizer).context([shot], query)
    assert context == (
        f"Question: {shot.user}\nAnswer: {shot.response[0].text}\n#### {shot.response[1].text}"
        f"\n\nQuestion: {query.user}\nAnswer:"
    )


def test_remask_context_shows_shots_as_finished_turns(task_files, tokenizer):
    task = load_task(str(task_files["cot"]))
    shot, query = task.items[1], task.items[0]
    style = make_style("remask", tokenizer, {"prompt_format": "remask", "cot": True})
    assert style.context([shot], query) == (
        f"<s><|user|>\n{shot.user}\n<|rationale|>\n{shot.response[0].text}\n<|answer|>\n{shot.response[1].text}\n"
        f"<|user|>\n{query.user}\n<|rationale|>\n"
    )
    oa = make_style("openassistant", tokenizer, {"prompt_format": "remask"})
    assert oa.context([shot], query) == (
        f"<s><|prompter|>{shot.user}<|endoftext|><|assistant|>{shot.target}"
        f"<|endoftext|><|prompter|>{query.user}<|endoftext|><|assistant|>"
    )
