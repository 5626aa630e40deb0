"""Build a throwaway project for end-to-end runs: a copy of the pipeline code, a git
repo, DVC initialised, a tiny image dataset with labels, and params pointing at the
tiny CLIP. Used by the end-to-end tests of every setting."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["cat", "dog", "car", "tree"]
SYNONYMS = {"cat": ["cats", "kitten"], "dog": ["dogs", "puppy"], "car": ["cars"], "tree": ["trees"]}
COLOURS = {"cat": (220, 40, 40), "dog": (40, 200, 40), "car": (40, 40, 220), "tree": (200, 200, 40)}


# Every stage of dvc.yaml: what a first `dvc repro` of a fresh project runs (stages whose setting is off write
# their empty outputs, prompt.method none included).
ALL_STAGES = {
    "download",
    "prepare",
    "generate",
    "encode_text",
    "encode_eval_images",
    "encode_support_images",
    "encode_partial_images",
    "zeroshot",
    "fewshot",
    "mask",
    "centroids",
    "train",
    "evaluate",
    "encode_dense_images",
    "prompt",
}


def env() -> dict[str, str]:
    return {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "PYTHONWARNINGS": "ignore",
    }


def stage_command(name: str) -> list[str]:
    """`python -m stages.<module> [args]` for "module [args]" ("encode_images eval"), as dvc.yaml runs a
    stage; cwd must be a project folder (see stage_env)."""
    module, *args = name.split()
    return [sys.executable, "-m", f"stages.{module}", *args]


def stage_env() -> dict[str, str]:
    """env() with this checkout first on the path, so a stage run from a throwaway project folder imports
    this checkout's `stages` and `pipeline` (not whatever an editable install points at)."""
    return {**env(), "PYTHONPATH": str(ROOT)}


def run(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=project, env=env(), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def stages_run(output: str) -> set[str]:
    """Names of the stages DVC ran (not skipped) according to its output."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def make_images(folder: Path, n_per_split: dict[str, int], seed: int = 0) -> list[dict]:
    """Small JPEGs whose colour patches follow their labels, plus one corrupt file in the test split."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, n in n_per_split.items():
        for i in range(n):
            labels = sorted(rng.choice(LABELS, rng.integers(1, 3), replace=False).tolist(), key=LABELS.index)
            pixels = rng.integers(0, 60, (48, 64, 3)).astype(np.uint8)
            for j, label in enumerate(labels):
                pixels[8 + j * 20 : 24 + j * 20, 8:56] = COLOURS[label]
            name = f"{split}_{i:03d}.jpg"
            Image.fromarray(pixels).save(folder / name)
            rows.append({"path": name, "labels": "|".join(labels), "split": split})
    (folder / "test_corrupt.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    rows.append({"path": "test_corrupt.jpg", "labels": "cat", "split": "test"})
    return rows


def new_project(tmp_path: Path) -> Path:
    """tmp_path/project with a copy of this checkout's code, dvc.yaml, params.yaml and .gitignore."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
        shutil.copy(ROOT / name, project / name)
    return project


def set_params(project: Path, settings: dict) -> None:
    """Write the repository's params.yaml with dotted keys ("train.epochs": 2) changed."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in settings.items():
        section, key = dotted.split(".", 1)
        params[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def init_repo(project: Path, message: str, dvc_add: tuple[str, ...] = ()) -> None:
    """git + DVC, the given data folders `dvc add`-ed (queued and --temp runs find them), one commit."""
    run(project, "git", "init", "-q", "-b", "main")
    run(project, "dvc", "init", "-q")
    for folder in dvc_add:
        run(project, "dvc", "add", "-q", folder)
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", message)


def make_project(tmp_path: Path, tiny_clip: Path, llm_fraction: float = 0.0, **overrides) -> Path:
    """A ready-to-run project; `overrides` are dotted params keys ("train.epochs": 2)."""
    project = new_project(tmp_path)
    (project / "data").mkdir()
    (project / "data" / "README.md").write_text("test data\n")
    rows = make_images(project / "data" / "images", {"trainval": 16, "test": 12})
    with (project / "data" / "labels.csv").open("w") as f:
        f.write("path,labels,split\n" + "".join(f"{r['path']},{r['labels']},{r['split']}\n" for r in rows))
    (project / "data" / "labels.txt").write_text("".join(f"{name}: {', '.join(SYNONYMS[name])}\n" for name in LABELS))
    set_params(
        project,
        {
            "prepare.dataset": "folder",
            "prepare.root": "data/images",
            "prepare.labels_file": "data/labels.csv",
            "prepare.label_names": "data/labels.txt",
            "generate.n_combinations": 24,
            "generate.max_labels": 2,
            "generate.llm_fraction": llm_fraction,
            "generate.max_tokens": 40,
            "generate.n_threads": 2,
            "encode.model": str(tiny_clip),
            "encode.image_resolution": 64,
            "encode.partial_resolution": 128,
            "encode.batch_size": 8,
            "encode.num_workers": 0,
            "train.epochs": 3,
            "train.hidden_dim": 32,
            "train.radius": 1.0,
            **overrides,
        },
    )
    init_repo(project, "project", dvc_add=("data/images",))
    return project


def commit(project: Path, message: str = "run") -> None:
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", message, check=False)


def kill_when(proc: subprocess.Popen, progress, at_least: int, timeout: float) -> int:
    """SIGKILL `proc` once `progress()` (finished work on disk) reaches `at_least`; return it then."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    while progress() < at_least:
        assert proc.poll() is None, "the stage ended before it could be killed"
        assert time.monotonic() < deadline, f"no progress to {at_least} within {timeout} s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return progress()
