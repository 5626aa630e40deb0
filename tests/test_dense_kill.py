"""SIGKILL dense-feature encoding mid-way, rerun it, and compare with an uninterrupted run: the rerun
encodes only the images no finished batch holds, and the features are the same."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from e2e_project import kill_when, stage_env
from pipeline.encoding.dense import DenseFeatures, encode_dense
from pipeline.encoding.load import load_clip

N_IMAGES = 120
METADATA = {"kind": "dense", "resolution": 64}

SCRIPT = """
import sys
from pathlib import Path
from pipeline.encoding.dense import encode_dense
from pipeline.encoding.load import load_clip
clip, folder, staging, out = sys.argv[1:5]
paths = sorted(str(p) for p in Path(folder).glob("*.png"))
encode_dense(load_clip(clip, "cpu"), [Path(p).stem for p in paths], paths, 64, Path(out), {"kind": "dense", "resolution": 64},
             Path(staging), batch_size=1)
"""


def _images(folder: Path) -> list[str]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return sorted(str(p) for p in folder.glob("*.png"))


def _features(out: Path) -> dict[str, np.ndarray]:
    dense = DenseFeatures(out.parent)
    return dict(zip(dense.ids, dense.take(np.arange(len(dense))).numpy()))


def test_a_killed_dense_run_resumes_with_what_no_batch_holds(tmp_path, tiny_clip, caplog):
    paths = _images(tmp_path / "images")
    ids = [Path(p).stem for p in paths]
    staging = tmp_path / "staging"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(tiny_clip),
            str(tmp_path / "images"),
            str(staging),
            str(tmp_path / "killed" / "part.arrow"),
        ],
        env=stage_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    finished = kill_when(proc, lambda: len(list(staging.glob("chunk-*.arrow"))), at_least=3, timeout=120)
    assert 3 <= finished < N_IMAGES and not (tmp_path / "killed" / "part.arrow").exists()

    encoder = load_clip(str(tiny_clip), "cpu")
    with caplog.at_level(logging.INFO, "pipeline.encoding.dense"):
        encode_dense(encoder, ids, paths, 64, tmp_path / "resumed" / "part.arrow", METADATA, staging, batch_size=1)
    assert f"{finished} of {N_IMAGES} images already encoded by an interrupted run" in caplog.text
    assert len(list(staging.glob("chunk-*.arrow"))) == N_IMAGES  # batch 1: no image encoded twice
    encode_dense(encoder, ids, paths, 64, tmp_path / "whole" / "part.arrow", METADATA, tmp_path / "fresh", batch_size=1)

    resumed, whole = _features(tmp_path / "resumed" / "part.arrow"), _features(tmp_path / "whole" / "part.arrow")
    assert sorted(resumed) == sorted(whole) == sorted(ids)
    for image_id in ids:
        np.testing.assert_array_equal(resumed[image_id], whole[image_id])


def test_the_staging_key_changes_with_each_thing_the_features_depend_on(tmp_path):
    from pipeline.encoding.dense import staging_key

    paths = _images(tmp_path / "images")[:3]
    ids = [Path(p).stem for p in paths]
    metadata = {"model_identity": "clip-a", "resolution": 64, "resize": "square", "split": "test"}
    base = staging_key(metadata, paths, ids)
    assert staging_key(dict(metadata), list(paths), list(ids)) == base
    changed = {f"metadata {key}": staging_key({**metadata, key: "other"}, paths, ids) for key in metadata}
    changed["an id"] = staging_key(metadata, paths, [*ids[:2], "other"])
    changed["a path"] = staging_key(metadata, [*paths[:2], paths[0]], ids)
    changed["one image fewer"] = staging_key(metadata, paths[:2], ids[:2])
    Image.new("RGB", (41, 40)).save(paths[1])  # size (and mtime)
    changed["a file's size"] = staging_key(metadata, paths, ids)
    stat = os.stat(paths[1])
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed["a file's mtime"] = staging_key(metadata, paths, ids)
    assert len({base, *changed.values()}) == len(changed) + 1, changed


def test_the_stage_removes_its_staging_folder_once_its_output_is_in_place(tmp_path, tiny_clip, monkeypatch):
    import stages.encode_dense as stage_module
    from pipeline import paths
    from small_project import run_stages, small_project

    project = small_project(tmp_path, str(tiny_clip), **{"prompt.method": "taidpt"})
    staged = []
    real = stage_module.encode_dense

    def encode_and_look(*args, **kwargs):
        skipped = real(*args, **kwargs)
        staged.append((args[6], sorted(p.name for p in args[6].glob("chunk-*.arrow"))))  # the batches wait there...
        return skipped

    monkeypatch.setattr(stage_module, "encode_dense", encode_and_look)
    run_stages(project, "prepare", "encode_dense")
    assert staged and staged[0][1], "the stage staged no batch"
    assert (project / paths.DENSE_EMBEDDINGS).is_dir()
    assert not any(folder.exists() for folder, _ in staged)  # ...until the output is in place
