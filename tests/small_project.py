"""A project folder for running single stages (no git, no DVC): the tiny image dataset of e2e_project, its
labels, and params.yaml pointing at a given CLIP. Earlier stages run in-process (`in_project`); the stage under
test runs as dvc.yaml runs it, `python -m stages.<name>` (`stage`)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

from e2e_project import LABELS, SYNONYMS, make_images, set_params, stage_command, stage_env


def small_project(tmp_path: Path, clip_model: str, **overrides) -> Path:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    rows = make_images(project / "data" / "images", {"trainval": 8, "test": 6})
    (project / "data" / "labels.csv").write_text(
        "path,labels,split\n" + "".join(f"{r['path']},{r['labels']},{r['split']}\n" for r in rows)
    )
    (project / "data" / "labels.txt").write_text("".join(f"{n}: {', '.join(SYNONYMS[n])}\n" for n in LABELS))
    set_params(
        project,
        {
            "prepare.dataset": "folder",
            "prepare.root": "data/images",
            "prepare.labels_file": "data/labels.csv",
            "prepare.label_names": "data/labels.txt",
            "encode.model": clip_model,
            "encode.image_resolution": 64,
            "encode.partial_resolution": 128,
            "encode.batch_size": 4,
            "encode.num_workers": 0,
            "encode.runtime": "torch",
            **overrides,
        },
    )
    return project


def change_params(project: Path, **settings) -> None:
    """Dotted keys changed in the project's own params.yaml."""
    import yaml

    params = yaml.safe_load((project / "params.yaml").read_text())
    for dotted, value in settings.items():
        section, key = dotted.split(".", 1)
        params[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@contextlib.contextmanager
def in_project(project: Path):
    before = os.getcwd()
    os.chdir(project)
    try:
        yield
    finally:
        os.chdir(before)


def run_stages(project: Path, *names: str) -> None:
    """Stages in this process, in order ("prepare", "encode_images eval"), as `python -m stages.<name>` would."""
    import importlib

    from pipeline.config import load_params

    with in_project(project):
        for name in names:
            module, *args = name.split()
            importlib.import_module(f"stages.{module}").main(load_params(), *args)


def stage(project: Path, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(stage_command(name), cwd=project, env=stage_env(), capture_output=True, text=True)
