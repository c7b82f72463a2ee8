"""The one data contract: every source record becomes a `Conversation` of role-tagged
segments; prompt formats render it; tokenization derives label masks from the roles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant", "rationale", "answer"]

ROLES: tuple[Role, ...] = ("system", "user", "assistant", "rationale", "answer")
TRAINED_ROLES: frozenset[str] = frozenset({"assistant", "rationale", "answer"})

# Integer codes of the per-token `token_roles` column; objectives such as ReMask-CoT
# need to tell rationale tokens from answer tokens.
ROLE_IDS: dict[str, int] = {"prompt": 0, "assistant": 1, "rationale": 2, "answer": 3}


@dataclass(frozen=True)
class Segment:
    role: Role
    text: str


@dataclass(frozen=True)
class Conversation:
    segments: tuple[Segment, ...]
    source: str = ""
    """Where the record came from (file:line), for error messages."""

    @property
    def is_cot(self) -> bool:
        return any(s.role == "rationale" for s in self.segments)

    def prompt_segments(self) -> tuple[Segment, ...]:
        """Segments before the first trained one: what a user would type."""
        for i, segment in enumerate(self.segments):
            if segment.role in TRAINED_ROLES:
                return self.segments[:i]
        return self.segments

    def final_answer(self) -> str | None:
        answers = [s.text for s in self.segments if s.role == "answer"]
        return answers[-1] if answers else None
