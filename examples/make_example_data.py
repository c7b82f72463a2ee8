"""Regenerate the small example files shipped in examples/ (deterministic):

    python examples/make_example_data.py

- data/arithmetic-cot.jsonl  600 CoT word problems (question/rationale/answer)
- data/arithmetic-cot-test.jsonl  100 held-out problems (no question shared with train)
- data/arithmetic-chat.jsonl the same kind of problems as OpenAI-style messages
- data/socratic.jsonl        32 hand-written chats in the spirit of seed 002 (MiniSymposium):
                             several perspectives, then a conclusion; a few correct themselves
- data/socratic-test.jsonl   8 more, held out, for `lmforge sweep` (presets/minisymposium.yaml)
- tokenizer/                 a 512-token byte-level BPE trained on them (no prompt-format
                             tokens: lmforge adds those itself). The socratic chats are not
                             part of its corpus; being byte-level, it encodes them anyway
- eval/mmlu_test.jsonl       12 multiple-choice questions over 3 subjects (cais/mmlu schema);
  eval/mmlu_dev.jsonl        5 per subject, the few-shot (dev) split: --fewshot-file
- eval/bbh_boolean_expressions.jsonl      8 BIG-Bench Hard style items (lukaemon/bbh schema);
  eval/bbh_boolean_expressions_cot.jsonl  3 chain-of-thought few-shot examples ("So the answer is X.")
- eval/humaneval.jsonl       5 small HumanEval-style problems (openai/openai_humaneval schema)
  The eval files are written for lmforge (no text from the real datasets); `write_eval_examples`
  writes only them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from lmforge.demo.arithmetic import make_problem, make_splits
from lmforge.demo.tokenizer import train_bpe_tokenizer

HERE = Path(__file__).resolve().parent

# Seed 002 (MiniSymposium): a small hand-written set that explores an answer from several
# sides before concluding; a few examples catch and correct their own first answer.
# Written by hand, kept short (the tiny preset's sequence length) and plain ASCII.
SOCRATIC = [
    (
        "Is it better to rent or to buy a home?",
        "One view: buying builds equity, while rent money is gone. Another view: renting keeps you free to move and "
        "spares you repair bills and a large down payment. A third: it depends on how long you stay, since the costs "
        "of selling eat the gains of a short stay. Conclusion: buy if you expect to stay many years and can afford "
        "the upkeep; otherwise rent.",
    ),
    (
        "Should I learn Python or JavaScript first?",
        "From a beginner's view, Python reads almost like English, so the ideas come before the syntax. From a job "
        "seeker's view, JavaScript runs every web page, so it is useful at once. From a teacher's view, the first "
        "language matters less than finishing small projects. Conclusion: pick the one that fits your first "
        "project; for most people that is Python.",
    ),
    (
        "Why is the sky blue?",
        "A first guess is that the sky reflects the ocean, but the sky is blue over deserts too, so that cannot be "
        "it. A better explanation: sunlight holds all colors, and air scatters short blue waves much more than long "
        "red ones. That also explains red sunsets, when light crosses more air and the blue is scattered away. "
        "Conclusion: the sky is blue because air scatters blue light the most.",
    ),
    (
        "What is 15% of 80?",
        "10% of 80 is 8, and 5% is half of that, 4. So 15% is 8 + 4 = 14. Wait, let me check that: 8 + 4 is 12, "
        "not 14. Checking another way: 0.15 x 80 = 12. Conclusion: 15% of 80 is 12.",
    ),
    (
        "Is it rude to check your phone during dinner?",
        "From the host's side, it can feel as if the meal and the company are not worth full attention. From the "
        "guest's side, there may be a good reason, such as a sick child or an on-call job. From a cultural side, "
        "habits differ between families and countries. Conclusion: it is usually seen as rude, so if you must, say "
        "why and keep it short.",
    ),
    (
        "How many legs does a spider have?",
        "One might think of insects, which have six legs, but spiders are not insects. Spiders are arachnids, and "
        "arachnids have eight legs. A spider can lose a leg and live on, so a given spider may show seven. "
        "Conclusion: a spider has eight legs.",
    ),
    (
        "Should a small town build a new road or a new park?",
        "A driver would say the road saves time and helps shops get deliveries. A parent would say the park gives "
        "children a safe place to play. A budget officer would ask which one costs more to keep up over twenty "
        "years. Conclusion: there is no single answer; the town should ask its people which problem hurts most "
        "today, and fund that.",
    ),
    (
        "Which is heavier, a kilogram of feathers or a kilogram of iron?",
        "At first the iron seems heavier, since iron is dense. But both are one kilogram, so their mass is the same; "
        "the iron only takes less space. Hmm, one more detail: in air, the big bag of feathers gets a little more "
        "lift, so a scale shows it slightly lower. Conclusion: the same mass; the difference on a scale is tiny.",
    ),
    (
        "Is coffee good or bad for you?",
        "Some studies link moderate coffee to a lower risk of some diseases. Others point out that too much can "
        "hurt sleep and raise anxiety. And people differ: some break down caffeine fast, others slowly. Conclusion: "
        "for most healthy adults a few cups a day seems fine; drink less if it keeps you awake.",
    ),
    (
        "Why do we have leap years?",
        "One could guess that it is just tradition, but there is a reason. The Earth takes about 365.25 days to go "
        "around the Sun. Without a fix, the calendar would drift by about a day every four years, and the seasons "
        "would slowly move. Adding February 29 every four years keeps them in place. Conclusion: leap years keep the "
        "calendar in step with the seasons.",
    ),
    (
        "How many days are there in three weeks and two days?",
        "Three weeks is 3 x 7 = 24 days, plus 2 is 26. Wait, that is wrong: 3 x 7 is 21, not 24. So the total is "
        "21 + 2 = 23. Conclusion: 23 days.",
    ),
    (
        "Should I tell a friend that their business idea is weak?",
        "Honesty says yes: a friend deserves the truth before they lose money. Kindness says be careful: harsh words "
        "can hurt more than they help. Practical sense says ask questions instead, like who will pay and why, so "
        "they find the weak spots themselves. Conclusion: be honest, but through questions and with respect.",
    ),
    (
        "What is the best way to remember new words in a language?",
        "One method is lists and flash cards, which work well for quick recall. Another is reading and listening, "
        "where words come with context. A third is using the words yourself, in speech or writing. Each alone is "
        "weaker than all three together. Conclusion: learn with cards, meet the words in context, then use them "
        "soon.",
    ),
    (
        "Is a tomato a fruit or a vegetable?",
        "A botanist says fruit, because it grows from the flower and holds seeds. A cook says vegetable, because it "
        "goes into savory dishes. A court in the United States once called it a vegetable for tax purposes. "
        "Conclusion: botanically a fruit, in the kitchen a vegetable.",
    ),
    (
        "Why do cats purr?",
        "The common view is that cats purr when they are happy. But cats also purr when hurt or giving birth, so "
        "happiness is not the whole story. One idea is that purring calms them; another is that its low sound may "
        "help healing. Conclusion: purring often means contentment, but it is also a way to cope with stress.",
    ),
    (
        "Who wrote Romeo and Juliet?",
        "It was Charles Dickens. No, wait, that is wrong: Dickens wrote novels such as Oliver Twist in the 1800s. "
        "Romeo and Juliet is a play from the 1590s, written by William Shakespeare. Conclusion: William Shakespeare.",
    ),
    (
        "Should students get homework every day?",
        "Some teachers say daily practice builds habits and memory. Some parents say long homework takes time from "
        "sleep, play and family. Research suggests that small amounts help older students more than young ones. "
        "Conclusion: short, useful homework makes sense for older students; young children need little.",
    ),
    (
        "What makes a good password?",
        "One view is that it should be complex, with symbols and numbers. Another is that length matters more: a "
        "long phrase of random words is hard to guess and easy to remember. A third view adds that reuse is the real "
        "danger. Conclusion: use long, unique passphrases, and a password manager to keep them.",
    ),
    (
        "Why does ice float on water?",
        "You might expect a solid to sink in its own liquid, and for most substances it does. Water is different: "
        "when it freezes, its molecules lock into an open pattern that takes more space. So ice is less dense than "
        "liquid water. Conclusion: ice floats because freezing makes water expand.",
    ),
    (
        "Is it better to work from home or in an office?",
        "A worker may like home for the quiet and the lack of travel. A manager may prefer the office for quick "
        "talks and team spirit. A new hire may learn faster near experienced people. Conclusion: a mix often works "
        "best, with quiet work at home and shared work at the office.",
    ),
    (
        "What is the capital of Australia?",
        "The biggest city is Sydney, so the capital is Sydney. Let me check that again: the biggest city is not "
        "always the capital. Australia chose Canberra as a compromise between Sydney and Melbourne. Conclusion: the "
        "capital of Australia is Canberra.",
    ),
    (
        "How can I sleep better?",
        "From a habits view: go to bed and wake up at the same times. From a room view: keep it dark, quiet and "
        "cool. From a daytime view: get light and movement during the day, and avoid coffee late. Conclusion: start "
        "with a fixed wake-up time, then fix the room.",
    ),
    (
        "Should I fix my old car or buy a new one?",
        "Fixing is cheaper this month, and you know the car's history. Buying costs more now but may save on repairs "
        "and fuel. Safety matters too: newer cars often protect better in a crash. Conclusion: if the repair costs "
        "less than half the car's value and the car is safe, fix it; otherwise start looking.",
    ),
    (
        "Why do leaves change color in autumn?",
        "One guess is that the cold paints them. In fact, the yellow and orange colors are there all summer, hidden "
        "under green chlorophyll. As days shorten, trees stop making chlorophyll and the other colors show. Reds are "
        "new pigments made in the fall. Conclusion: shorter days, not cold alone, bring out the colors.",
    ),
    (
        "If a train leaves at 9:40 and the trip takes 50 minutes, when does it arrive?",
        "9:40 plus 50 minutes is 9:90, so 10:90. Wait, that is not a real time. 9:40 plus 20 minutes is 10:00, and "
        "30 more minutes make 10:30. Conclusion: it arrives at 10:30.",
    ),
    (
        "Is it ever right to break a promise?",
        "A strict view says no: a promise only matters if it is kept. A practical view says yes, when keeping it "
        "would cause real harm, such as driving a friend home when you are too tired to drive safely. A middle view "
        "says you should then explain and make up for it. Conclusion: keep promises, unless keeping one does more "
        "harm, and then own it.",
    ),
    (
        "What should I pack for a one-day hike?",
        "Think as a planner: water, food, a map and a charged phone. Think as a weather watcher: a rain jacket and a "
        "warm layer, since mountain weather changes fast. Think as a first aider: plasters, and tell someone your "
        "route. Conclusion: water, food, layers, a map, and a plan that someone else knows.",
    ),
    (
        "Why do some people like horror movies?",
        "One reason is the thrill: fear in a safe seat gives a rush. Another is social: watching and screaming "
        "together builds bonds. A third is mastery: facing fears on screen can feel like practice for real life. "
        "Conclusion: people enjoy horror because it gives safe fear, shared fun and a sense of control.",
    ),
    (
        "Can you explain what a budget is to a child?",
        "A simple way: you have ten coins, and a budget is a plan for them before you spend. A second way: think of a "
        "pizza, where each slice goes to something, like toys, treats or saving. The key idea in both: when a slice "
        "is gone, it is gone. Conclusion: a budget is a plan that gives every coin a job.",
    ),
    (
        "How many continents are there?",
        "There are five. Hmm, that is not the usual count. Most schools that teach in English count seven: Africa, "
        "Antarctica, Asia, Australia, Europe, North America and South America. Some countries join the Americas, or "
        "Europe and Asia, and count six or five. Conclusion: seven in the common model, but the count depends on "
        "the model used.",
    ),
    (
        "Should I write my essay by hand or on a computer?",
        "By hand, many people think more slowly and remember more. On a computer, editing and moving paragraphs is "
        "much easier. For an exam, you may have no choice. Conclusion: draft ideas by hand if it helps you think, "
        "then write and edit on a computer.",
    ),
    (
        "Why do we yawn?",
        "A popular idea is that yawning brings in more oxygen, but studies have not supported it. Another idea is "
        "that yawning cools the brain. A third notes that yawns spread between people, which hints at a social role. "
        "Conclusion: nobody knows for sure; cooling the brain and a social signal are the leading ideas.",
    ),
]

# Held out from SOCRATIC (same style, other questions): `lmforge sweep --task` scores each
# checkpoint's perplexity on these to see where under-training turns into over-training.
SOCRATIC_TEST = [
    (
        "Is it better to read books or to listen to audiobooks?",
        "A reader says print lets you slow down, reread and take notes. A commuter says audio turns driving time "
        "into reading time. A learner may find that hearing a story keeps attention. Conclusion: both count; choose "
        "by where and how you will spend the time.",
    ),
    (
        "Why do we have seasons?",
        "Because the Earth is closer to the Sun in summer. Wait, that cannot be right: when it is summer in the "
        "north, it is winter in the south. The real reason is the tilt of the Earth's axis, which makes sunlight hit "
        "each half more directly at different times of year. Conclusion: seasons come from the tilt, not the "
        "distance.",
    ),
    (
        "Should I save money or pay off debt first?",
        "A saver says keep a small emergency fund, or a surprise bill puts you back in debt. A numbers person says "
        "pay off high-interest debt first, since it grows faster than savings. A cautious person says do a little of "
        "both. Conclusion: build a small cushion, then attack the debt with the highest interest.",
    ),
    (
        "How many minutes are in two and a half hours?",
        "Two hours is 120 minutes and half an hour is 50, so 170. No, half an hour is 30 minutes, not 50. So the "
        "total is 120 + 30 = 150. Conclusion: 150 minutes.",
    ),
    (
        "Is it a good idea to keep a dog in a city flat?",
        "A dog lover says a dog brings company and gets you outside. A neighbor worries about barking. A vet would "
        "ask about the breed and how many walks you can give. Conclusion: it can work well with a calm breed and a "
        "real plan for walks.",
    ),
    (
        "Why do onions make people cry?",
        "One might think it is the smell. In fact, cutting an onion breaks its cells and releases a gas. When the gas "
        "reaches the eyes it forms a mild irritant, and the eyes make tears to wash it away. Conclusion: a gas "
        "released by cutting irritates the eyes.",
    ),
    (
        "Should children learn to cook?",
        "A parent sees a safety worry with knives and heat. A teacher sees lessons in reading recipes, measuring and "
        "patience. A doctor sees a habit that leads to healthier meals later in life. Conclusion: yes, starting with "
        "simple, supervised tasks.",
    ),
    (
        "What is the fastest land animal?",
        "A horse? No, horses reach about 70 km per hour, and the cheetah is faster. Cheetahs sprint at about 100 km "
        "per hour, though only in short bursts. Over long distances the pronghorn keeps a high speed much longer. "
        "Conclusion: the cheetah, for short sprints.",
    ),
]


# ---------------------------------------------------------------------------- eval samples
# Tiny benchmark files for `lmforge eval` in the public schemas of MMLU (cais/mmlu), BIG-Bench
# Hard (lukaemon/bbh, boolean_expressions) and HumanEval (openai/openai_humaneval). Every item
# is written for lmforge, not taken from the datasets; they only show the layouts.

MMLU_SUBJECTS = ("high_school_mathematics", "astronomy", "world_religions")

# subject -> (dev items: the few-shot split, test items); each (question, 4 choices, gold index)
MMLU = {
    "high_school_mathematics": (
        [
            ("What is the value of 3x + 2 when x = 4?", ["10", "12", "14", "16"], 2),
            (
                "How many degrees are in the interior angles of a triangle, added together?",
                ["90", "180", "270", "360"],
                1,
            ),
            ("Which of these numbers is prime?", ["21", "27", "29", "33"], 2),
            ("What is the slope of the line y = -2x + 7?", ["-2", "2", "7", "-7"], 0),
            ("If a square has a perimeter of 20, what is its area?", ["16", "20", "25", "40"], 2),
        ],
        [
            ("What is the solution of 5x - 3 = 17?", ["2", "3", "4", "5"], 2),
            ("What is the greatest common divisor of 18 and 24?", ["3", "6", "8", "12"], 1),
            ("A fair coin is tossed twice. What is the probability of two heads?", ["1/2", "1/3", "1/4", "1/8"], 2),
            ("What is 2 to the power of 6?", ["12", "32", "36", "64"], 3),
        ],
    ),
    "astronomy": (
        [
            ("Which planet is closest to the Sun?", ["Venus", "Mercury", "Mars", "Earth"], 1),
            ("What keeps the planets in orbit around the Sun?", ["Magnetism", "Friction", "Gravity", "Solar wind"], 2),
            (
                "About how long does light from the Sun take to reach the Earth?",
                ["8 seconds", "8 minutes", "8 hours", "8 days"],
                1,
            ),
            ("What kind of object is the Moon?", ["A star", "A planet", "A comet", "A natural satellite"], 3),
            ("Which planet is known for its large system of bright rings?", ["Saturn", "Mars", "Mercury", "Venus"], 0),
        ],
        [
            ("Which is the largest planet in the Solar System?", ["Earth", "Neptune", "Jupiter", "Saturn"], 2),
            (
                "What causes the phases of the Moon?",
                [
                    "The Earth's shadow",
                    "The changing part of the lit side we see",
                    "Clouds on the Moon",
                    "The Moon's own light turning on and off",
                ],
                1,
            ),
            ("What is a light-year a unit of?", ["Time", "Brightness", "Distance", "Mass"], 2),
            ("Which gas makes up most of the Sun?", ["Hydrogen", "Oxygen", "Carbon", "Iron"], 0),
        ],
    ),
    "world_religions": (
        [
            ("In which city is the Kaaba found?", ["Medina", "Jerusalem", "Mecca", "Cairo"], 2),
            ("What is the name of the Sikh scripture?", ["Guru Granth Sahib", "Tripitaka", "Avesta", "Talmud"], 0),
            ("Which festival of lights is celebrated by Hindus in autumn?", ["Holi", "Diwali", "Vesak", "Hanukkah"], 1),
            ("Which religion teaches the Four Noble Truths?", ["Jainism", "Shinto", "Buddhism", "Taoism"], 2),
            (
                "On which day do most Christians hold their main weekly service?",
                ["Friday", "Saturday", "Sunday", "Monday"],
                2,
            ),
        ],
        [
            ("What is the Jewish day of rest called?", ["Shabbat", "Passover", "Yom Kippur", "Purim"], 0),
            ("Which text is central to Taoism?", ["The Analects", "The Tao Te Ching", "The Vedas", "The Quran"], 1),
            ("In which country did Shinto develop?", ["China", "Korea", "India", "Japan"], 3),
            ("What is the month of fasting in Islam called?", ["Ramadan", "Shawwal", "Muharram", "Rajab"], 0),
        ],
    ),
}


def mmlu_records(split: int) -> list[dict]:
    """cais/mmlu rows (question, subject, choices, answer), subjects in MMLU_SUBJECTS order;
    split 0: dev, 1: test."""
    return [
        {"question": q, "subject": subject, "choices": choices, "answer": answer}
        for subject in MMLU_SUBJECTS
        for q, choices, answer in MMLU[subject][split]
    ]


BBH_BOOLEAN_TEST = [
    "not False and True",
    "True and not True",
    "( True or False ) and False",
    "not ( False or False )",
    "False or not False and True",
    "not not True",
    "True and False or not False",
    "( not True ) or ( False and True )",
]

# lukaemon/bbh rows ({"input", "target"}) whose target is a chain of thought ending in the
# harness's "So the answer is X." (bbh/cot_fewshot)
BBH_BOOLEAN_COT = [
    (
        "not True or True",
        '"not" binds first: not True is False. The expression becomes False or True, and an "or" with one True '
        "side is True. So the answer is True.",
    ),
    (
        "True and ( False or False )",
        'Brackets first: False or False is False. The expression becomes True and False, and an "and" with one '
        "False side is False. So the answer is False.",
    ),
    (
        "not ( True and False ) and True",
        "Brackets first: True and False is False, and not False is True. The expression becomes True and True, "
        "which is True. So the answer is True.",
    ),
]


def bbh_test_records() -> list[dict]:
    # the gold value is the expression's own value (Python's not/and/or precedence is BBH's)
    return [{"input": f"{expression} is", "target": str(eval(expression))} for expression in BBH_BOOLEAN_TEST]


def bbh_cot_records() -> list[dict]:
    for expression, cot in BBH_BOOLEAN_COT:
        assert cot.endswith(f"So the answer is {eval(expression)}."), expression
    return [{"input": f"{expression} is", "target": cot} for expression, cot in BBH_BOOLEAN_COT]


def _doc(signature: str, summary: str, *examples: tuple[str, str]) -> str:
    lines = "".join(f"    >>> {call}\n    {result}\n" for call, result in examples)
    return f'{signature}\n    """ {summary}\n{lines}    """\n'


# (entry point, prompt, canonical solution, asserts of check(candidate))
HUMANEVAL = [
    (
        "sum_of_squares",
        "from typing import List\n\n\n"
        + _doc(
            "def sum_of_squares(numbers: List[int]) -> int:",
            "Return the sum of the squares of the numbers.",
            ("sum_of_squares([1, 2, 3])", "14"),
            ("sum_of_squares([])", "0"),
        ),
        "    return sum(n * n for n in numbers)\n",
        ["candidate([1, 2, 3]) == 14", "candidate([]) == 0", "candidate([-4]) == 16", "candidate([0, 5, -1]) == 26"],
    ),
    (
        "count_vowels",
        "\n\n"
        + _doc(
            "def count_vowels(text: str) -> int:",
            "Count the vowels (a, e, i, o, u, in either case) in text.",
            ("count_vowels('Banana')", "3"),
            ("count_vowels('xyz')", "0"),
        ),
        "    return sum(1 for c in text.lower() if c in 'aeiou')\n",
        ["candidate('Banana') == 3", "candidate('xyz') == 0", "candidate('') == 0", "candidate('AEIOU aeiou') == 10"],
    ),
    (
        "running_max",
        "from typing import List\n\n\n"
        + _doc(
            "def running_max(numbers: List[int]) -> List[int]:",
            "For each position, the largest number seen so far.",
            ("running_max([1, 3, 2, 5, 4])", "[1, 3, 3, 5, 5]"),
        ),
        "    result = []\n    best = None\n    for n in numbers:\n        best = n if best is None else max(best, n)\n"
        "        result.append(best)\n    return result\n",
        [
            "candidate([1, 3, 2, 5, 4]) == [1, 3, 3, 5, 5]",
            "candidate([]) == []",
            "candidate([-2, -5, -1]) == [-2, -2, -1]",
            "candidate([7]) == [7]",
        ],
    ),
    (
        "is_word_palindrome",
        "\n\n"
        + _doc(
            "def is_word_palindrome(word: str) -> bool:",
            "Whether word reads the same backwards, ignoring case.",
            ("is_word_palindrome('Level')", "True"),
            ("is_word_palindrome('lemon')", "False"),
        ),
        "    lowered = word.lower()\n    return lowered == lowered[::-1]\n",
        [
            "candidate('Level') is True",
            "candidate('lemon') is False",
            "candidate('') is True",
            "candidate('Aa') is True",
            "candidate('ab') is False",
        ],
    ),
    (
        "second_largest",
        "from typing import List, Optional\n\n\n"
        + _doc(
            "def second_largest(numbers: List[int]) -> Optional[int]:",
            "The second largest distinct number, or None when there are fewer than two.",
            ("second_largest([4, 1, 4, 3])", "3"),
            ("second_largest([2, 2]) is None", "True"),
        ),
        "    distinct = sorted(set(numbers))\n    return distinct[-2] if len(distinct) >= 2 else None\n",
        [
            "candidate([4, 1, 4, 3]) == 3",
            "candidate([2, 2]) is None",
            "candidate([]) is None",
            "candidate([-1, -7, 0]) == -1",
        ],
    ),
]


def humaneval_records() -> list[dict]:
    rows = []
    for index, (entry_point, prompt, solution, asserts) in enumerate(HUMANEVAL):
        test = (
            "\n\nMETADATA = {\n    'author': 'lmforge',\n    'dataset': 'test'\n}\n\n\ndef check(candidate):\n"
            + "".join(f"    assert {line}\n" for line in asserts)
        )
        rows.append(
            {
                "task_id": f"LmforgeEval/{index}",
                "prompt": prompt,
                "canonical_solution": solution,
                "test": test,
                "entry_point": entry_point,
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def write_eval_examples(directory: Path = HERE / "eval") -> None:
    """examples/eval/*.jsonl: tiny MMLU, BBH and HumanEval files for `lmforge eval`."""
    directory.mkdir(exist_ok=True)
    for name, rows in (
        ("mmlu_test.jsonl", mmlu_records(1)),
        ("mmlu_dev.jsonl", mmlu_records(0)),
        ("bbh_boolean_expressions.jsonl", bbh_test_records()),
        ("bbh_boolean_expressions_cot.jsonl", bbh_cot_records()),
        ("humaneval.jsonl", humaneval_records()),
    ):
        write_jsonl(directory / name, rows)


def messages(pairs: list[tuple[str, str]]) -> list[dict]:
    return [
        {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}
        for user, assistant in pairs
    ]


def pairs_records(count: int = 160, seed: int = 2026) -> list[dict]:
    """Preference pairs on arithmetic problems: the right solution first, then a ranking of
    two wrong ones (a slip in the last step above a bare wrong guess)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        problem = make_problem(rng)
        answer = int(problem["answer"])
        slip = problem["rationale"].rsplit(" ", 1)[0] + f" {answer + rng.choice((-2, -1, 1, 2))}."
        rows.append(
            {
                "prompt": problem["question"],
                "chosen": f"{problem['rationale']} The answer is {answer}.",
                "rejected": [
                    f"{slip} The answer is {slip.rsplit(' ', 1)[1].rstrip('.')}.",
                    f"The answer is {answer + rng.randint(10, 40)}.",
                ],
            }
        )
    return rows


def main() -> None:
    cot, test = make_splits(600, 100, seed=2024)
    rng = random.Random(2025)
    chat = [
        {
            "messages": [
                {"role": "user", "content": p["question"]},
                {"role": "assistant", "content": f"{p['rationale']} The answer is {p['answer']}."},
            ]
        }
        for p in (make_problem(rng) for _ in range(200))
    ]
    (HERE / "data").mkdir(exist_ok=True)
    for name, rows in (
        ("arithmetic-cot.jsonl", cot),
        ("arithmetic-cot-test.jsonl", test),
        ("arithmetic-chat.jsonl", chat),
        ("socratic.jsonl", messages(SOCRATIC)),
        ("socratic-test.jsonl", messages(SOCRATIC_TEST)),
        ("arithmetic-pairs.jsonl", pairs_records()),
    ):
        with (HERE / "data" / name).open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    texts = [f"{p['question']}\n{p['rationale']}\n{p['answer']}" for p in cot]
    texts += [m["content"] for row in chat for m in row["messages"]]
    train_bpe_tokenizer(texts, vocab_size=512).save_pretrained(HERE / "tokenizer")
    write_eval_examples()


if __name__ == "__main__":
    main()
