"""One process of the shared-cache stress test (tests/test_cache_stress.py): a writer that encodes its
texts and images through the real `pipeline.encoding.encode` into the shared cache, or a reader that loads the
cache again and again, checking every entry against a single-process run.

    python tests/cache_stress.py writer JOB.json INDEX
    python tests/cache_stress.py reader JOB.json

JOB.json: cache, clip, texts and images (each writer's overlapping lists), reference (an .npz of the
single-process entries), stop (a file whose presence ends the reader), out (a folder for progress and
stats files)."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.encoding.embeddings import EmbeddingCache  # noqa: E402

TOLERANCE = 1e-5  # the project's bound for a text encoded in another batch (trimmed to another length)


class CountingCache(EmbeddingCache):
    """Appends a line to `progress` after every chunk it writes (the test kills a writer by it)."""

    def __init__(self, root, progress: Path):
        super().__init__(root)
        self.progress = progress

    def put(self, keys, vectors):
        super().put(keys, vectors)
        with open(self.progress, "a") as f:
            f.write(f"{len(keys)}\n")


def writer(job: dict, index: int) -> None:
    import torch

    from pipeline.encoding.encode import encode_texts
    from pipeline.encoding.encode_images import encode_images
    from pipeline.encoding.load import load_clip

    torch.set_num_threads(1)
    out = Path(job["out"])
    encoder = load_clip(job["clip"], "cpu")
    texts, images = job["texts"][index], job["images"][index]
    compactions = 0
    for part in range(job["parts"]):  # a slice at a time, compacting after each, so compactions interleave
        cache = CountingCache(job["cache"], out / f"writer-{index}.progress")
        encode_texts(encoder, texts[part :: job["parts"]], cache, batch_size=job["batch_size"])
        encode_images(encoder, images[part :: job["parts"]], job["resolution"], cache, batch_size=job["batch_size"])
        cache.compact(max_chunks=job["max_chunks"])
        compactions += 1
    (out / f"writer-{index}.json").write_text(json.dumps({"compactions": compactions}))


def reader(job: dict) -> None:
    reference = dict(np.load(job["reference"]))
    out, stop = Path(job["out"]), Path(job["stop"])
    seen: set[str] = set()
    stats = {"loads": 0, "max_entries": 0, "lost": [], "wrong": [], "unknown": [], "error": None}
    try:
        while not stop.exists():
            index = EmbeddingCache(job["cache"])._load()
            stats["loads"] += 1
            stats["max_entries"] = max(stats["max_entries"], len(index))
            stats["lost"] += sorted(seen - set(index))[:5]  # an entry seen once must stay
            for key, vector in index.items():
                if key not in reference:
                    stats["unknown"].append(key)
                elif not np.allclose(vector, reference[key], rtol=0, atol=TOLERANCE):
                    stats["wrong"].append(key)
            seen |= set(index)
            time.sleep(0.01)
    except Exception:  # noqa: BLE001 - reported to the test, which fails on it
        stats["error"] = traceback.format_exc()
    (out / "reader.json").write_text(json.dumps(stats))


if __name__ == "__main__":
    role, job_file = sys.argv[1], sys.argv[2]
    job = json.loads(Path(job_file).read_text())
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if role == "writer":
        writer(job, int(sys.argv[3]))
    else:
        reader(job)
