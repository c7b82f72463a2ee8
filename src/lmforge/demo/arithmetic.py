"""Synthetic multi-step arithmetic word problems with a rationale and an answer,
deterministic by seed. Each problem is a CoT record: {question, rationale, answer}.

    question:  "Anna has 3 boxes of stickers with 4 stickers in each. Then she loses 5.
                How many stickers does Anna have now?"
    rationale: "3 * 4 = 12. 12 - 5 = 7."
    answer:    "7"
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NAMES = [
    ("Tom", "he"),
    ("Anna", "she"),
    ("Ben", "he"),
    ("Lily", "she"),
    ("Sam", "he"),
    ("Mia", "she"),
    ("Jack", "he"),
    ("Emma", "she"),
    ("Leo", "he"),
    ("Zoe", "she"),
    ("Max", "he"),
    ("Ella", "she"),
]
FOODS = ["apples", "cookies", "candies", "oranges", "cupcakes", "grapes"]
THINGS = ["marbles", "stickers", "pencils", "cards", "coins", "books", "toys", "stamps"]
CONTAINERS = ["boxes", "bags", "packs", "jars"]
GAIN = ["buys {n} more", "gets {n} more", "finds {n} more", "receives {n} more"]
LOSS = ["gives away {n}", "loses {n}", "sells {n}"]
EAT = ["eats {n}"]
JOIN_2 = ["{P} {a}, then {b}.", "First {p} {a}. Then {p} {b}.", "{P} {a} and later {b}."]
JOIN_3 = ["{P} {a}, then {b}, and then {c}.", "First {p} {a}. Then {p} {b}. Finally {p} {c}."]
QUESTIONS = ["How many {o} does {N} have now?", "How many {o} does {N} have in the end?"]


@dataclass(frozen=True)
class Difficulty:
    max_operand: int = 20
    """Operands of + and - are 1..max_operand."""
    max_factor: int = 5
    """Factors of the optional opening multiplication are 2..max_factor."""
    max_value: int = 60
    """No intermediate result exceeds this; none is negative."""
    p_three_steps: float = 0.5
    p_multiply: float = 0.25


def make_problem(rng: random.Random, difficulty: Difficulty = Difficulty()) -> dict[str, str]:
    name, pronoun = rng.choice(NAMES)
    is_food = rng.random() < 0.5
    objects = rng.choice(FOODS if is_food else THINGS)
    steps = 3 if rng.random() < difficulty.p_three_steps else 2
    equations: list[str] = []
    if rng.random() < difficulty.p_multiply:
        count, each = rng.randint(2, difficulty.max_factor), rng.randint(2, difficulty.max_factor)
        value = count * each
        opening = f"{name} has {count} {rng.choice(CONTAINERS)} of {objects} with {each} {objects} in each."
        equations.append(f"{count} * {each} = {value}.")
        steps -= 1
    else:
        value = rng.randint(1, difficulty.max_operand)
        opening = f"{name} has {value} {objects}."
    phrases = []
    for _ in range(steps):
        if value >= 1 and (rng.random() < 0.5 or value + 1 > difficulty.max_value):
            n = rng.randint(1, min(difficulty.max_operand, value))
            phrases.append(rng.choice(LOSS + (EAT if is_food else [])).format(n=n))
            equations.append(f"{value} - {n} = {value - n}.")
            value -= n
        else:
            n = rng.randint(1, min(difficulty.max_operand, difficulty.max_value - value))
            phrases.append(rng.choice(GAIN).format(n=n))
            equations.append(f"{value} + {n} = {value + n}.")
            value += n
    subject = pronoun.capitalize()
    if len(phrases) == 1:
        body = f"{subject} {phrases[0]}."
    else:
        template = rng.choice(JOIN_2 if len(phrases) == 2 else JOIN_3)
        body = template.format(P=subject, p=pronoun, a=phrases[0], b=phrases[1], c=phrases[-1])
    question = f"{opening} {body} {rng.choice(QUESTIONS).format(o=objects, N=name)}"
    return {"question": question, "rationale": " ".join(equations), "answer": str(value)}


def make_splits(
    n_train: int, n_test: int, seed: int, difficulty: Difficulty = Difficulty()
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Train and test problems; no test question appears in train."""
    rng = random.Random(seed)
    train = [make_problem(rng, difficulty) for _ in range(n_train)]
    test = make_held_out(n_test, seed + 1_000_003, {p["question"] for p in train}, difficulty)
    return train, test


def make_held_out(n: int, seed: int, exclude: set[str], difficulty: Difficulty = Difficulty()) -> list[dict[str, str]]:
    """`n` distinct problems drawn with `seed`, none of whose questions is in `exclude`
    (e.g. a validation split held out from both a train and a test split)."""
    rng = random.Random(seed)
    seen = set(exclude)
    held_out: list[dict[str, str]] = []
    while len(held_out) < n:
        problem = make_problem(rng, difficulty)
        if problem["question"] not in seen:
            seen.add(problem["question"])
            held_out.append(problem)
    return held_out
