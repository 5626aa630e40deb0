"""Our entry points print no dependency's deprecation warning (clip-anytorch's pkg_resources import,
torch's notice about torch.jit.load), while our own warnings, and every warning a user asks for with
-W or PYTHONWARNINGS, still show (pipeline/dependency_warnings.py).

Each command runs as a subprocess with PYTHONWARNINGS unset, as a user runs it. So that the check does
not hang on which warnings this machine's versions happen to emit, a sitecustomize on the path makes
torch and typer emit a deprecation warning when they are imported; the real ones come on top where
the installed versions emit them (a CLIP load through `encode_text` covers both above)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import polars as pl
import pytest
import yaml

from pipeline import dependency_warnings, paths

ROOT = Path(__file__).resolve().parents[1]
WARNING_LINE = re.compile(r"Warning\b")

# Imported before anything else (site.py runs it): torch and typer warn on import, as a dependency would.
SITECUSTOMIZE = """
import importlib.abc, importlib.machinery, sys, warnings

class WarnOnImport(importlib.abc.MetaPathFinder):
    pending = {"torch", "typer"}

    def find_spec(self, name, path, target=None):   # also asked by importlib.util.find_spec, without importing
        if name not in self.pending:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            self.pending.discard(name)
            run(module)
            warnings.warn_explicit(f"{name}.old_api is deprecated", FutureWarning, module.__file__, 1, module=name)

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, WarnOnImport())
"""


@pytest.fixture(scope="module")
def warning_deps(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder


def run(command: list[str], cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (extra_path, ROOT) if p is not None)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if WARNING_LINE.search(line)]


def tai() -> list[str]:
    return [sys.executable, "-c", "from pipeline.cli import app; app()"]  # what the `tai` console script runs


def test_the_dependencies_do_warn_without_our_entry_points(warning_deps, tmp_path):
    """The control: the same imports outside an entry point print the warnings this test expects gone."""
    done = run([sys.executable, "-c", "import torch, typer"], tmp_path, warning_deps)
    assert len(warning_lines(done.stderr)) == 2, done.stderr


@pytest.mark.parametrize("command", [["tai", "--help"], ["stage", "train"]], ids=["tai --help", "stages.train"])
def test_entry_points_print_no_dependency_warning(warning_deps, tmp_path, command):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    argv = tai() + command[1:] if command[0] == "tai" else [sys.executable, "-m", f"stages.{command[1]}"]
    done = run(argv, tmp_path, warning_deps)
    if command[0] == "tai":
        assert done.returncode == 0 and "Usage" in done.stdout, done.stderr
    else:  # no prepared dataset here: the stage stops with its one-line user error, after every import
        assert done.returncode == 2 and "no label table" in done.stderr, done.stderr
    assert warning_lines(done.stderr) == []


def test_a_stage_loading_clip_prints_no_dependency_warning(tiny_clip, tmp_path):
    """encode_text imports clip (pkg_resources) and loads a checkpoint (torch.jit.load first): real warnings."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["encode"]["model"] = str(tiny_clip)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / paths.TEXTS).parent.mkdir(parents=True)
    pl.DataFrame({"text_id": ["a", "b"], "text": ["a cat.", "a dog and a car."]}).write_parquet(tmp_path / paths.TEXTS)
    done = run([sys.executable, "-m", "stages.encode_text"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert warning_lines(done.stderr) == []
    assert (tmp_path / paths.TEXT_EMBEDDINGS).is_dir()


def test_ours_still_show_and_the_user_s_choice_wins(monkeypatch):
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        monkeypatch.setattr(sys, "warnoptions", [])
        dependency_warnings.silence()
        for module in ("clip.clip", "torch.jit._serialization", "pipeline.method.train", "stages.train"):
            warnings.warn_explicit(f"{module} is deprecated", FutureWarning, "x.py", 1, module=module)
        warnings.warn_explicit("pkg_resources is deprecated as an API", UserWarning, "x.py", 1, module="clip.clip")
    assert [str(w.message) for w in caught] == ["pipeline.method.train is deprecated", "stages.train is deprecated"]

    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        monkeypatch.setattr(sys, "warnoptions", ["default"])  # python -W default
        dependency_warnings.silence()
        warnings.warn_explicit("clip.clip is deprecated", FutureWarning, "x.py", 1, module="clip.clip")
    assert len(caught) == 1
