"""Strict exact-match accuracy of generated final answers on held-out CoT problems."""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.data.conversation import Conversation
from lmforge.data.formats import PromptFormat
from lmforge.data.tokenize import wants_bos
from lmforge.eval.answers import extract_strict_answer, harness_match
from lmforge.eval.generate import generate, stop_token_ids


@dataclass
class ExactMatchResult:
    accuracy: float
    correct: int
    total: int
    samples: list[dict]


def evaluate_exact_match(
    model,
    tokenizer,
    prompt_format: PromptFormat,
    conversations: list[Conversation],
    max_new_tokens: int = 96,
    batch_size: int = 64,
    show_progress: bool = False,
) -> ExactMatchResult:
    problems = [c for c in conversations if c.final_answer() is not None]
    prompts = [prompt_format.generation_prompt(c.prompt_segments(), tokenizer, cot=c.is_cot) for c in problems]
    outputs = generate(
        model, tokenizer, prompts, stop_token_ids(tokenizer, prompt_format.stop_strings(tokenizer)),
        max_new_tokens=max_new_tokens, batch_size=batch_size,
        add_bos=wants_bos(tokenizer, prompt_format), show_progress=show_progress,
    )
    samples = []
    for conversation, prompt, output in zip(problems, prompts, outputs):
        predicted = extract_strict_answer(output)
        samples.append({"prompt": prompt, "output": output, "predicted": predicted, "gold": conversation.final_answer(),
                        "correct": harness_match(predicted, conversation.final_answer())})
    correct = sum(s["correct"] for s in samples)
    return ExactMatchResult(correct / len(samples) if samples else 0.0, correct, len(samples), samples)
