"""The one data contract: every source record becomes a `Conversation` of role-tagged
segments; prompt formats render it; tokenization derives label masks from the roles.

Roles: system / user (prompt, never trained), assistant / rationale / answer (responses,
trained), and text: plain pretraining text, rendered without any tags, every token trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "rationale", "answer", "text"]

TRAINED_ROLES: frozenset[str] = frozenset({"assistant", "rationale", "answer", "text"})

# Integer codes of the per-token `token_roles` column; objectives such as ReMask-CoT
# need to tell rationale tokens from answer tokens.
ROLE_IDS: dict[str, int] = {"prompt": 0, "assistant": 1, "rationale": 2, "answer": 3, "text": 4}


@dataclass(frozen=True)
class Segment:
    role: Role
    text: str


@dataclass(frozen=True)
class Conversation:
    segments: tuple[Segment, ...]
    source: str = ""
    """Where the record came from (file:line), for error messages."""
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """What the record carries beyond the text (language, category, the rejected responses
    of a ranked record for a later rank objective...). Not part of the hash."""

    @property
    def is_cot(self) -> bool:
        return any(s.role == "rationale" for s in self.segments)

    @property
    def is_plain_text(self) -> bool:
        return bool(self.segments) and all(s.role == "text" for s in self.segments)

    def prompt_segments(self) -> tuple[Segment, ...]:
        """Segments before the first trained one: what a user would type."""
        for i, segment in enumerate(self.segments):
            if segment.role in TRAINED_ROLES:
                return self.segments[:i]
        return self.segments

    def final_answer(self) -> str | None:
        answers = [s.text for s in self.segments if s.role == "answer"]
        return answers[-1] if answers else None

    def response_text(self) -> str:
        """All trained text joined (what the quality filters look at)."""
        return "\n".join(s.text for s in self.segments if s.role in TRAINED_ROLES)
