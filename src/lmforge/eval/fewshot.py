"""Few-shot prompting: which pool examples each evaluated item gets, and how the examples
and the query are rendered in a prompt style.

Styles: `plain` is the lm-evaluation-harness layout for base models,

    Question: <q1>\\nAnswer: <target 1>\\n\\nQuestion: <q2>\\nAnswer: <target 2>\\n\\nQuestion: <q>\\nAnswer:

with continuations joined by one space; the other styles are lmforge's prompt formats
(remask, openassistant, chat_template), where every example is a finished user/assistant
exchange and the query ends with the format's generation prompt.

Samplers (`--fewshot-sampler`):

- `harness` (the default, whatever the style): lm-evaluation-harness 0.4.x's
  `ContextSampler` (lm_eval/api/samplers.py). One `random.Random(seed)` per task, seed
  1234 unless set (evaluator.py `set_fewshot_seed`), advanced item after item in file
  order; each item takes `rnd.sample(pool, k)`. When the pool is the evaluated file itself
  (the harness's `fewshot_split == test_split`), it draws k+1 and drops the records equal to
  the item, keeping the first k (if equal copies leave fewer than k, it draws k again from
  the pool without them). The draws do not depend on the style, so `--format a,b` compares
  formats on the same examples, and the harness's `--apply_chat_template` runs draw them
  too; a plain prompt is byte for byte the harness's. `--limit N` keeps the first N draws.
- `per-item`: item i draws with its own generator seeded by (seed, i), so a prompt never
  depends on the other items (reordering a file leaves each item's prompt as it was).
- `first_n`: the harness's `FirstNSampler` (MMLU's canonical examples): the pool's first k
  records, less the item's own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from lmforge.data.conversation import Segment
from lmforge.data.formats import FORMATS, get_format
from lmforge.errors import LmforgeError
from lmforge.eval.tasks import GSM8K_LAYOUT, Item, Layout, Task

PLAIN = "plain"
STYLES = (PLAIN, *FORMATS)
PLAIN_UNTIL = GSM8K_LAYOUT.until
"""The harness GSM8K task's `until` (tasks/gsm8k/gsm8k.yaml); the generation limit is
EvalOptions.max_new_tokens, 256 as the harness's `max_gen_toks` default."""
HARNESS, PER_ITEM, FIRST_N = "harness", "per-item", "first_n"
SAMPLERS = (HARNESS, PER_ITEM, FIRST_N)


def draw_shots(task: Task, k: int, seed: int, sampler: str | None = None) -> list[list[Item]]:
    """k pool examples for every item of `task` (never the item itself), drawn by `sampler`
    (None: the task's own, e.g. first_n for MMLU). Items with a group (MMLU's subject) draw
    from their group's part of the pool, with a generator per group, as the harness runs
    each subject as a task of its own."""
    if k < 0:
        raise LmforgeError(f"--shots {k}: must be 0 or more")
    sampler = check_sampler(sampler or task.layout.sampler)
    if k == 0:
        return [[] for _ in task.items]
    if not any(item.group for item in task.items):
        return _draw(task, list(enumerate(task.items)), task.pool, k, seed, sampler, "")
    shots: dict[int, list[Item]] = {}
    for group in dict.fromkeys(item.group for item in task.items):
        indices = [i for i, item in enumerate(task.items) if item.group == group]
        pool = [x for x in task.pool if x.group == group]
        for index, drawn in zip(
            indices, _draw(task, [(i, task.items[i]) for i in indices], pool, k, seed, sampler, group)
        ):
            shots[index] = drawn
    return [shots[i] for i in range(len(task.items))]


def _draw(
    task: Task, items: list[tuple[int, Item]], pool: list[Item], k: int, seed: int, sampler: str, group: str
) -> list[list[Item]]:
    """Draws for `items` (each with its index in the task) from `pool`."""
    # the harness's test: is the few-shot split the evaluated one? (then an item's own record is left out)
    same_split = task.pool_source == task.source
    available = len(pool) - (1 if same_split else 0)
    if k > available:
        where = f" for subject '{group}'" if group else ""
        detail = f" ({len(pool)} records, less the one evaluated)" if same_split else ""
        raise LmforgeError(
            f"--shots {k}: the few-shot pool {task.pool_source} has only {max(available, 0)} examples{where}{detail}"
        )
    if sampler == PER_ITEM:
        return [
            random.Random(seed * 1_000_003 + index).sample(_others(pool, item, same_split, k, task.pool_source), k)
            for index, item in items
        ]
    if sampler == FIRST_N:
        return [_others(pool, item, same_split, k, task.pool_source)[:k] for _, item in items]
    rnd = random.Random(seed)  # one generator for the whole task, as the harness's sampler
    shots = []
    for _, item in items:
        if not same_split:
            shots.append(rnd.sample(pool, k))
            continue
        drawn = [x for x in rnd.sample(pool, k + 1) if not _same_record(x, item)][:k]
        if len(drawn) < k:  # equal copies of the item were drawn (samplers.py: the resample)
            drawn = rnd.sample(_others(pool, item, True, k, task.pool_source), k)
        shots.append(drawn)
    return shots


