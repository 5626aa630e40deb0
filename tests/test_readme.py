"""The README is the front door and docs/ holds the rest: every docs page is reachable from the README, every
relative link (and its #anchor) resolves, the README stays short, and every test the docs name as evidence (the
fault table of docs/faults.md) exists, so a renamed test, page or heading cannot leave a dead claim behind."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 220

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_BLOCK = re.compile(r"^```.*?^```", re.S | re.M)


def _prose(path: Path) -> str:
    """The page without its fenced code blocks, where brackets are code, not links."""
    return CODE_BLOCK.sub("", path.read_text())


def _anchors(path: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", _prose(path), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(path)) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_every_docs_page_is_linked_from_the_readme() -> None:
    assert DOCS, "docs/ holds no page"
    linked = {(README.parent / t.split("#")[0]).resolve() for t in _relative_links(README) if t.split("#")[0]}
    unlinked = [p.relative_to(ROOT).as_posix() for p in DOCS if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link to: {unlinked}"


def test_every_relative_link_and_anchor_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in _relative_links(page):
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            where = f"{page.relative_to(ROOT).as_posix()}: {target}"
            if not dest.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{where} (no such heading)")
    assert not broken, broken


def test_the_readme_stays_a_front_door() -> None:
    n_lines = len(README.read_text().splitlines())
    assert n_lines <= README_MAX_LINES, f"README.md has {n_lines} lines: move detail into a docs/ page"


def test_every_test_the_docs_name_exists() -> None:
    named = sorted({m for page in PAGES for m in re.findall(r"(tests/\w+\.py)::(\w+)", page.read_text())})
    assert len(named) >= 20, "the fault table of docs/faults.md names its tests as tests/<file>.py::<test>"
    missing = [
        f"{path}::{name}"
        for path, name in named
        if not (ROOT / path).exists() or not re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.M)
    ]
    assert not missing, missing


def _test_files_named(text: str) -> set[str]:
    """Every `tests/<file>.py` a page names, with or without a `::test` after it."""
    return set(re.findall(r"\btests/[\w/]+\.py\b", text))


def test_every_test_file_the_docs_name_exists() -> None:
    """A row citing a whole file (`tests/test_fuzz.py`) is evidence too: its file must exist."""
    named = {
        f"{page.relative_to(ROOT).as_posix()}: {path}"
        for page in PAGES
        for path in _test_files_named(page.read_text())
        if not (ROOT / path).is_file()
    }
    assert not named, sorted(named)
    faults = (ROOT / "docs" / "faults.md").read_text()
    file_only = {m for m in re.findall(r"`(tests/[\w/]+\.py)`", faults)}
    assert file_only, "docs/faults.md cites whole test files (tests/test_fuzz.py) as well as single tests"


def test_the_file_checker_sees_file_only_references() -> None:
    assert _test_files_named("`tests/test_fuzz.py` and `tests/a.py::b`, not tests/x.pyc") == {
        "tests/test_fuzz.py",
        "tests/a.py",
    }


def test_the_link_checker_finds_a_broken_link_and_a_broken_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## A heading, with `code`\n\n[ok](#a-heading-with-code) [bad](#nope)\n"
        "```\n[not a link](nowhere.md)\n```\n[gone](missing.md) [web](https://example.org)\n"
    )
    assert _anchors(page) == {"title", "a-heading-with-code"}
    assert _relative_links(page) == ["#a-heading-with-code", "#nope", "missing.md"]
