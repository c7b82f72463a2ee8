"""The shipped benchmark samples (examples/eval/: MMLU, BIG-Bench Hard, HumanEval) through
`lmforge eval`: their prompts written out by hand, end-to-end runs on a tiny model, HumanEval
scoring made deterministic by a fake generator, and each bad input as a one-line error."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lmforge.eval import evaluate, runner, sandbox
from lmforge.eval.evaluate import EvalOptions, evaluate_task
from lmforge.eval.fewshot import PLAIN, PromptStyle, draw_shots
from lmforge.eval.sandbox import check_candidate
from lmforge.eval.tasks import load_task
from tests.eval.conftest import cli_error, run_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "eval"
MMLU_TEST, MMLU_DEV = EXAMPLES / "mmlu_test.jsonl", EXAMPLES / "mmlu_dev.jsonl"
BBH, BBH_COT = EXAMPLES / "bbh_boolean_expressions.jsonl", EXAMPLES / "bbh_boolean_expressions_cot.jsonl"
HUMANEVAL = EXAMPLES / "humaneval.jsonl"
SUBJECTS = ["high_school_mathematics", "astronomy", "world_religions"]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


# ------------------------------------------------------------------------ the samples


@pytest.mark.parametrize(
    "path, kind, fmt, count",
    [
        (MMLU_TEST, "multiple_choice", "mmlu", 12),
        (MMLU_DEV, "multiple_choice", "mmlu", 15),
        (BBH, "answer_phrase", "bbh", 8),
        (BBH_COT, "answer_phrase", "bbh", 3),
        (HUMANEVAL, "code", "humaneval", 5),
    ],
)
def test_each_sample_loads_as_its_benchmark(path, kind, fmt, count):
    task = load_task(str(path))
    assert (task.kind, task.data_format, len(task.items)) == (kind, fmt, count)


def test_mmlu_sample_has_subject_groups_and_descriptions():
    for path, per_subject in ((MMLU_TEST, 4), (MMLU_DEV, 5)):
        task = load_task(str(path))
        assert [item.group for item in task.items] == [s for s in SUBJECTS for _ in range(per_subject)]
        for item in task.items:
            assert item.choices == ("A", "B", "C", "D") and item.target == "ABCD"[item.gold]
    item = load_task(str(MMLU_TEST)).items[0]
    assert item.description == (
        "The following are multiple choice questions (with answers) about high school mathematics.\n\n"
    )
    assert task.layout.sampler == "first_n"


def test_bbh_sample_targets_are_the_expressions_values_and_cot_ends_in_the_answer():
    for row in _rows(BBH):
        assert row["input"].endswith(" is") and row["target"] == str(eval(row["input"][: -len(" is")]))
    for row in _rows(BBH_COT):
        assert row["target"].endswith(f"So the answer is {eval(row['input'][: -len(' is')])}.")


def test_humaneval_canonical_solutions_pass_their_tests():
    for row in _rows(HUMANEVAL):
        outcome = check_candidate(
            row["prompt"], row["canonical_solution"], row["test"], row["entry_point"], allowed=True
        )
        assert outcome.passed, (row["task_id"], outcome.stderr)
        assert row["prompt"].rstrip().endswith('"""') and f"def {row['entry_point']}(" in row["prompt"]
        assert "def check(candidate):" in row["test"]


# ------------------------------------------------------------------------ prompts by hand


