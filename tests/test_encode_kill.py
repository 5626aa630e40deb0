"""SIGKILL encode_text and encode_images mid-way (python -m stages.<name> in a project folder, the
tiny CLIP), rerun them, and compare with an uninterrupted run: the same shards, and never a
partial shard folder where a finished one belongs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import yaml
from PIL import Image

from e2e_project import kill_when, stage_command, stage_env
from pipeline.encoding.embeddings import read_shards
from pipeline.io import write_parquet

N_TEXTS = 3000
N_IMAGES = 240


def chunks(project: Path) -> int:
    """Finished batches so far: each is one chunk file of the embedding cache."""
    return len(list((project / "cache").glob("*.arrow")))


def write_params(project: Path, tiny_clip: Path, **encode) -> None:
    params = {
        "prepare": {"dataset": "folder", "root": "data/images", "labels_file": "data/labels.csv", "splits": ["test"]},
        "zeroshot": {"split": "test"},
        "evaluate": {"split": "test"},
        "encode": {
            "model": str(tiny_clip),
            "image_resolution": 64,
            "partial_resolution": None,
            "num_workers": 0,
            **encode,
        },
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def text_project(path: Path, tiny_clip: Path) -> Path:
    path.mkdir()
    rng = np.random.default_rng(0)
    words = ["cat", "dog", "car", "tree", "red", "small", "on", "a", "the", "under", "park", "street"]
    texts = [f"{i}: " + " ".join(rng.choice(words, 8)) for i in range(N_TEXTS)]
    write_parquet(
        pl.DataFrame({"text_id": [f"t{i:05d}" for i in range(N_TEXTS)], "text": texts}),
        path / "artifacts" / "texts.parquet",
    )
    write_params(path, tiny_clip, batch_size=4, shard_rows=700)
    return path


def image_project(path: Path, tiny_clip: Path) -> Path:
    folder = path / "data" / "images"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    (path / "data" / "labels.csv").write_text(
        "path,labels,split\n" + "".join(f"{i:04d}.png,{'cat' if i % 2 else 'dog'},test\n" for i in range(N_IMAGES))
    )
    write_params(path, tiny_clip, batch_size=2, shard_rows=50)
    run_to_end(path, "prepare")
    return path


def env(project: Path) -> dict[str, str]:
    # tiny matrices: more threads only fight over a shared CPU; each project has its own embedding cache,
    # so the uninterrupted run and the killed one never share finished batches
    return {**stage_env(), "OMP_NUM_THREADS": "1", "TAI_CACHE_DIR": str(project / "cache")}


def start(project: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        stage_command(name), cwd=project, env=env(project), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def run_to_end(project: Path, name: str) -> str:
    result = subprocess.run(
        stage_command(name), cwd=project, env=env(project), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def kill_mid_way(project: Path, name: str, at_least: int, timeout: float = 120) -> int:
    return kill_when(start(project, name), lambda: chunks(project), at_least, timeout)


def shard_files(folder: Path) -> dict[str, tuple[list[str], np.ndarray, dict]]:
    """Every file of a shard folder, read; hidden or temporary files would show up here too."""
    out = {}
    for f in sorted(folder.iterdir()):
        e = read_shards(f)
        out[f.name] = (e.ids, e.vectors, e.metadata)
    return out


def check_killed_and_resumed(tmp_path: Path, make, stage: str, out: str, n_batches: int) -> str:
    whole, killed = make(tmp_path / "whole"), make(tmp_path / "killed")
    reference_run = start(whole, stage)  # alongside: one thread each
    first = kill_mid_way(killed, stage, at_least=5)
    assert not (killed / out).exists(), "a killed run left a shard folder where the finished one belongs"
    second = kill_mid_way(killed, stage, at_least=first + 5)
    assert not (killed / out).exists()
    assert 5 <= first < second < n_batches, (first, second, n_batches)  # both kills landed mid-way
    log = run_to_end(killed, stage)
    _, reference_log = reference_run.communicate(timeout=300)
    assert reference_run.returncode == 0, reference_log
    resumed, reference = shard_files(killed / out), shard_files(whole / out)
    assert list(resumed) == list(reference) and len(reference) > 1
    for name, (ids, vectors, metadata) in reference.items():
        assert resumed[name][0] == ids and resumed[name][2] == metadata
        np.testing.assert_array_equal(resumed[name][1], vectors)
    return log


def test_encode_text_killed_twice_resumes_to_the_uninterrupted_shards(tmp_path, tiny_clip):
    log = check_killed_and_resumed(
        tmp_path, lambda p: text_project(p, tiny_clip), "encode_text", "artifacts/embeddings/text", N_TEXTS // 4
    )
    found = int(log.split("texts: ")[1].split(" of ")[0])
    assert found >= 10 * 4  # the rerun took the killed runs' batches from the cache
    assert len(read_shards(tmp_path / "killed" / "artifacts" / "embeddings" / "text")) == N_TEXTS


def test_encode_images_killed_twice_resumes_to_the_uninterrupted_shards(tmp_path, tiny_clip):
    log = check_killed_and_resumed(
        tmp_path,
        lambda p: image_project(p, tiny_clip),
        "encode_images eval",
        "artifacts/embeddings/eval/test-64",
        N_IMAGES // 2,
    )
    cached = int(log.split("images @64px: ")[1].split(" cached")[0])
    assert cached >= 10 * 2
    assert len(read_shards(tmp_path / "killed" / "artifacts" / "embeddings" / "eval" / "test-64")) == N_IMAGES
