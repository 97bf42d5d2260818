"""The README and the documentation site: short, linked, and generated from the code where they list the code.

``mkdocs build --strict`` (run by the README's test command, with the ``docs`` extra) checks the site's own links and
references; these tests check what it cannot: the README, which lives outside the site, and the generated parts."""

from __future__ import annotations

import re
from pathlib import Path

from statewise.config import reference, reference_markdown

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_is_short():
    assert len(README.splitlines()) <= 300


def test_readme_links_point_at_files_that_exist():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert local, "the README links to the documentation"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_readme_test_command_is_what_ci_runs():
    """.ci/run must run the README's test command (the one with pytest), character for character."""
    blocks = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    command = next(b for b in blocks if "pytest" in b)
    assert command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_config_reference_lists_every_key_once():
    page = reference_markdown()
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    for key, _, default, _ in reference():
        row = [line for line in rows if line.startswith(f"| `{key}` |")]
        assert len(row) == 1 and f"| `{default}` |" in row[0], key
    assert len(rows) == len(reference())
    assert all(line.count(" | ") == 3 for line in rows), "a cell holds an unescaped '|'"


def test_every_site_page_is_in_the_navigation():
    """mkdocs warns about pages left out of the nav (strict fails on it); this names them without mkdocs installed."""
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = [p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")]
    assert pages and not [p for p in pages if f": {p}" not in nav]