def test_mmlu_five_shot_plain_prompt_is_the_harness_layout():
    task = load_task(str(MMLU_TEST), fewshot=str(MMLU_DEV))
    shots = draw_shots(task, 5, 1234)  # the task's own sampler: first_n
    style = PromptStyle(PLAIN, tokenizer=None)
    # the first astronomy question: its examples are the dev file's astronomy ones, in file order
    index = 4
    assert task.items[index].group == "astronomy"
    expected = (
        "The following are multiple choice questions (with answers) about astronomy.\n\n"
        "Which planet is closest to the Sun?\nA. Venus\nB. Mercury\nC. Mars\nD. Earth\nAnswer: B\n\n"
        "What keeps the planets in orbit around the Sun?\nA. Magnetism\nB. Friction\nC. Gravity\nD. Solar wind\n"
        "Answer: C\n\n"
        "About how long does light from the Sun take to reach the Earth?\nA. 8 seconds\nB. 8 minutes\nC. 8 hours\n"
        "D. 8 days\nAnswer: B\n\n"
        "What kind of object is the Moon?\nA. A star\nB. A planet\nC. A comet\nD. A natural satellite\nAnswer: D\n\n"
        "Which planet is known for its large system of bright rings?\nA. Saturn\nB. Mars\nC. Mercury\nD. Venus\n"
        "Answer: A\n\n"
        "Which is the largest planet in the Solar System?\nA. Earth\nB. Neptune\nC. Jupiter\nD. Saturn\nAnswer:"
    )
    assert style.context(shots[index], task.items[index], task.layout) == expected
    # every item: its own subject's five dev examples, in file order
    dev = load_task(str(MMLU_DEV)).items
    for item, drawn in zip(task.items, shots):
        assert [s.where for s in drawn] == [d.where for d in dev if d.group == item.group]


def test_bbh_three_shot_plain_prompt_is_the_harness_layout():
    task = load_task(str(BBH), fewshot=str(BBH_COT))
    shots = draw_shots(task, 3, 1234)
    context = PromptStyle(PLAIN, tokenizer=None).context(shots[0], task.items[0], task.layout)
    cot = [row["target"] for row in _rows(BBH_COT)]
    expected = (
        "Q: not True or True is\nA: Let's think step by step.\n" + cot[0] + "\n\n"
        "Q: True and ( False or False ) is\nA: Let's think step by step.\n" + cot[1] + "\n\n"
        "Q: not ( True and False ) and True is\nA: Let's think step by step.\n" + cot[2] + "\n\n"
        "Q: not False and True is\nA: Let's think step by step.\n"
    )
    assert context == expected
    assert task.items[0].gold == "True" and task.layout.target_delimiter == ""


# ------------------------------------------------------------------------ end to end


def test_mmlu_five_shot_end_to_end(random_model_dir, tmp_path, capsys):
    output = tmp_path / "mmlu.json"
    code, _, err = run_cli(
        capsys,
        [
            "eval",
            str(random_model_dir),
            "--task",
            str(MMLU_TEST),
            "--fewshot-file",
            str(MMLU_DEV),
            "--shots",
            "5",
            "--batch-size",
            "8",
            "--output",
            str(output),
        ],
    )
    assert code == 0, err
    (task,) = json.loads(output.read_text())["tasks"]
    assert task["kind"] == "multiple_choice" and task["items"] == 12 and task["fewshot_sampler"] == "first_n"
    assert task["fewshot_source"] == str(MMLU_DEV)
    metrics, groups = task["metrics"], task["groups"]
    assert {"acc", "acc_norm", "acc_bytes", "acc_macro"} <= metrics.keys()
    assert list(groups) == SUBJECTS
    samples = [json.loads(line) for line in output.with_suffix(".samples.jsonl").read_text().splitlines()]
    assert len(samples) == 12 and [s["group"] for s in samples] == [s for s in SUBJECTS for _ in range(4)]
    assert all(s["context"].count("\nAnswer: ") == 5 for s in samples)
    per_item = [float(s["acc"] == s["gold"]) for s in samples]
    assert metrics["acc"] == pytest.approx(_mean(per_item))
    by_subject = {
        subject: _mean(float(s["acc"] == s["gold"]) for s in samples if s["group"] == subject) for subject in SUBJECTS
    }
    for subject in SUBJECTS:
        assert groups[subject]["acc"] == pytest.approx(by_subject[subject]) and groups[subject]["n"] == 4
    assert metrics["acc_macro"] == pytest.approx(_mean(by_subject.values()))
    assert metrics["acc_macro"] == pytest.approx(_mean(g["acc"] for g in groups.values()))


