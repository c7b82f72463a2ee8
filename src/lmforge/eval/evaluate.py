"""Run one task on a loaded model: build the prompts, score or generate in batches, and
turn the outputs into metrics and per-item samples. One function per task kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lmforge.errors import LmforgeError
from lmforge.eval import loglik, metrics
from lmforge.eval.answers import extract_flexible, extract_strict_answer, harness_match
from lmforge.eval.fewshot import HARNESS, PLAIN, PromptStyle, default_style, draw_shots, make_style
from lmforge.eval.generate import generate, stop_token_ids
from lmforge.eval.tasks import Task


@dataclass(frozen=True)
class EvalOptions:
    shots: int = 0
    seed: int = 1234
    """Few-shot seed (the harness's default fewshot seed is 1234 too)."""
    fewshot_sampler: str = HARNESS
    """How examples are drawn (fewshot.py): `harness` (its draws, for every style) or `per-item`."""
    style: str | None = None
    """Prompt format; None: the model's own (lmforge models), else plain."""
    batch_size: int = 16
    max_new_tokens: int = 256
    show_progress: bool = False


@dataclass
class TaskResult:
    metrics: dict[str, float]
    samples: list[dict[str, Any]] = field(default_factory=list)
    style: str = PLAIN


def evaluate_task(model, tokenizer, meta: dict, task: Task, options: EvalOptions) -> TaskResult:
    style = make_style(options.style or default_style(meta), tokenizer, meta)
    if task.kind == "perplexity":
        return _perplexity(model, tokenizer, meta, task, style, options)
    shots = draw_shots(task, options.shots, options.seed, options.fewshot_sampler)
    contexts = [style.context(s, item) for s, item in zip(shots, task.items)]
    if task.kind == "multiple_choice":
        return _multiple_choice(model, tokenizer, task, style, contexts, options)
    raw = _generate(model, tokenizer, meta, task, style, contexts, options)
    outputs = [_without_special_tokens(text, tokenizer) for text in raw]
    if task.kind == "generate":
        result = _exact_match(task, contexts, outputs, raw)
    else:
        result = {"translation": _translation, "qa": _qa}[task.kind](task, contexts, outputs)
    result.style = style.name
    return result


# ------------------------------------------------------------------------ log-likelihood


def _multiple_choice(model, tokenizer, task: Task, style: PromptStyle, contexts: list[str],
                     options: EvalOptions) -> TaskResult:
    requests = [(context, style.target_delimiter + choice) for item, context in zip(task.items, contexts)
                for choice in item.choices]
    max_length = loglik.model_max_length(model)
    rows = [loglik.pair_row(*loglik.encode_pair(tokenizer, c, x), max_length) for c, x in requests]
    scored = iter(loglik.score_rows(model, rows, tokenizer.pad_token_id, options.batch_size, options.show_progress,
                                    label="scoring choices"))
    per_metric: dict[str, list[float]] = {"acc": [], "acc_norm": [], "acc_bytes": []}
    samples = []
    for item, context in zip(task.items, contexts):
        lls = [next(scored).loglik for _ in item.choices]
        picked = metrics.choice_predictions(lls, item.choices)
        for name, index in picked.items():
            per_metric[name].append(float(index == item.gold))
        samples.append({"where": item.where, "context": context, "logliks": lls, "gold": item.gold, **picked})
    return TaskResult(_means(per_metric), samples, style.name)


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
                raise LmforgeError(f"{task.source}: perplexity on chat records needs a prompt format; "
                                   "pass --format remask|openassistant|chat_template")
            # the format's own BOS rule applies (encode_conversation adds it)
            encoded = encode_conversation(item.conversation, get_format(style.name), tokenizer)
            ids = encoded.input_ids[-(max_length + 1):]
            labels = encoded.labels[-(max_length + 1):]
            item_rows = [loglik.Row(ids, [i > 0 and label != -100 for i, label in enumerate(labels)])]
        rows.append(item_rows)
    flat = [row for item_rows in rows for row in item_rows]
    scored = iter(loglik.score_rows(model, flat, tokenizer.pad_token_id, options.batch_size, options.show_progress,
                                    label="scoring text"))
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


def _generate(model, tokenizer, meta: dict, task: Task, style: PromptStyle, contexts: list[str],
              options: EvalOptions) -> list[str]:
    stop_strings = style.stop_strings(task.kind)
    token_stops = [s for s in stop_strings if s in tokenizer.get_vocab()]
    stop_ids = stop_token_ids(tokenizer, [tokenizer.eos_token, *token_stops])
    # the harness keeps a prompt's last (model length - generation limit) tokens; when the
    # limit alone fills the model's positions (it refuses that), prompts stay whole
    room = loglik.model_max_length(model) - options.max_new_tokens
    return generate(model, tokenizer, contexts, stop_ids, max_new_tokens=options.max_new_tokens,
                    batch_size=options.batch_size, add_bos=False, show_progress=options.show_progress,
                    stop_strings=[s for s in stop_strings if s not in token_stops], skip_special_tokens=False,
                    max_prompt_tokens=room if room > 0 else None)


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
        samples.append({"where": item.where, "context": context, "output": output, "strict": strict,
                        "flexible": flexible, "gold": item.gold,
                        "correct_strict": bool(per_metric["exact_match_strict"][-1])})
    return TaskResult(_means(per_metric), samples)


def _translation(task: Task, contexts: list[str], outputs: list[str]) -> TaskResult:
    predictions = [o.strip() for o in outputs]
    references = [item.gold for item in task.items]
    target_lang = (task.options.get("langs") or "").partition("-")[2] or None
    samples = [{"where": i.where, "context": c, "output": p, "reference": r}
               for i, c, p, r in zip(task.items, contexts, predictions, references)]
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