def _same_record(a: Item, b: Item) -> bool:
    """The harness compares documents by value (`x != doc`); an Item's `where` (file:line)
    is not part of the record."""
    return _value(a) == _value(b)


def _value(item: Item) -> Item:
    conversation = item.conversation and replace(item.conversation, source="")
    return replace(item, where="", conversation=conversation)


def _others(pool: list[Item], item: Item, same_split: bool, k: int, pool_source: str) -> list[Item]:
    """The pool less the item's own record (and its equal copies) when the pool is the evaluated file."""
    others = [x for x in pool if not _same_record(x, item)] if same_split else list(pool)
    if len(others) < k:
        raise LmforgeError(
            f"--shots {k}: {item.where} has copies in the few-shot pool {pool_source}; "
            f"only {len(others)} other examples are left"
        )
    return others


def check_sampler(name: str) -> str:
    if name not in SAMPLERS:
        raise LmforgeError(f"--fewshot-sampler {name}: unknown sampler; valid: {', '.join(SAMPLERS)}")
    return name


@dataclass(frozen=True)
class PromptStyle:
    """Renders few-shot contexts in one style for one tokenizer. `bos` is prepended as text
    (the tokenizer then adds nothing), so scoring and the harness see the same ids."""

    name: str
    tokenizer: object
    bos: str = ""
    cot: bool = False
    """Chat styles: CoT items are answered rationale first (remask's <|rationale|>)."""

    def target_delimiter(self, layout: Layout) -> str:
        return layout.target_delimiter if self.name == PLAIN else ""

    def context(self, shots: list[Item], query: Item, layout: Layout = Layout()) -> str:
        """The prompt of `query` after `shots`; a plain one is the harness's
        description + (query, delimiter, target, fewshot delimiter) per shot + query."""
        if self.name == PLAIN:
            examples = "".join(f"{s.plain}{layout.target_delimiter}{s.target}{layout.fewshot_delimiter}" for s in shots)
            return self.bos + query.description + examples + query.plain
        prompt_format = get_format(self.name)
        segments: list[Segment] = []
        for shot in shots:
            segments += [Segment("user", shot.user), *self._response(shot)]
        segments.append(Segment("user", query.user))
        cot = self.cot and any(s.role == "rationale" for s in query.response)
        return self.bos + prompt_format.generation_prompt(tuple(segments), self.tokenizer, cot=cot)

    def _response(self, shot: Item) -> tuple[Segment, ...]:
        # Only remask has rationale/answer tags; the others show a CoT answer as one
        # assistant turn ending in "#### n", as they train on it.
        if self.name == "remask" and self.cot:
            return shot.response
        return (Segment("assistant", shot.target),)

    def stop_strings(self, layout: Layout) -> list[str]:
        """Text that ends a generated answer (special stop tokens are handled as ids): the
        task's `until` in plain prompts, the prompt format's end of turn otherwise."""
        if self.name == PLAIN:
            return list(layout.until)
        return list(get_format(self.name).stop_strings(self.tokenizer))


def check_style(name: str) -> str:
    if name not in STYLES:
        raise LmforgeError(f"--format {name}: unknown prompt format; valid: {', '.join(STYLES)}")
    return name


def tokenizer_adds_bos(tokenizer) -> bool:
    if tokenizer.bos_token_id is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def make_style(name: str, tokenizer, meta: dict) -> PromptStyle:
    """The style `name` for a model: lmforge models were trained with a BOS first (except
    under chat templates, which write their own); other models get one when their
    tokenizer adds one by itself, as the harness then has it."""
    check_style(name)
    if name == "chat_template":
        bos = ""
    elif meta.get("prompt_format"):
        bos = tokenizer.bos_token if tokenizer.bos_token_id is not None else ""
    else:
        bos = tokenizer.bos_token if tokenizer_adds_bos(tokenizer) else ""
    return PromptStyle(name, tokenizer, bos or "", cot=bool(meta.get("cot", True)))


def default_style(meta: dict) -> str:
    """The model's own prompt format when lmforge trained it, else plain."""
    return meta.get("prompt_format") or PLAIN