def test_bbh_three_shot_end_to_end(random_model_dir, tmp_path, capsys):
    output = tmp_path / "bbh.json"
    code, _, err = run_cli(
        capsys,
        [
            "eval",
            str(random_model_dir),
            "--task",
            str(BBH),
            "--fewshot-file",
            str(BBH_COT),
            "--shots",
            "3",
            "--max-new-tokens",
            "32",
            "--output",
            str(output),
        ],
    )
    assert code == 0, err
    (task,) = json.loads(output.read_text())["tasks"]
    assert task["kind"] == "answer_phrase" and task["max_new_tokens"] == 32 and task["fewshot_sampler"] == "first_n"
    samples = [json.loads(line) for line in output.with_suffix(".samples.jsonl").read_text().splitlines()]
    assert len(samples) == 8
    assert [s["gold"] for s in samples] == [row["target"] for row in _rows(BBH)]
    for s in samples:
        assert s["context"].endswith("\nA: Let's think step by step.\n")
        assert s["correct"] == (s["answer"] is not None and s["answer"] == s["gold"])
    assert task["metrics"]["exact_match"] == pytest.approx(_mean(float(s["correct"]) for s in samples))


def test_bbh_scoring_reads_the_answer_after_the_answer_is(tokenizer, monkeypatch):
    # golds: True False False True True True True False
    outputs = [
        "not False is True. So the answer is True.",  # True: right
        "So the answer is False.\n\nQ: True is",  # the rest of the line less its period: right
        "So the answer is True.",  # wrong answer
        "The answer is True.",  # the phrase is case-sensitive: no answer
        "So the answer is True",  # no final period: "Tru"
        "",  # nothing
        "the answer is True.",  # right
        "So the answer is  False.",
    ]  # stripped: right
    contexts_seen = []

    def fake(model, tokenizer, task, style, contexts, options, **sampling):
        contexts_seen.extend(contexts)
        return outputs

    monkeypatch.setattr(evaluate, "_generate", fake)
    task = load_task(str(BBH), fewshot=str(BBH_COT))
    result = evaluate_task(None, tokenizer, {}, task, EvalOptions(shots=3))
    assert [s["answer"] for s in result.samples] == ["True", "False", "True", None, "Tru", None, "True", "False"]
    assert [s["correct"] for s in result.samples] == [True, True, False, False, False, False, True, True]
    assert result.metrics["exact_match"] == pytest.approx(4 / 8)
    assert all(c.count("So the answer is") == 3 for c in contexts_seen) and len(contexts_seen) == 8


# ------------------------------------------------------------------------ HumanEval


def test_humaneval_without_permission_runs_nothing(random_model_dir, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(sandbox, "run_program", lambda *a, **k: calls.append(("run_program", a, k)))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: calls.append(("Popen", a, k)))
    monkeypatch.setattr(runner, "load_checkpoint", lambda *a, **k: calls.append(("load_checkpoint", a, k)))
    message = cli_error(capsys, ["eval", str(random_model_dir), "--task", str(HUMANEVAL)])
    assert "--allow-code-execution" in message and str(HUMANEVAL) in message
    assert calls == []


WRONG = "    return 0\n"
LOOP = "    while True:\n        pass\n"
SOCKET = "    import socket\n    socket.socket().connect(('127.0.0.1', 9))\n    return 0\n"


