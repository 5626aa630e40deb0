"""A cache many runs share: 4 processes encode overlapping texts and images into one embedding cache
at once (the real `pipeline.encoding.encode`, the tiny CLIP, a compaction after every slice), a fifth reads it
in a loop, and one writer is SIGKILLed mid-run (tests/cache_stress.py is each process).

Afterwards every entry is readable and equal (to 1e-5, the bound for a text encoded in another batch)
to a single-process run, no entry a surviving writer encoded is missing, no entry the reader once saw
ever disappeared, and no temporary is left."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from e2e_project import kill_when
from pipeline.encoding.embeddings import EmbeddingCache, content_key

WRITERS, KILLED = 4, 3  # writer 3 is SIGKILLed after its third chunk
N_TEXTS, TEXT_WINDOW, TEXT_STEP = 160, 80, 26
N_IMAGES, IMAGE_WINDOW, IMAGE_STEP = 24, 12, 4
RESOLUTION = 64
SCRIPT = Path(__file__).with_name("cache_stress.py")


def make_inputs(folder: Path) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(0)
    words = ["cat", "dog", "car", "tree", "red", "small", "on a sofa", "in the park", "at night", "two"]
    texts = [f"a photo of {' '.join(rng.choice(words, 1 + i % 5))} number {i}." for i in range(N_TEXTS)]
    folder.mkdir()
    images = []
    for i in range(N_IMAGES):
        path = folder / f"{i:02d}.jpg"
        Image.fromarray(rng.integers(0, 255, (40 + i, 56, 3)).astype(np.uint8)).save(path)
        images.append(str(path))
    return texts, images


def window(items: list, i: int, size: int, step: int) -> list:
    return [items[(i * step + j) % len(items)] for j in range(size)]


def reference(tiny_clip: Path, texts: list[str], images: list[str], cache_dir: Path) -> dict[str, np.ndarray]:
    """The entries a single process writes for all the inputs."""
    import torch

    from pipeline.encoding.encode import encode_texts
    from pipeline.encoding.encode_images import encode_images
    from pipeline.encoding.load import load_clip

    torch.set_num_threads(1)
    encoder = load_clip(str(tiny_clip), "cpu")
    cache = EmbeddingCache(cache_dir)
    encode_texts(encoder, texts, cache, batch_size=4)
    encode_images(encoder, images, RESOLUTION, cache, batch_size=2)
    return dict(EmbeddingCache(cache_dir)._load())


def keys_of(tiny_clip: Path, texts: list[str], images: list[str]) -> set[str]:
    from pipeline.encoding.encode_images import _file_key
    from pipeline.encoding.load import load_clip

    encoder = load_clip(str(tiny_clip), "cpu")
    return {content_key(encoder.identity, "text", t) for t in texts} | {
        _file_key(encoder, RESOLUTION, p, "square") for p in images
    }


def test_four_writers_a_reader_and_a_kill_lose_nothing(tmp_path, tiny_clip):
    texts, images = make_inputs(tmp_path / "images")
    expected = reference(tiny_clip, texts, images, tmp_path / "reference")
    np.savez(tmp_path / "reference.npz", **expected)
    cache, out = tmp_path / "shared-cache", tmp_path / "out"
    out.mkdir()
    job = {
        "cache": str(cache),
        "clip": str(tiny_clip),
        "reference": str(tmp_path / "reference.npz"),
        "stop": str(tmp_path / "stop"),
        "out": str(out),
        "resolution": RESOLUTION,
        "texts": [window(texts, i, TEXT_WINDOW, TEXT_STEP) for i in range(WRITERS)],
        "images": [window(images, i, IMAGE_WINDOW, IMAGE_STEP) for i in range(WRITERS)],
        "parts": 3,
        "batch_size": 2,
        "max_chunks": 2,
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    command = [sys.executable, str(SCRIPT)]

    def start(*args: str) -> subprocess.Popen:
        log = open(out / f"{'-'.join(args)}.log", "w")  # progress bars and, on failure, the traceback
        return subprocess.Popen([*command, args[0], str(tmp_path / "job.json"), *args[1:]], stdout=log, stderr=log)

    reader = start("reader")
    writers = [start("writer", str(i)) for i in range(WRITERS)]

    def chunks_written(i: int) -> int:
        progress = out / f"writer-{i}.progress"
        return len(progress.read_text().splitlines()) if progress.exists() else 0

    kill_when(writers[KILLED], lambda: chunks_written(KILLED), 3, timeout=240)
    for i, proc in enumerate(writers):
        if i != KILLED:
            assert proc.wait(timeout=240) == 0, (out / f"writer-{i}.log").read_text()[-3000:]
    (tmp_path / "stop").touch()
    assert reader.wait(timeout=60) == 0

    stats = json.loads((out / "reader.json").read_text())
    assert stats["error"] is None, stats["error"]
    assert stats["loads"] > 0 and stats["lost"] == [] and stats["wrong"] == [] and stats["unknown"] == [], stats

    temporaries_left = sorted(p.name for p in cache.glob(".*.tmp"))  # the killed writer's, if it died mid-write
    EmbeddingCache(cache).compact()  # what the next encode run does first: its writer is gone
    assert list(cache.glob(".*.tmp")) == []
    final = EmbeddingCache(cache)._load()
    survivors = set().union(
        *(keys_of(tiny_clip, job["texts"][i], job["images"][i]) for i in range(WRITERS) if i != KILLED)
    )
    assert survivors <= set(final)  # no entry a surviving writer encoded is lost
    assert set(final) <= set(expected)
    for key, vector in final.items():  # every chunk readable, every entry right
        np.testing.assert_allclose(vector, expected[key], rtol=0, atol=1e-5)
    compactions = sum(
        json.loads((out / f"writer-{i}.json").read_text())["compactions"] for i in range(WRITERS) if i != KILLED
    )
    puts = sum(chunks_written(i) for i in range(WRITERS))
    print(
        f"\ncache stress: {WRITERS} writers + 1 reader, {len(final)} entries of {len(expected)} inputs "
        f"({len(survivors)} from survivors), {puts} chunk writes, {compactions} compactions by survivors, "
        f"1 SIGKILL after {chunks_written(KILLED)} chunks, reader loads {stats['loads']} (max "
        f"{stats['max_entries']} entries), killed writer's temporaries left {temporaries_left}"
    )
