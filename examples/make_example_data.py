"""Regenerate the small example files shipped in examples/ (deterministic):

    python examples/make_example_data.py

- data/arithmetic-cot.jsonl  600 CoT word problems (question/rationale/answer)
- data/arithmetic-cot-test.jsonl  100 held-out problems (no question shared with train)
- data/arithmetic-chat.jsonl the same kind of problems as OpenAI-style messages
- tokenizer/                 a 512-token byte-level BPE trained on them (no prompt-format
                             tokens: lmforge adds those itself)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from lmforge.demo.arithmetic import make_problem, make_splits
from lmforge.demo.tokenizer import train_bpe_tokenizer

HERE = Path(__file__).resolve().parent


def main() -> None:
    cot, test = make_splits(600, 100, seed=2024)
    rng = random.Random(2025)
    chat = [{"messages": [{"role": "user", "content": p["question"]},
                          {"role": "assistant", "content": f"{p['rationale']} The answer is {p['answer']}."}]}
            for p in (make_problem(rng) for _ in range(200))]
    (HERE / "data").mkdir(exist_ok=True)
    for name, rows in (("arithmetic-cot.jsonl", cot), ("arithmetic-cot-test.jsonl", test),
                       ("arithmetic-chat.jsonl", chat)):
        with (HERE / "data" / name).open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    texts = [f"{p['question']}\n{p['rationale']}\n{p['answer']}" for p in cot]
    texts += [m["content"] for row in chat for m in row["messages"]]
    train_bpe_tokenizer(texts, vocab_size=512).save_pretrained(HERE / "tokenizer")


if __name__ == "__main__":
    main()
