"""The documentation's links: every relative link in README.md and docs/**/*.md names a file
inside the repository, and nothing points outside it (such as ../shared)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEMES = ("http://", "https://", "mailto:", "ftp://")


def doc_files(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def link_problems(files: list[Path], root: Path) -> list[str]:
    """Broken or outside-the-repository links, and any mention of ../shared, as
    'file:line: problem' lines (anchors are ignored; external URLs are not checked)."""
    root = root.resolve()
    problems = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            where = f"{path.relative_to(root)}:{number}"
            if "../shared" in line:
                problems.append(f"{where}: refers to ../shared, outside the repository")
            for target in LINK.findall(line):
                if target.startswith(SCHEMES) or target.startswith("#"):
                    continue
                file_part = target.split("#", 1)[0]
                resolved = (path.parent / file_part).resolve()
                if not resolved.is_relative_to(root):
                    problems.append(f"{where}: link {target} points outside the repository")
                elif not resolved.exists():
                    problems.append(f"{where}: link {target} names no file")
    return problems


def test_every_relative_link_resolves_inside_the_repository():
    files = doc_files(ROOT)
    assert (ROOT / "docs" / "README.md") in files
    assert link_problems(files, ROOT) == []


def test_the_check_catches_broken_and_outside_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "ok.md").write_text("fine\n", encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "[good](docs/ok.md#anchor) [web](https://example.org) [self](#top)\n"
        "[broken](docs/missing.md)\n"
        "[outside](../shared/DESIGN.md)\n"
        "see ../shared/STYLE.md\n",
        encoding="utf-8",
    )
    problems = link_problems(doc_files(tmp_path), tmp_path)
    assert any("README.md:2: link docs/missing.md names no file" in p for p in problems)
    assert any("README.md:3: link ../shared/DESIGN.md points outside the repository" in p for p in problems)
    assert any(p.startswith("README.md:4:") and "../shared" in p for p in problems)
    assert not any("README.md:1:" in p for p in problems)
