"""Benchmarks run against the installed package, as a user's script would: no sys.path edits, no test
helpers (tests/ is not a library), and no script named like a package it imports (benchmarks/pipeline.py
once shadowed `pipeline`, so every script had to edit sys.path)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))
TEST_MODULES = {"tests", *(p.stem for p in (ROOT / "tests").glob("*.py"))}


def top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_no_sys_path_edits_and_no_test_helpers():
    found = {}
    for path in SCRIPTS:
        bad = sorted(top_level_imports(path) & TEST_MODULES) + (["sys.path"] if "sys.path" in path.read_text() else [])
        if bad:
            found[path.name] = bad
    assert found == {}


def test_no_script_shadows_a_module_the_scripts_import():
    imported = set().union(*(top_level_imports(p) for p in SCRIPTS))
    own = {p.stem for p in SCRIPTS}
    assert sorted(own & (imported - {"toy_project"})) == []


def test_every_script_s_imports_resolve_from_anywhere(tmp_path):
    """`python benchmarks/<script>.py --help` for each, from another folder and without PYTHONPATH."""
    driver = (
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r})   # what `python benchmarks/<script>.py` puts first\n"
        f"for script in {[str(p) for p in SCRIPTS]!r}:\n"
        "    sys.argv = [script, '--help']\n"
        "    try:\n"
        "        runpy.run_path(script, run_name='__main__')\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), (script, e.code)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", driver], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("usage:") == len(SCRIPTS) - 1  # toy_project.py is a module, not a script
