"""Run one task on a loaded model: build the prompts, score or generate in batches, and
turn the outputs into metrics and per-item samples. One function per task kind."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from lmforge.errors import LmforgeError
from lmforge.eval import loglik, metrics
from lmforge.eval.answers import RULES, extract_flexible, extract_strict_answer, harness_match
from lmforge.eval.fewshot import PLAIN, PromptStyle, default_style, draw_shots, make_style
from lmforge.eval.generate import generate, stop_token_ids
from lmforge.eval.tasks import Task

DEFAULT_MAX_NEW_TOKENS = 256
"""lm-evaluation-harness's `max_gen_toks` default, for tasks that set no limit of their own."""
CODE_TIMEOUT_S = 10.0
"""Wall-clock limit of one HumanEval program (tests included)."""


@dataclass(frozen=True)
class EvalOptions:
    shots: int = 0
    seed: int = 1234
    """Few-shot seed (the harness's default fewshot seed is 1234 too)."""
    fewshot_sampler: str | None = None
    """How examples are drawn (fewshot.py): `harness`, `per-item` or `first_n`; None: the
    task's own (first_n for MMLU and BBH, as their harness configs; harness otherwise)."""
    style: str | None = None
    """Prompt format; None: the model's own (lmforge models), else plain."""
    batch_size: int = 16
    max_new_tokens: int | None = None
    """Generation limit; None: the task's own (BBH, HumanEval: 1024), else 256."""
    show_progress: bool = False
    allow_code_execution: bool = False
    allow_pickle: bool = False
    """Load a model that has only pickled weights (.bin/.pt): a pickle can run code."""
    """Code tasks (HumanEval) run model-written programs, sandboxed (eval/sandbox.py), only
    when this is set (the CLI's --allow-code-execution)."""
    samples: int = 1
    """Code tasks: completions per problem (greedy when 1, else sampled at `temperature`);
    pass@k is reported for every k in (1, 10, 100) up to this."""
    temperature: float = 0.8


@dataclass
class TaskResult:
    metrics: dict[str, float]
    samples: list[dict[str, Any]] = field(default_factory=list)
    style: str = PLAIN
    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    """Scores per group (MMLU: per subject)."""


def generation_limit(task: Task, options: EvalOptions) -> int:
    return options.max_new_tokens or task.layout.max_new_tokens or DEFAULT_MAX_NEW_TOKENS


def check_code_execution(task: Task, options: EvalOptions) -> None:
    if task.kind == "code" and not options.allow_code_execution:
        raise LmforgeError(
            f"{task.source}: {task.name} scores model-written programs by running them; pass "
            "--allow-code-execution to run each in a sandboxed subprocess (see the README), "
            "or leave the task out"
        )


def evaluate_task(model, tokenizer, meta: dict, task: Task, options: EvalOptions) -> TaskResult:
    check_code_execution(task, options)
    style = make_style(options.style or default_style(meta), tokenizer, meta)
    if task.kind == "perplexity":
        return _perplexity(model, tokenizer, meta, task, style, options)
    shots = draw_shots(task, options.shots, options.seed, options.fewshot_sampler)
    contexts = [style.context(s, item, task.layout) for s, item in zip(shots, task.items)]
    if task.kind == "multiple_choice":
        return _multiple_choice(model, tokenizer, task, style, contexts, options)
    if task.kind == "code":
        return _code(model, tokenizer, task, style, contexts, options)
    raw = _generate(model, tokenizer, task, style, contexts, options)
    outputs = [_without_special_tokens(text, tokenizer) for text in raw]
    if task.kind == "generate":
        result = _exact_match(task, contexts, outputs, raw)
    else:
        result = {"answer_phrase": _answer_phrase, "translation": _translation, "qa": _qa}[task.kind](
            task, contexts, outputs
        )
    result.style = style.name
    return result


# ------------------------------------------------------------------------ log-likelihood


def _multiple_choice(
    model, tokenizer, task: Task, style: PromptStyle, contexts: list[str], options: EvalOptions
) -> TaskResult:
    delimiter = style.target_delimiter(task.layout)
    requests = [(context, delimiter + choice) for item, context in zip(task.items, contexts) for choice in item.choices]
    max_length = loglik.model_max_length(model)
    rows = [loglik.pair_row(*loglik.encode_pair(tokenizer, c, x), max_length) for c, x in requests]
    scored = iter(
        loglik.score_rows(
            model, rows, tokenizer.pad_token_id, options.batch_size, options.show_progress, label="scoring choices"
        )
    )
    per_metric: dict[str, list[float]] = {"acc": [], "acc_norm": [], "acc_bytes": []}
    samples = []
    for item, context in zip(task.items, contexts):
        lls = [next(scored).loglik for _ in item.choices]
        picked = metrics.choice_predictions(lls, item.choices)
        for name, index in picked.items():
            per_metric[name].append(float(index == item.gold))
        samples.append(
            {
                "where": item.where,
                "context": context,
                "logliks": lls,
                "gold": item.gold,
                **picked,
                **({"group": item.group} if item.group else {}),
            }
        )
    result = TaskResult(_means(per_metric), samples, style.name)
    if any(item.group for item in task.items):
        result.groups = _by_group(task, per_metric)
        # MMLU reports both: `acc`, over all questions (the harness's group score weighs
        # subjects by size), and `acc_macro`, the mean of the subjects' accuracies
        result.metrics["acc_macro"] = metrics.mean([g["acc"] for g in result.groups.values()])
    return result