@pytest.fixture(scope="module")
def tokenizer(random_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(random_model_dir)


def _fake_generate(completions_by_entry_point: dict[str, list[str]], calls: list):
    """A stand-in for evaluate._generate: each context's completions in turn, by the
    problem's entry point."""
    served: dict[str, int] = {}

    def fake(model, tokenizer, task, style, contexts, options, **sampling):
        calls.append(sampling)
        out = []
        for context in contexts:
            (name,) = [n for n in completions_by_entry_point if f"def {n}(" in context]
            out.append(completions_by_entry_point[name][served.get(name, 0)])
            served[name] = served.get(name, 0) + 1
        return out

    return fake


def test_humaneval_scoring_with_execution_allowed(tokenizer, monkeypatch):
    rows = _rows(HUMANEVAL)
    names = [row["entry_point"] for row in rows]
    answers = {
        names[0]: [rows[0]["canonical_solution"]],
        names[1]: [rows[1]["canonical_solution"]],
        names[2]: [WRONG],
        names[3]: [LOOP],
        names[4]: [SOCKET],
    }
    calls: list = []
    monkeypatch.setattr(evaluate, "_generate", _fake_generate(answers, calls))
    monkeypatch.setattr(evaluate, "CODE_TIMEOUT_S", 2.0)
    task = load_task(str(HUMANEVAL))
    result = evaluate_task(None, tokenizer, {}, task, EvalOptions(allow_code_execution=True))
    assert calls == [{}]  # one greedy generation pass
    assert [s["passed"] for s in result.samples] == [1, 1, 0, 0, 0]
    assert [s["results"] for s in result.samples] == [["passed"], ["passed"], ["failed"], ["timeout"], ["forbidden"]]
    assert [s["task_id"] for s in result.samples] == [row["task_id"] for row in rows]
    assert result.metrics["pass@1"] == pytest.approx(2 / 5) and result.metrics["n"] == 5
    assert "pass@10" not in result.metrics


def test_humaneval_pass_at_k_over_samples(tokenizer, monkeypatch):
    rows = _rows(HUMANEVAL)[:2]
    first, second = (row["entry_point"] for row in rows)
    answers = {
        first: [WRONG, rows[0]["canonical_solution"], WRONG, WRONG],  # c = 1 of n = 4
        second: [rows[1]["canonical_solution"], WRONG, rows[1]["canonical_solution"], rows[1]["canonical_solution"]],
    }  # c = 3 of n = 4
    calls: list = []
    monkeypatch.setattr(evaluate, "_generate", _fake_generate(answers, calls))
    task = load_task(str(HUMANEVAL), limit=2)
    options = EvalOptions(allow_code_execution=True, samples=4, temperature=0.6, seed=7)
    result = evaluate_task(None, tokenizer, {}, task, options)
    assert calls == [{"do_sample": True, "temperature": 0.6, "seed": 7}]
    assert [(s["passed"], s["n"]) for s in result.samples] == [(1, 4), (3, 4)]
    assert result.samples[0]["results"] == ["failed", "passed", "failed", "failed"]
    # unbiased pass@1 = c / n per problem: 1/4 and 3/4
    assert result.metrics["pass@1"] == pytest.approx((0.25 + 0.75) / 2)
    assert sandbox.pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert sandbox.pass_at_k(4, 1, 2) == pytest.approx(1 - (3 * 2) / (4 * 3))  # 1 - C(3,2)/C(4,2) = 0.5
    assert "pass@10" not in result.metrics and "pass@100" not in result.metrics


# ------------------------------------------------------------------------ bad inputs


def test_bad_benchmark_inputs_are_one_line_errors(random_model_dir, tmp_path, capsys):
    model = str(random_model_dir)
    mmlu = _rows(MMLU_TEST)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in (
                mmlu[0],
                mmlu[1],
                {
                    "question": "Ann has 2 apples and buys 3 more. How many does she have?",
                    "answer": "2 + 3 = 5\n#### 5",
                },
            )
        )
    )
    message = cli_error(capsys, ["eval", model, "--task", str(mixed)])
    assert f"{mixed}:3:" in message and "gsm8k" in message and "mmlu" in message

    physics = tmp_path / "physics.jsonl"
    physics.write_text(
        json.dumps(
            {
                "question": "What is the unit of force?",
                "subject": "college_physics",
                "choices": ["Joule", "Newton", "Watt", "Pascal"],
                "answer": 1,
            }
        )
        + "\n"
    )
    message = cli_error(
        capsys, ["eval", model, "--task", str(physics), "--fewshot-file", str(MMLU_DEV), "--shots", "5"]
    )
    assert "college_physics" in message and "--shots 5" in message

    message = cli_error(capsys, ["eval", model, "--task", str(BBH), "--fewshot-file", str(BBH_COT), "--shots", "4"])
    assert "--shots 4" in message and str(BBH_COT) in message and "only 3 examples" in message
