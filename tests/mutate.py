"""Mutation check: does each protection of docs/faults.md have a test that fails without it?

The mutations are data (tests/mutations.yaml): each replaces one exact line of one file, names the fault row it
attacks and the tests that must catch it. For each, this script copies the repository (its git-tracked and
untracked, not ignored, files) into a temporary folder once, applies the mutation there, runs only its tests,
restores the line, and reports `caught` (the tests failed) or `survived` (they passed). One mutation at a time,
one pytest at a time: the machine is shared. The repository itself is never written.

    python tests/mutate.py                    # every mutation; exit 1 if any survives or its line is gone
    python tests/mutate.py --check            # only that every original line is still there, once (seconds)
    python tests/mutate.py --only ID [ID ...] # some of them
    python tests/mutate.py --no-baseline      # skip the first run of the tests on the unmutated copy

Exit status: 0 every mutation caught; 1 one survived, its original line is no longer found (the code moved on:
edit tests/mutations.yaml), its tests fail without it (baseline), or pytest could not run them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MUTATIONS = ROOT / "tests" / "mutations.yaml"


@dataclass(frozen=True)
class Mutation:
    id: str
    file: str
    original: str  # one whole line, exactly as in the file (indentation included)
    replacement: str  # what the line becomes (one line; `;` joins statements)
    rows: tuple[str, ...]  # the starts of the docs/faults.md rows it attacks (none: a protection documented elsewhere)
    tests: tuple[str, ...]  # pytest node ids: tests/x.py or tests/x.py::name
    after: str = ""  # where the original is not unique: the line it is the first match after
    note: str = ""


def load(path: Path = MUTATIONS) -> list[Mutation]:
    entries = yaml.safe_load(path.read_text())
    mutations = [Mutation(**{**e, "rows": tuple(e["rows"]), "tests": tuple(e["tests"])}) for e in entries]
    ids = [m.id for m in mutations]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise SystemExit(f"{path}: mutation id(s) {repeated} used twice")
    return mutations


def locate(mutation: Mutation, root: Path = ROOT) -> tuple[list[str], int] | str:
    """(the file's lines, the index of the original line), or why it cannot be applied."""
    path = root / mutation.file
    if not path.is_file():
        return f"{mutation.file}: no such file"
    lines = path.read_text().splitlines(keepends=True)
    start = 0
    if mutation.after:
        anchors = [i for i, line in enumerate(lines) if line.rstrip("\n") == mutation.after]
        if len(anchors) != 1:
            return f"{mutation.file}: the anchor line is found {len(anchors)} times, not once: {mutation.after!r}"
        start = anchors[0] + 1
    found = [i for i, line in enumerate(lines) if i >= start and line.rstrip("\n") == mutation.original]
    if not found:
        return f"{mutation.file}: the original line is no longer there: {mutation.original!r}"
    if len(found) > 1 and not mutation.after:
        return f"{mutation.file}: the original line is found {len(found)} times; name the line before it in `after`"
    return lines, found[0]


def apply(mutation: Mutation, root: Path) -> str:
    """Write the mutated file under `root`; return the original text to restore."""
    lines, index = locate(mutation, root)
    path = root / mutation.file
    original = path.read_text()
    lines[index] = mutation.replacement + "\n"
    path.write_text("".join(lines))
    return original


def copy_repository(into: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


def pytest(root: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, float, str]:
    """(pytest's exit status, seconds, the tail of its output); 124 where it ran past `timeout`."""
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return 124, time.monotonic() - start, "timed out"
    return done.returncode, time.monotonic() - start, (done.stdout + done.stderr)[-1500:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", default=None, help="mutation ids to run")
    parser.add_argument("--check", action="store_true", help="only check that every original line is there")
    parser.add_argument("--no-baseline", action="store_true", help="do not run the tests on the unmutated copy first")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per pytest run")
    args = parser.parse_args(argv)

    mutations = load()
    if args.only:
        unknown = sorted(set(args.only) - {m.id for m in mutations})
        if unknown:
            raise SystemExit(f"unknown mutation id(s) {unknown}")
        mutations = [m for m in mutations if m.id in args.only]
    gone = {m.id: problem for m in mutations if isinstance(problem := locate(m), str)}
    for mutation_id, problem in gone.items():
        print(f"MISSING   {mutation_id}: {problem}")
    if args.check:
        print(f"{len(mutations) - len(gone)}/{len(mutations)} original lines found")
        return 1 if gone else 0

    start, results = time.monotonic(), {}
    with tempfile.TemporaryDirectory(prefix="tai-mutate-") as folder:
        copy = copy_repository(Path(folder))
        if not args.no_baseline:
            every = tuple(dict.fromkeys(t for m in mutations if m.id not in gone for t in m.tests))
            status, seconds, tail = pytest(copy, every, args.timeout)
            print(f"baseline  {len(every)} test ids: exit {status} in {seconds:.0f} s")
            if status != 0:
                print(tail)
                print("the tests fail without any mutation: fix them first")
                return 1
        for m in mutations:
            if m.id in gone:
                continue
            original = apply(m, copy)
            try:
                status, seconds, tail = pytest(copy, m.tests, args.timeout)
            finally:
                (copy / m.file).write_text(original)
            verdict = {0: "SURVIVED", 1: "caught"}.get(status, f"ERROR (pytest exit {status})")
            results[m.id] = verdict
            print(f"{verdict:<9} {m.id} ({seconds:.0f} s; {m.file})", flush=True)
            if status not in (0, 1):
                print(tail)
    caught = sum(v == "caught" for v in results.values())
    print(
        f"\n{caught}/{len(mutations)} caught, {sum(v == 'SURVIVED' for v in results.values())} survived, "
        f"{len(gone)} missing, {sum(v.startswith('ERROR') for v in results.values())} errors; "
        f"{time.monotonic() - start:.0f} s"
    )
    return 0 if caught == len(mutations) else 1


if __name__ == "__main__":
    sys.exit(main())
