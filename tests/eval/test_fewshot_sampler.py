"""lmforge's few-shot draws against lm-evaluation-harness's own samplers
(lm_eval/api/samplers.py), called the way api/task.py calls them: one sampler per task,
seeded once, asked for each evaluated document in order, with `eval_doc` only when the pool
is the evaluated split. No model: the draws must be the same documents in the same order."""

from __future__ import annotations

import json

import pytest

from lmforge.errors import LmforgeError
from lmforge.eval.fewshot import draw_shots
from lmforge.eval.tasks import load_task
from tests.eval.conftest import TRAIN, gsm8k_answer

samplers = pytest.importorskip("lm_eval.api.samplers")


def _rows(rows):
    return [{"question": r["question"], "answer": gsm8k_answer(r)} for r in rows]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _harness_draws(sampler_cls, pool, docs, k, seed, same_split):
    sampler = sampler_cls(list(pool), rnd=None)
    sampler.set_rnd(seed)  # evaluator.py: task.set_fewshot_seed(fewshot_random_seed)
    return [[d["question"] for d in sampler.sample(n=k, eval_doc=doc if same_split else None)] for doc in docs]


def _ours(task, k, seed, sampler="harness"):
    return [[s.user for s in shots] for shots in draw_shots(task, k, seed, sampler)]


@pytest.mark.parametrize("k", [1, 5, 25])
def test_pool_is_the_evaluated_file(tmp_path, k):
    """fewshot_split == test_split: n+1 drawn, the document itself removed."""
    rows = _rows(TRAIN[:40])
    task = load_task(_write(tmp_path / "t.jsonl", rows))
    assert _ours(task, k, 1234) == _harness_draws(samplers.ContextSampler, rows, rows, k, 1234, True)


def test_separate_pool_and_limit(tmp_path):
    """A few-shot file (the harness's train split): plain k-draws; `--limit` keeps the first draws."""
    pool, test = _rows(TRAIN[:50]), _rows(TRAIN[100:130])
    path, fewshot = _write(tmp_path / "test.jsonl", test), _write(tmp_path / "train.jsonl", pool)
    expected = _harness_draws(samplers.ContextSampler, pool, test, 5, 7, False)
    assert _ours(load_task(path, fewshot=fewshot), 5, 7) == expected
    assert _ours(load_task(path, fewshot=fewshot, limit=4), 5, 7) == expected[:4]


def test_duplicate_records_are_removed_by_value(tmp_path):
    """Equal copies of the evaluated record never become its examples (the harness compares
    documents by value), including the resample when copies leave fewer than k."""
    rows = _rows(TRAIN[:6])
    rows = rows + [rows[0], rows[0], rows[1]]
    task = load_task(_write(tmp_path / "dup.jsonl", rows))
    for k in (2, 4):
        ours = _ours(task, k, 1234)
        assert ours == _harness_draws(samplers.ContextSampler, rows, rows, k, 1234, True)
        assert all(item.user not in shots for item, shots in zip(task.items, ours))


def test_first_n(tmp_path):
    rows = _rows(TRAIN[:10])
    task = load_task(_write(tmp_path / "t.jsonl", rows))
    assert _ours(task, 3, 0, "first_n") == _harness_draws(samplers.FirstNSampler, rows, rows, 3, 0, True)


def test_per_item_draws_do_not_depend_on_the_other_items(tmp_path):
    rows = _rows(TRAIN[:20])
    path = _write(tmp_path / "t.jsonl", rows)
    full = _ours(load_task(path), 3, 5, "per-item")
    assert _ours(load_task(path, limit=5), 3, 5, "per-item") == full[:5]
    assert full != _ours(load_task(path), 3, 5)  # not the harness's draws
    assert all(task_item.user not in shots for task_item, shots in zip(load_task(path).items, full))


def test_too_many_shots_and_unknown_sampler(tmp_path):
    task = load_task(_write(tmp_path / "t.jsonl", _rows(TRAIN[:4])))
    with pytest.raises(LmforgeError, match="has only 3 examples"):
        draw_shots(task, 4, 1234)
    with pytest.raises(LmforgeError, match="unknown sampler; valid: harness, per-item, first_n"):
        draw_shots(task, 1, 1234, "random")