def _by_group(task: Task, per_metric: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    groups: dict[str, dict[str, list[float]]] = {}
    for index, item in enumerate(task.items):
        for name, values in per_metric.items():
            groups.setdefault(item.group, {}).setdefault(name, []).append(values[index])
    return {group: _means(values) for group, values in groups.items()}


def _perplexity(model, tokenizer, meta: dict, task: Task, style: PromptStyle, options: EvalOptions) -> TaskResult:
    from lmforge.data.formats import get_format
    from lmforge.data.tokenize import encode_conversation

    max_length = loglik.model_max_length(model)
    rows, samples = [], []
    words = n_bytes = 0
    for item in task.items:
        if item.text is not None:
            ids = loglik.encode(tokenizer, item.text)
            item_rows = loglik.rolling_rows(ids, loglik.prefix_token_id(tokenizer), max_length)
            words += metrics.count_words(item.text)
            n_bytes += len(item.text.encode("utf-8"))
        else:
            if style.name == PLAIN:
                raise LmforgeError(
                    f"{task.source}: perplexity on chat records needs a prompt format; "
                    "pass --format remask|openassistant|chat_template"
                )
            # the format's own BOS rule applies (encode_conversation adds it)
            encoded = encode_conversation(item.conversation, get_format(style.name), tokenizer)
            ids = encoded.input_ids[-(max_length + 1) :]
            labels = encoded.labels[-(max_length + 1) :]
            item_rows = [loglik.Row(ids, [i > 0 and label != -100 for i, label in enumerate(labels)])]
        rows.append(item_rows)
    flat = [row for item_rows in rows for row in item_rows]
    scored = iter(
        loglik.score_rows(
            model, flat, tokenizer.pad_token_id, options.batch_size, options.show_progress, label="scoring text"
        )
    )
    total_ll, total_tokens = 0.0, 0
    for item, item_rows in zip(task.items, rows):
        parts = [next(scored) for _ in item_rows]
        ll, tokens = sum(p.loglik for p in parts), sum(p.tokens for p in parts)
        total_ll += ll
        total_tokens += tokens
        samples.append({"where": item.where, "loglik": ll, "tokens": tokens})
    if total_tokens == 0:
        raise LmforgeError(f"{task.source}: no tokens to score (empty texts, or chats without assistant turns)")
    result = metrics.perplexities(total_ll, total_tokens, words, n_bytes)
    if not words:  # chat: word and byte counts are not defined over label tokens
        result = {k: v for k, v in result.items() if k in ("perplexity", "nll_per_token")}
    result["tokens"] = total_tokens
    return TaskResult(result, samples, style.name)


# ------------------------------------------------------------------------ generation


def _generate(
    model, tokenizer, task: Task, style: PromptStyle, contexts: list[str], options: EvalOptions, **sampling: Any
) -> list[str]:
    stop_strings = style.stop_strings(task.layout)
    token_stops = [s for s in stop_strings if s in tokenizer.get_vocab()]
    stop_ids = stop_token_ids(tokenizer, [tokenizer.eos_token, *token_stops])
    limit = generation_limit(task, options)
    # the harness keeps a prompt's last (model length - generation limit) tokens; when the
    # limit alone fills the model's positions (it refuses that), prompts stay whole
    room = loglik.model_max_length(model) - limit
    return generate(
        model,
        tokenizer,
        contexts,
        stop_ids,
        max_new_tokens=limit,
        batch_size=options.batch_size,
        add_bos=False,
        show_progress=options.show_progress,
        stop_strings=[s for s in stop_strings if s not in token_stops],
        skip_special_tokens=False,
        max_prompt_tokens=room if room > 0 else None,
        **sampling,
    )


def _without_special_tokens(text: str, tokenizer) -> str:
    for token in tokenizer.all_special_tokens:
        text = text.replace(token, "")
    return text


def _exact_match(task: Task, contexts: list[str], outputs: list[str], raw: list[str]) -> TaskResult:
    """strict: the harness's `#### n` filter, or, for a model answering in the ReMask
    format, its `<|answer|>` segment; flexible: the last number in the output."""
    per_metric: dict[str, list[float]] = {"exact_match_strict": [], "exact_match_flexible": []}
    samples = []
    for item, context, output, text in zip(task.items, contexts, outputs, raw):
        strict = extract_strict_answer(text)
        flexible = extract_flexible(output)
        per_metric["exact_match_strict"].append(float(harness_match(strict, item.gold)))
        per_metric["exact_match_flexible"].append(float(harness_match(flexible, item.gold)))
        samples.append(
            {
                "where": item.where,
                "context": context,
                "output": output,
                "strict": strict,
                "flexible": flexible,
                "gold": item.gold,
                "correct_strict": bool(per_metric["exact_match_strict"][-1]),
            }
        )
    return TaskResult(_means(per_metric), samples)


def _answer_phrase(task: Task, contexts: list[str], outputs: list[str]) -> TaskResult:
    """BBH: the answer after "the answer is" (the harness's get-answer filter), compared
    with the target exactly, as the harness's exact_match without options does."""
    per_metric: dict[str, list[float]] = {"exact_match": []}
    samples = []
    for item, context, output in zip(task.items, contexts, outputs):
        answer = RULES["the_answer_is"](output)
        per_metric["exact_match"].append(float(answer is not None and answer == item.gold))
        samples.append(
            {
                "where": item.where,
                "context": context,
                "output": output,
                "answer": answer,
                "gold": item.gold,
                "correct": bool(per_metric["exact_match"][-1]),
            }
        )
    return TaskResult(_means(per_metric), samples)


PASS_AT = (1, 10, 100)


def _code(model, tokenizer, task: Task, style: PromptStyle, contexts: list[str], options: EvalOptions) -> TaskResult:
    """HumanEval: `samples` completions per problem, each run with the problem's tests in
    the sandbox; pass@k by the unbiased estimator for every k in PASS_AT up to `samples`."""
    from concurrent.futures import ThreadPoolExecutor

    from lmforge.eval.sandbox import check_candidate, pass_at_k

    n = options.samples
    if n < 1:
        raise LmforgeError(f"--samples {n}: must be at least 1")
    sampling = {"do_sample": True, "temperature": options.temperature, "seed": options.seed} if n > 1 else {}
    repeated = [context for context in contexts for _ in range(n)]
    completions = [
        _without_special_tokens(text, tokenizer)
        for text in _generate(model, tokenizer, task, style, repeated, options, **sampling)
    ]
    programs = [
        (item, _program_head(item, completion, style), completion)
        for index, item in enumerate(task.items)
        for completion in completions[index * n : (index + 1) * n]
    ]
    # the programs are subprocesses: threads only wait on them
    with ThreadPoolExecutor(max_workers=max(1, min(8, (os.cpu_count() or 1)))) as pool:
        outcomes = list(
            pool.map(
                lambda p: check_candidate(
                    p[1], "", p[0].gold["test"], p[0].gold["entry_point"], allowed=True, timeout_s=CODE_TIMEOUT_S
                ),
                programs,
            )
        )
    ks = [k for k in PASS_AT if k <= n]
    per_metric: dict[str, list[float]] = {f"pass@{k}": [] for k in ks}
    samples = []
    for index, (item, context) in enumerate(zip(task.items, contexts)):
        mine = outcomes[index * n : (index + 1) * n]
        passed = sum(o.passed for o in mine)
        for k in ks:
            per_metric[f"pass@{k}"].append(pass_at_k(n, passed, k))
        samples.append(
            {
                "where": item.where,
                "task_id": item.gold["task_id"],
                "context": context,
                "completions": completions[index * n : (index + 1) * n],
                "passed": passed,
                "n": n,
                "results": [o.reason for o in mine],
            }
        )
    return TaskResult(_means(per_metric), samples, style.name)


def _program_head(item, completion: str, style: PromptStyle) -> str:
    """What runs before the tests: the prompt and the completion, as the harness builds it
    (`doc["prompt"] + completion`); a chat-style answer that writes the whole function
    (its `def <entry_point>` included) runs alone."""
    if style.name != PLAIN and f"def {item.gold['entry_point']}" in completion:
        return completion
    return item.plain + completion


def _translation(task: Task, contexts: list[str], outputs: list[str]) -> TaskResult:
    predictions = [o.strip() for o in outputs]
    references = [item.gold for item in task.items]
    target_lang = (task.options.get("langs") or "").partition("-")[2] or None
    samples = [
        {"where": i.where, "context": c, "output": p, "reference": r}
        for i, c, p, r in zip(task.items, contexts, predictions, references)
    ]
    return TaskResult(metrics.bleu_chrf(predictions, references, target_lang), samples)


def _qa(task: Task, contexts: list[str], outputs: list[str]) -> TaskResult:
    per_metric: dict[str, list[float]] = {"f1": [], "exact_match": []}
    samples = []
    for item, context, output in zip(task.items, contexts, outputs):
        scores = metrics.squad_scores(output.strip(), item.gold)
        for name, value in scores.items():
            per_metric[name].append(value)
        samples.append({"where": item.where, "context": context, "output": output, "answers": item.gold, **scores})
    return TaskResult(_means(per_metric), samples)


def _means(per_metric: dict[str, list[float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, values in per_metric.items():
        out[name] = metrics.mean(values)
        out[f"{name}_stderr"] = metrics.stderr_of_mean(values)
    out["n"] = len(next(iter(per_metric.values()), []))
    return out
