"""The mutation list (tests/mutations.yaml) stays true to the code and to docs/faults.md: every original line is
still in its file once (so a refactor that moves a protection is noticed here, in seconds, not when the slow
`python tests/mutate.py` runs), every fault row names at least one mutation that exists, every mutation names
tests that exist, and the runner applies and restores a mutation exactly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mutate import MUTATIONS, Mutation, apply, load, locate

ROOT = Path(__file__).resolve().parents[1]
FAULTS = ROOT / "docs" / "faults.md"


def fault_rows() -> list[tuple[str, list[str]]]:
    """(the row's first cell, the mutation ids of its last cell) for each row of the fault table."""
    rows = []
    for line in FAULTS.read_text().splitlines():
        if line.startswith("| ") and not line.startswith("| fault or hostile input"):
            cells = line.strip().strip("|").split(" | ")
            rows.append((cells[0].strip(), re.findall(r"`([\w-]+)`", cells[-1])))
    return rows


def test_every_original_line_is_still_in_its_file_once():
    gone = {m.id: problem for m in load() if isinstance(problem := locate(m), str)}
    assert not gone, gone


def test_every_fault_row_names_a_mutation_that_exists():
    ids = {m.id for m in load()}
    rows = fault_rows()
    assert len(rows) >= 40
    unnamed = [first[:60] for first, named in rows if not named]
    unknown = sorted({i for _, named in rows for i in named} - ids)
    assert not unnamed, f"fault rows naming no mutation: {unnamed}"
    assert not unknown, f"mutations named in docs/faults.md but not in {MUTATIONS.name}: {unknown}"


def test_each_mutation_attacks_a_row_that_names_it():
    rows = fault_rows()
    for m in load():
        for start in m.rows:
            matching = [named for first, named in rows if first.startswith(start)]
            assert matching, f"{m.id}: no fault row starts with {start!r}"
            assert any(m.id in named for named in matching), f"{m.id}: the row {start!r} does not name it"


def test_each_mutation_names_tests_that_exist():
    missing = []
    for m in load():
        assert m.tests, f"{m.id} names no test"
        for test in m.tests:
            path, _, name = test.partition("::")
            text = (ROOT / path).read_text() if (ROOT / path).is_file() else None
            if text is None or (name and not re.search(rf"^def {name}\(", text, re.M)):
                missing.append(f"{m.id}: {test}")
    assert not missing, missing


def test_a_mutation_is_applied_in_the_copy_and_restored(tmp_path):
    (tmp_path / "a.py").write_text("def f():\n    return 1\n\n\ndef g():\n    return 1\n")
    twice = Mutation("m", "a.py", "    return 1", "    return 2", (), ("tests/x.py",))
    assert "found 2 times" in locate(twice, tmp_path)
    second = Mutation("m", "a.py", "    return 1", "    return 2", (), ("tests/x.py",), after="def g():")
    original = apply(second, tmp_path)
    assert (tmp_path / "a.py").read_text() == "def f():\n    return 1\n\n\ndef g():\n    return 2\n"
    (tmp_path / "a.py").write_text(original)
    gone = Mutation("m", "a.py", "    return 3", "    return 2", (), ("tests/x.py",))
    assert "no longer there" in locate(gone, tmp_path)
    with pytest.raises(SystemExit, match="used twice"):
        (tmp_path / "m.yaml").write_text("- {id: a, file: x, original: y, replacement: z, rows: [], tests: [t]}\n" * 2)
        load(tmp_path / "m.yaml")
