"""Every objective lmforge trains with, by name. Adding one: a module with its settings
model, its loss and its `ObjectiveSpec`, and one line below. The config schema, the
pipeline, `ablate`, `bootstrap`, `estimate` and the model card read these specs."""

from __future__ import annotations

from lmforge.objectives import (
    ce_objective,
    masked_thought_objective,
    mixce_objective,
    rank_objective,
    remask_objective,
)
from lmforge.objectives import dpo, ipo, orpo, simpo, spin
from lmforge.objectives.ce import CEConfig, MixCEConfig
from lmforge.objectives.rank import RankConfig
from lmforge.objectives.remask import SHARED_PROMPT, MaskedThoughtConfig, ReMaskCoTConfig, ReMaskConfig
from lmforge.objectives.spec import CANDIDATES, ObjectiveSpec

_SPECS = (
    ObjectiveSpec("ce", CEConfig, lambda p, alpha: ce_objective(alpha), "cross-entropy (standard SFT)"),
    ObjectiveSpec("mixce", MixCEConfig, lambda p, alpha: mixce_objective(p["ratio"], alpha), "MixCE"),
    ObjectiveSpec(
        "masked_thought",
        MaskedThoughtConfig,
        lambda p, alpha: masked_thought_objective(alpha),
        "Masked Thought",
        masking=True,
    ),
    ObjectiveSpec(
        "remask",
        ReMaskConfig,
        lambda p, alpha: remask_objective(p["weight"], p.get("fused", SHARED_PROMPT), alpha),
        "ReMask",
        masking=True,
        passes=2,
    ),
    ObjectiveSpec(
        "remask_cot",
        ReMaskCoTConfig,
        lambda p, alpha: remask_objective(p["weight"], p.get("fused", SHARED_PROMPT), alpha),
        "ReMask-CoT",
        masking=True,
        passes=2,
    ),
    ObjectiveSpec(
        "rank",
        RankConfig,
        lambda p, alpha: rank_objective(p["weight"], alpha),
        "cross-entropy + PRO rank loss",
        data=CANDIDATES,
    ),
    dpo.SPEC,
    ipo.SPEC,
    spin.SPEC,
    orpo.SPEC,
    simpo.SPEC,
)
OBJECTIVES: dict[str, ObjectiveSpec] = {spec.name: spec for spec in _SPECS}
