"""Prompt formats made of fixed text around each turn — ChatML, Alpaca,
`### Instruction:/### Response:` and `Q:/A:` — used as the prompt format or, mixed with the
others, for format augmentation (seed 002: robustness across prompt formats).

CoT examples read as in the other tag-less formats: the rationale, a newline, then
`#### answer` inside the assistant turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from lmforge.data.conversation import Conversation, Segment

Piece = tuple[str, str]  # (text, role), as in formats.py

ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
)


@dataclass(frozen=True)
class TaggedFormat:
    name: str
    user: tuple[str, str]
    """(prefix, suffix) around a user turn; likewise for the others."""
    assistant: tuple[str, str]
    system: tuple[str, str]
    preamble: str = ""
    eos: bool = True
    """End the conversation with the tokenizer's eos (trained) after the last response."""
    tokens: tuple[str, ...] = ()

    def special_tokens(self, tokenizer) -> list[str]:
        return list(self.tokens)

    def _prompt_text(self, segment: Segment) -> str:
        prefix, suffix = self.system if segment.role == "system" else self.user
        return f"{prefix}{segment.text}{suffix}"

    def render(self, conversation: Conversation, tokenizer) -> list[Piece]:
        pieces: list[Piece] = [(self.preamble, "prompt")] if self.preamble else []
        opened, closing = self.assistant
        for segment in conversation.segments:
            if segment.role in ("system", "user"):
                pieces.append((self._prompt_text(segment), "prompt"))
            elif segment.role == "assistant":
                pieces += [(opened, "prompt"), (f"{segment.text}{closing}", "assistant")]
            elif segment.role == "rationale":
                pieces += [(opened, "prompt"), (f"{segment.text}\n", "rationale")]
            else:  # answer, closing the turn its rationale opened
                pieces.append((f"#### {segment.text}{closing}", "answer"))
        if self.eos and pieces and pieces[-1][1] != "prompt":
            pieces.append((tokenizer.eos_token, pieces[-1][1]))
        return pieces

    def generation_prompt(self, prompt: tuple[Segment, ...], tokenizer, cot: bool) -> str:
        return self.preamble + "".join(self._prompt_text(s) for s in prompt) + self.assistant[0]

    def stop_strings(self, tokenizer) -> list[str]:
        return [tokenizer.eos_token, *self.tokens[1:]]

    def chat_template(self, cot: bool) -> str:
        """Jinja rendering the same text (string literals JSON-quoted, which Jinja reads)."""
        q = json.dumps
        (up, us), (ap, asf), (sp, ss) = self.user, self.assistant, self.system
        return (
            f"{{{{ {q(self.preamble)} }}}}"
            "{%- for message in messages -%}"
            f"{{%- if message['role'] == 'system' -%}}{{{{ {q(sp)} + message['content'] + {q(ss)} }}}}"
            f"{{%- elif message['role'] == 'user' -%}}{{{{ {q(up)} + message['content'] + {q(us)} }}}}"
            f"{{%- else -%}}{{{{ {q(ap)} + message['content'] + {q(asf)} }}}}"
            + ("{%- if loop.last -%}{{ eos_token }}{%- endif -%}" if self.eos else "")
            + "{%- endif -%}{%- endfor -%}"
            f"{{%- if add_generation_prompt -%}}{{{{ {q(ap)} }}}}{{%- endif -%}}"
        )


CHATML = TaggedFormat(
    "chatml",
    user=("<|im_start|>user\n", "<|im_end|>\n"),
    assistant=("<|im_start|>assistant\n", "<|im_end|>\n"),
    system=("<|im_start|>system\n", "<|im_end|>\n"),
    eos=False,
    tokens=("<|im_start|>", "<|im_end|>"),
)
INSTRUCTION = TaggedFormat(
    "instruction", user=("### Instruction:\n", "\n\n"), assistant=("### Response:\n", "\n\n"), system=("", "\n\n")
)
ALPACA = TaggedFormat(
    "alpaca",
    user=("### Instruction:\n", "\n\n"),
    assistant=("### Response:\n", "\n\n"),
    system=("", "\n\n"),
    preamble=ALPACA_PREAMBLE,
)
QA = TaggedFormat("qa", user=("Q: ", "\n"), assistant=("A: ", "\n"), system=("", "\n"))

TEXT_FORMATS = {f.name: f for f in (CHATML, ALPACA, INSTRUCTION, QA)}
