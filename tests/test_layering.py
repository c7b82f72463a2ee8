"""The package's layering has one direction (DESIGN §2): config -> data -> trainer+objective
-> checkpoints -> eval/report. Training may call the evaluator (train.eval_tasks); the
evaluator, the data layer, the objectives and the models never import training code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lmforge

PACKAGE = Path(lmforge.__file__).parent
# package -> packages it must never import (at module level or inside a function)
FORBIDDEN = {
    "eval": ("lmforge.train", "lmforge.bootstrap", "lmforge.demo", "lmforge.ablate"),
    "data": ("lmforge.train", "lmforge.eval", "lmforge.bootstrap", "lmforge.objectives"),
    "objectives": ("lmforge.train", "lmforge.eval", "lmforge.bootstrap"),
    "models": ("lmforge.train", "lmforge.eval", "lmforge.bootstrap"),
    "report": ("lmforge.train", "lmforge.bootstrap"),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from lmforge import train` names the package in the alias
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_never_imports_layers_above_it(package):
    offending = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for line, module in imported_modules(path):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[package]):
                offending.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert not offending, "\n".join(offending)


def test_the_check_sees_a_forbidden_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from lmforge import train\n    import lmforge.train.pipeline\n")
    modules = [m for _, m in imported_modules(sample)]
    assert "lmforge.train" in modules and "lmforge.train.pipeline" in modules
