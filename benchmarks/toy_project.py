"""A throwaway DVC project for the benchmarks that run stages: a copy of this checkout's pipeline/,
stages/, dvc.yaml and params.yaml, a folder dataset of small random images carrying Pascal VOC's 20
labels and synonyms, and params.yaml's defaults pointing at it (tests build their own, tests/e2e_project.py);
and the template captions `generate` would write for VOC, for the encoding benchmarks.

Imported as a sibling module (`python benchmarks/<script>.py` puts benchmarks/ first on the path)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from pipeline.config import GenerateParams
from pipeline.data.labels import VOC_LABELS
from pipeline.generate.combinations import plan_combinations
from pipeline.generate.templates import template_texts

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}


def build_project(folder: Path, images: list[tuple[str, str]], settings: dict) -> Path:
    """folder/project, ready for `python -m stages.<name>` or (after `init_repo`) `dvc repro`.

    `images`: (split, "label|label") per image; `settings`: dotted params keys to change
    ("train.epochs": 5), on top of the folder dataset."""
    project = folder / "project"
    project.mkdir(parents=True)
    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
        shutil.copy(ROOT / name, project / name)
    data = project / "data"
    (data / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i, (split, labels) in enumerate(images):
        name = f"{split}_{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)).save(data / "images" / name)
        rows.append(f"{name},{labels},{split}\n")
    (data / "labels.csv").write_text("path,labels,split\n" + "".join(rows))
    (data / "labels.txt").write_text(
        "".join(f"{name}: {', '.join(synonyms)}\n" for name, synonyms in zip(VOC_LABELS.names, VOC_LABELS.synonyms))
    )
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    folder_dataset = {
        "prepare.dataset": "folder",
        "prepare.root": "data/images",
        "prepare.labels_file": "data/labels.csv",
        "prepare.label_names": "data/labels.txt",
    }
    for dotted, value in {**folder_dataset, **settings}.items():
        section, key = dotted.split(".", 1)
        params[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def random_images(n_per_split: dict[str, int], seed: int = 0) -> list[tuple[str, str]]:
    """(split, labels) rows: 1-2 random VOC labels per image."""
    rng = np.random.default_rng(seed)
    return [
        (split, "|".join(rng.choice(VOC_LABELS.names, rng.integers(1, 3), replace=False)))
        for split, n in n_per_split.items()
        for _ in range(n)
    ]


def run(project: Path, *command: str) -> subprocess.CompletedProcess:
    """`command` in the project folder; stops the benchmark with its output when it fails."""
    done = subprocess.run(command, cwd=project, env={**os.environ, **ENV}, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(
            f"{' '.join(command)} exited with {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


def init_repo(project: Path) -> None:
    """git + DVC, the image folder `dvc add`-ed (queued and --temp runs find it), one commit."""
    run(project, "git", "init", "-q", "-b", "main")
    run(project, "dvc", "init", "-q")
    run(project, "dvc", "add", "-q", "data/images")
    commit(project, "project")


def commit(project: Path, message: str) -> None:
    run(project, "git", "add", "-A")
    subprocess.run(["git", "commit", "-qm", message], cwd=project, env={**os.environ, **ENV}, capture_output=True)


def template_captions(n: int) -> list[str]:
    """What `generate` writes with llm_fraction 0: a random template and synonyms per VOC combination."""
    params = GenerateParams()
    plan = plan_combinations(VOC_LABELS, seed=0, n=n, max_labels=params.max_labels, llm_fraction=0.0)
    return [t.text for c in plan for t in template_texts(c, VOC_LABELS, params.templates, use_synonyms=True)]
