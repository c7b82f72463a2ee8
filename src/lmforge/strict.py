"""The base of every typed settings model: unknown keys are errors. Lives outside `config`
so that the objectives can declare their settings next to their losses and the config
schema can assemble them, without an import cycle."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag


class Strict(BaseModel):
    # allow_inf_nan: a YAML .inf or .nan (lr: .inf passes gt=0) is an error, not a setting
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


Probability = Annotated[float, Field(ge=0.0, le=1.0)]


def tagged_union(*members: type[BaseModel], default: str):
    """A union chosen by each member's `name` literal; a mapping without `name` gets
    `default` (so `optimizer: {lr: 1e-3}` means AdamW)."""

    def tag(value) -> str:
        return value.get("name", default) if isinstance(value, dict) else getattr(value, "name", default)

    options = tuple(Annotated[m, Tag(m.model_fields["name"].annotation.__args__[0])] for m in members)
    return Annotated[Union[options], Discriminator(tag)]  # noqa: UP007 (a runtime-built union)
