"""The pretraining demo's corpus: three plain-text "sources" of different styles, each a
JSONL file of {"text": document}, deterministic by seed.

    arithmetic  word problems worked out in prose ("Anna has 3 boxes ... 3 * 4 = 12. ...
                The answer is 7.")
    code        small Python functions (loops, conditionals, arithmetic on arguments)
    records     key-value records ("id: 1042 | name: Mia | city: Oslo | age: 34 | ...")
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from lmforge.demo.arithmetic import make_problem

CITIES = ["Oslo", "Paris", "Lima", "Cairo", "Tokyo", "Quito", "Perth", "Dakar", "Hanoi", "Riga"]
ROLES = ["engineer", "teacher", "nurse", "baker", "pilot", "farmer", "clerk", "chef"]
PEOPLE = ["Tom", "Anna", "Ben", "Lily", "Sam", "Mia", "Jack", "Emma", "Leo", "Zoe", "Max", "Ella"]
VERBS = ["scale", "shift", "count", "total", "mix", "step", "fold", "sum"]
ARGS = ["x", "y", "n", "value", "size", "count"]


def arithmetic_document(rng: random.Random) -> str:
    problem = make_problem(rng)
    return f"{problem['question']} {problem['rationale']} The answer is {problem['answer']}."


def code_document(rng: random.Random) -> str:
    name = f"{rng.choice(VERBS)}_{rng.choice(ARGS)}_{rng.randint(1, 9)}"
    arg, other = rng.sample(ARGS, 2)
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    op = rng.choice(["+", "-", "*"])
    kind = rng.randrange(3)
    if kind == 0:
        body = f"    return {arg} {op} {a}\n"
    elif kind == 1:
        body = f"    total = 0\n    for i in range({a}):\n        total = total {op} {arg}\n    return total\n"
    else:
        body = f"    if {arg} > {a}:\n        return {arg} {op} {b}\n    return {other}\n"
    params = arg if kind != 2 else f"{arg}, {other}"
    return f"def {name}({params}):\n{body}"


def record_document(rng: random.Random) -> str:
    fields = [
        f"id: {rng.randint(1000, 9999)}",
        f"name: {rng.choice(PEOPLE)}",
        f"city: {rng.choice(CITIES)}",
        f"age: {rng.randint(18, 80)}",
        f"role: {rng.choice(ROLES)}",
    ]
    return " | ".join(fields)


SOURCES: dict[str, Callable[[random.Random], str]] = {
    "arithmetic": arithmetic_document,
    "code": code_document,
    "records": record_document,
}


def write_corpus(directory: Path, documents: int, seed: int) -> dict[str, Path]:
    """One JSONL file per source, `documents` documents each; {source: path}."""
    paths = {}
    for index, (name, make) in enumerate(SOURCES.items()):
        rng = random.Random(seed * 1000 + index)
        path = directory / f"{name}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for _ in range(documents):
                handle.write(json.dumps({"text": make(rng)}) + "\n")
        paths[name] = path
    return paths
