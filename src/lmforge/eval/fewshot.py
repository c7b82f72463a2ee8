"""Few-shot prompting: which pool examples each evaluated item gets, and how the examples
and the query are rendered in a prompt style.

Styles: `plain` is the lm-evaluation-harness layout for base models,

    Question: <q1>\\nAnswer: <target 1>\\n\\nQuestion: <q2>\\nAnswer: <target 2>\\n\\nQuestion: <q>\\nAnswer:

with continuations joined by one space; the other styles are lmforge's prompt formats
(remask, openassistant, chat_template), where every example is a finished user/assistant
exchange and the query ends with the format's generation prompt.

Sampling is per item: item i draws its examples with its own generator seeded by
(seed, i), so a prompt never depends on batching, order or `--limit`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lmforge.data.conversation import Segment
from lmforge.data.formats import FORMATS, get_format
from lmforge.errors import LmforgeError
from lmforge.eval.tasks import Item, Task

PLAIN = "plain"
STYLES = (PLAIN, *FORMATS)
SHOT_DELIMITER = "\n\n"
TARGET_DELIMITER = " "


def draw_shots(task: Task, k: int, seed: int) -> list[list[Item]]:
    """k pool examples for every item of `task` (never the item itself)."""
    if k < 0:
        raise LmforgeError(f"--shots {k}: must be 0 or more")
    if k == 0:
        return [[] for _ in task.items]
    shots = []
    for index, item in enumerate(task.items):
        candidates = [example for example in task.pool if example is not item]
        if k > len(candidates):
            detail = f" ({len(task.pool)} records, less the one evaluated)" if len(candidates) < len(task.pool) else ""
            raise LmforgeError(f"--shots {k}: the few-shot pool {task.pool_source} has only {len(candidates)} "
                               f"examples{detail}")
        shots.append(random.Random(seed * 1_000_003 + index).sample(candidates, k))
    return shots


@dataclass(frozen=True)
class PromptStyle:
    """Renders few-shot contexts in one style for one tokenizer. `bos` is prepended as text
    (the tokenizer then adds nothing), so scoring and the harness see the same ids."""

    name: str
    tokenizer: object
    bos: str = ""
    cot: bool = False
    """Chat styles: CoT items are answered rationale first (remask's <|rationale|>)."""

    @property
    def target_delimiter(self) -> str:
        return TARGET_DELIMITER if self.name == PLAIN else ""

    def context(self, shots: list[Item], query: Item) -> str:
        if self.name == PLAIN:
            examples = "".join(f"{s.plain}{TARGET_DELIMITER}{s.target}{SHOT_DELIMITER}" for s in shots)
            return self.bos + examples + query.plain
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

    def stop_strings(self, kind: str) -> list[str]:
        """Text that ends a generated answer (special stop tokens are handled as ids)."""
        if self.name == PLAIN:
            return ["Question:"] if kind == "generate" else ["\n"]
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
