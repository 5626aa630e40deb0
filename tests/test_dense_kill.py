"""SIGKILL dense-feature encoding mid-way, rerun it, and compare with an uninterrupted run: the rerun
encodes only the images no finished batch holds, and the features are the same."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from e2e_project import kill_when, stage_env
from pipeline.dense import DenseFeatures, encode_dense
from pipeline.encoders import load_clip

N_IMAGES = 120
METADATA = {"kind": "dense", "resolution": 64}

SCRIPT = """
import sys
from pathlib import Path
from pipeline.dense import encode_dense
from pipeline.encoders import load_clip
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
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tiny_clip), str(tmp_path / "images"), str(staging),
                             str(tmp_path / "killed" / "part.arrow")], env=stage_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    finished = kill_when(proc, lambda: len(list(staging.glob("chunk-*.arrow"))), at_least=3, timeout=120)
    assert 3 <= finished < N_IMAGES and not (tmp_path / "killed" / "part.arrow").exists()

    encoder = load_clip(str(tiny_clip), "cpu")
    with caplog.at_level(logging.INFO, "pipeline.dense"):
        encode_dense(encoder, ids, paths, 64, tmp_path / "resumed" / "part.arrow", METADATA, staging, batch_size=1)
    assert f"{finished} of {N_IMAGES} images already encoded by an interrupted run" in caplog.text
    assert len(list(staging.glob("chunk-*.arrow"))) == N_IMAGES     # batch 1: no image encoded twice
    encode_dense(encoder, ids, paths, 64, tmp_path / "whole" / "part.arrow", METADATA, tmp_path / "fresh", batch_size=1)

    resumed, whole = _features(tmp_path / "resumed" / "part.arrow"), _features(tmp_path / "whole" / "part.arrow")
    assert sorted(resumed) == sorted(whole) == sorted(ids)
    for image_id in ids:
        np.testing.assert_array_equal(resumed[image_id], whole[image_id])
