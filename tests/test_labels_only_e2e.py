"""A project with a label list and no image at all (`prepare.dataset: labels`): `dvc repro` trains an
adapter from generated texts, the image stages write empty outputs, and `tai predict` then labels
a folder. Both run as subprocesses on a tiny random CLIP: plumbing, never accuracy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from e2e_project import ALL_STAGES, env, init_repo, new_project, run, set_params, stages_run

pytestmark = pytest.mark.slow

LABELS = {"red panda": ["red pandas", "lesser panda"], "teapot": ["teapots"], "bicycle": ["bike", "bikes"]}


def make_labels_project(tmp_path: Path, tiny_clip: Path) -> Path:
    project = new_project(tmp_path)
    (project / "data").mkdir()
    (project / "data" / "labels.txt").write_text("".join(f"{n}: {', '.join(s)}\n" for n, s in LABELS.items()))
    set_params(
        project,
        {
            "prepare.dataset": "labels",
            "prepare.label_names": "data/labels.txt",
            "generate.n_combinations": 12,
            "generate.max_labels": 2,
            "generate.llm_fraction": 0.0,
            "encode.model": str(tiny_clip),
            "encode.image_resolution": 64,
            "encode.batch_size": 8,
            "encode.num_workers": 0,
            "train.epochs": 2,
            "train.hidden_dim": 16,
            "train.radius": 1.0,
        },
    )
    init_repo(project, "labels-only project")
    return project


def test_labels_only_project_trains_from_text_and_predicts_a_folder(tmp_path: Path, tiny_clip: Path) -> None:
    project = make_labels_project(tmp_path, tiny_clip)
    result = run(project, "dvc", "repro")
    assert stages_run(result.stdout) == ALL_STAGES, result.stdout  # every stage runs; image ones write placeholders
    log = result.stdout + result.stderr
    for stage in ("zeroshot", "evaluate"):
        assert f"prepare.dataset is 'labels' (no images): skipping {stage}" in log

    a = project / "artifacts"
    assert sorted(p.name for p in (a / "data" / "labels").iterdir()) == ["labels.parquet"]  # no manifest
    assert pl.read_parquet(a / "data" / "labels" / "labels.parquet")["label"].to_list() == list(LABELS)
    assert pl.read_parquet(a / "texts.parquet").height == 12
    for purpose in ("eval", "support", "partial"):  # nothing to encode: an empty folder but for an empty skipped table
        assert sorted(p.name for p in (a / "embeddings" / purpose).iterdir()) == ["skipped.parquet"]
        assert pl.read_parquet(a / "embeddings" / purpose / "skipped.parquet").height == 0
    for out in ("eval", "zeroshot"):
        assert json.loads((project / "reports" / f"{out}.json").read_text()) == {"n_images": 0, "n_classes_scored": 0}
        per_class = pl.read_parquet(a / out / "per_class.parquet")
        assert per_class["label"].to_list() == list(LABELS) and per_class["ap"].null_count() == 3
        assert pl.read_parquet(a / out / "scores.parquet").columns == ["image_id", *LABELS]
    assert pl.read_parquet(a / "fewshot" / "support.parquet").height == 0
    assert (a / "model" / "adapter.pt").is_file()

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    Image.new("RGB", (80, 40), (200, 30, 30)).save(photos / "a.jpg")
    Image.new("RGB", (30, 60), (30, 30, 200)).save(photos / "sub" / "b.png")
    out = tmp_path / "predictions.parquet"
    predicted = subprocess.run(  # the project's own copy of the code, as `tai` would run it there
        [sys.executable, "-m", "pipeline.cli", "predict", str(photos), "--out", str(out), "--device", "cpu"],
        cwd=project,
        env={**env(), "PYTHONPATH": str(project)},
        capture_output=True,
        text=True,
    )
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr
    frame = pl.read_parquet(out)
    assert frame.columns == ["path", "predicted", *LABELS]
    assert sorted(Path(p).name for p in frame["path"]) == ["a.jpg", "b.png"]
    probabilities = frame.select(list(LABELS)).to_numpy()
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
