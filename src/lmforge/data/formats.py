"""Prompt formats: render a `Conversation` into text pieces, each tagged with the role whose
tokens it holds ("prompt" pieces are never trained on). The tokenizer stage turns the
pieces into ids and labels, so a format only has to say which characters are which.

Formats (docs/formats.md):
- remask: `<|user|>`, `<|assistant|>`, `<|rationale|>`, `<|answer|>` on their own lines,
  as in seed 004; the sequence ends with the tokenizer's eos.
- openassistant: `<|prompter|>…<|endoftext|><|assistant|>…<|endoftext|>` (seed 001).
- chat_template: the tokenizer's own Jinja `chat_template`.
- chatml, alpaca, instruction (`### Instruction:/### Response:`), qa (`Q:/A:`): fixed text
  around each turn (text_formats.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lmforge.data.conversation import Conversation, Segment
from lmforge.data.text_formats import TEXT_FORMATS
from lmforge.errors import LmforgeError

Piece = tuple[str, str]  # (text, role) with role in ROLE_IDS: prompt/assistant/rationale/answer


class PromptFormat(Protocol):
    name: str

    def special_tokens(self, tokenizer) -> list[str]:
        """Tokens this format needs in the vocabulary (added as special tokens)."""

    def render(self, conversation: Conversation, tokenizer) -> list[Piece]:
        """The full training text as role-tagged pieces."""

    def generation_prompt(self, prompt: tuple[Segment, ...], tokenizer, cot: bool) -> str:
        """Text to feed the model so it writes the next response (rationale first if cot)."""

    def stop_strings(self, tokenizer) -> list[str]:
        """Special tokens that end a generated response."""


def _answer_line(rationale: str, answer: str) -> tuple[str, str]:
    """How a CoT example reads in formats without rationale/answer tags (GSM8K style)."""
    return f"{rationale}\n", f"#### {answer}"


@dataclass(frozen=True)
class ReMaskFormat:
    name: str = "remask"
    tags = {
        "system": "<|system|>",
        "user": "<|user|>",
        "assistant": "<|assistant|>",
        "rationale": "<|rationale|>",
        "answer": "<|answer|>",
    }

    def special_tokens(self, tokenizer) -> list[str]:
        return list(self.tags.values())

    def render(self, conversation: Conversation, tokenizer) -> list[Piece]:
        pieces: list[Piece] = []
        for segment in conversation.segments:
            tag = f"{self.tags[segment.role]}\n"
            if segment.role in ("system", "user"):
                pieces.append((f"{tag}{segment.text}\n", "prompt"))
            elif segment.role == "answer":
                # The model writes the <|answer|> tag itself after its rationale.
                pieces.append((f"{tag}{segment.text}\n", "answer"))
            else:
                pieces.append((tag, "prompt"))
                pieces.append((f"{segment.text}\n", segment.role))
        if pieces and pieces[-1][1] != "prompt":  # the conversation ends with a response
            pieces.append((tokenizer.eos_token, pieces[-1][1]))
        return pieces

    def generation_prompt(self, prompt: tuple[Segment, ...], tokenizer, cot: bool) -> str:
        body = "".join(f"{self.tags[s.role]}\n{s.text}\n" for s in prompt)
        return body + (f"{self.tags['rationale']}\n" if cot else f"{self.tags['assistant']}\n")

    def stop_strings(self, tokenizer) -> list[str]:
        return [tokenizer.eos_token, self.tags["user"]]

    def chat_template(self, cot: bool) -> str:
        """A Jinja template rendering the same text, saved with the model so plain
        `apply_chat_template` reproduces what lmforge trained on."""
        default_role = "rationale" if cot else "assistant"
        return (
            "{%- for message in messages -%}"
            "{%- if message['role'] == 'answer' -%}{{ '<|answer|>\\n' + message['content'] + '\\n' }}"
            "{%- else -%}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '\\n' }}{%- endif -%}"
            "{%- if loop.last and message['role'] in ['assistant', 'answer'] -%}{{ eos_token }}{%- endif -%}"
            "{%- endfor -%}"
            "{%- if add_generation_prompt -%}"
            f"{{{{ '<|' + (generation_role | default('{default_role}')) + '|>\\n' }}}}"
            "{%- endif -%}"
        )


@dataclass(frozen=True)
class OpenAssistantFormat:
    name: str = "openassistant"
    end = "<|endoftext|>"
    tags = {"system": "<|system|>", "user": "<|prompter|>", "assistant": "<|assistant|>"}

    def special_tokens(self, tokenizer) -> list[str]:
        return [*self.tags.values(), self.end]

    def render(self, conversation: Conversation, tokenizer) -> list[Piece]:
        pieces: list[Piece] = []
        for segment in conversation.segments:
            if segment.role in ("system", "user"):
                pieces.append((f"{self.tags[segment.role]}{segment.text}{self.end}", "prompt"))
            elif segment.role == "assistant":
                pieces.append((self.tags["assistant"], "prompt"))
                pieces.append((f"{segment.text}{self.end}", "assistant"))
            elif segment.role == "rationale":
                pieces.append((self.tags["assistant"], "prompt"))
                pieces.append((_answer_line(segment.text, "")[0], "rationale"))
            else:  # answer, continuing the assistant turn its rationale opened
                pieces.append((f"{_answer_line('', segment.text)[1]}{self.end}", "answer"))
        return pieces

    def generation_prompt(self, prompt: tuple[Segment, ...], tokenizer, cot: bool) -> str:
        body = "".join(f"{self.tags[s.role]}{s.text}{self.end}" for s in prompt)
        return body + self.tags["assistant"]

    def stop_strings(self, tokenizer) -> list[str]:
        return [self.end, self.tags["user"]]

    def chat_template(self, cot: bool) -> str:
        return (
            "{%- for message in messages -%}"
            "{%- if message['role'] == 'user' -%}{{ '<|prompter|>' + message['content'] + '<|endoftext|>' }}"
            "{%- else -%}{{ '<|' + message['role'] + '|>' + message['content'] + '<|endoftext|>' }}{%- endif -%}"
            "{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{ '<|assistant|>' }}{%- endif -%}"
        )


@dataclass(frozen=True)
class ChatTemplateFormat:
    """The tokenizer's own template. Trained spans are found by rendering growing prefixes
    of the conversation: what the i-th assistant turn adds after its generation prompt."""

    name: str = "chat_template"

    def special_tokens(self, tokenizer) -> list[str]:
        return []

    @staticmethod
    def _messages(segments) -> list[dict[str, str]]:
        messages: list[dict[str, str]] = []
        for segment in segments:
            if segment.role == "rationale":
                messages.append({"role": "assistant", "content": _answer_line(segment.text, "")[0]})
            elif segment.role == "answer" and messages and messages[-1]["role"] == "assistant":
                messages[-1]["content"] += _answer_line("", segment.text)[1]
            else:
                role = "assistant" if segment.role == "answer" else segment.role
                messages.append({"role": role, "content": segment.text})
        return messages

    def _apply(self, tokenizer, messages, add_generation_prompt: bool) -> str:
        if not getattr(tokenizer, "chat_template", None):
            raise LmforgeError("data.prompt_format is 'chat_template' but the tokenizer has no chat_template")
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def render(self, conversation: Conversation, tokenizer) -> list[Piece]:
        messages = self._messages(conversation.segments)
        pieces: list[Piece] = []
        done = ""
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prefix = self._apply(tokenizer, messages[:i], add_generation_prompt=True)
            full = self._apply(tokenizer, messages[: i + 1], add_generation_prompt=False)
            if not prefix.startswith(done) or not full.startswith(prefix):
                raise LmforgeError(
                    f"{conversation.source}: the tokenizer's chat_template does not render conversations "
                    "prefix by prefix, so trained spans cannot be located; use prompt_format remask or openassistant"
                )
            pieces.append((prefix[len(done) :], "prompt"))
            pieces.extend(self._split_cot(full[len(prefix) :], message["content"]))
            done = full
        if not pieces:
            raise LmforgeError(f"{conversation.source}: conversation has no assistant turn to train on")
        return pieces

    @staticmethod
    def _split_cot(span: str, content: str) -> list[Piece]:
        """Mark the '#### answer' tail of a CoT assistant turn as answer tokens."""
        marker = span.find("\n#### ")
        if marker < 0 or "\n#### " not in content:
            return [(span, "assistant")]
        return [(span[: marker + 1], "rationale"), (span[marker + 1 :], "answer")]

    def generation_prompt(self, prompt: tuple[Segment, ...], tokenizer, cot: bool) -> str:
        return self._apply(tokenizer, self._messages(prompt), add_generation_prompt=True)

    def stop_strings(self, tokenizer) -> list[str]:
        return [tokenizer.eos_token]

    def chat_template(self, cot: bool) -> None:
        return None  # keep the tokenizer's own


FORMATS: dict[str, PromptFormat] = {
    "remask": ReMaskFormat(),
    "openassistant": OpenAssistantFormat(),
    "chat_template": ChatTemplateFormat(),
    **TEXT_FORMATS,  # chatml, alpaca, instruction, qa
}


def get_format(name: str) -> PromptFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise LmforgeError(f"unknown prompt format '{name}'; valid: {', '.join(FORMATS)}") from None
