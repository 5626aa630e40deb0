"""Dense (per-location) image features for DualCoOp and TaI-DPT: store them (float16 shards, what
stage encode_dense_images does) or recompute them every epoch? Measures both per image.

    python benchmarks/dense.py                     # 224 and 448 px, random RN50 weights (real compute), 1 thread

- compute: CLIP RN50's image tower up to layer4 plus the attention pool's two projections
  (`pipeline.encoding.dense.dense_features`), a batch of 8, the fastest of 3 timed batches after one untimed,
  in CPU time of the process (the steady measure on a shared machine; the hours below use it) and
  in wall time.
- read: `pipeline.encoding.dense.DenseFeatures.take` of 8 random rows from a float16 shard of 256 images
  written with `DenseWriter`, memory-mapped and already in the page cache (a disk read adds its own
  cost; a sequential read of 100-400 KB per image is well under a millisecond on an SSD).
Then the bytes and hours each choice costs for the paper's datasets (VOC 2007, COCO 2014, NUS-WIDE,
the image counts of README "The paper's benchmarks") and the peers' epochs (DualCoOp 50, TaI-DPT's
test pass 1).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.encoding.dense import DenseFeatures, DenseWriter, bytes_per_image, dense_features
from pipeline.testbeds.random_clip import ARCHITECTURES

RN50 = ARCHITECTURES["RN50"]  # clip.model.CLIP's arguments
DATASETS = {"VOC 2007": (5011, 4952), "COCO 2014": (82081, 40137), "NUS-WIDE": (161789, 107859)}  # train, test


def rn50_visual() -> torch.nn.Module:
    import clip.model

    torch.manual_seed(0)
    return clip.model.CLIP(*RN50).visual.eval()


def time_compute(visual, resolution: int, batch: int = 8, repeats: int = 3) -> tuple[float, float]:
    """(wall, CPU) seconds per image: on a shared machine wall time is mostly waiting."""
    pixels = torch.randn(batch, 3, resolution, resolution)
    dense_features(visual, pixels)
    wall, cpu = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        dense_features(visual, pixels)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return min(wall) / batch, min(cpu) / batch


def time_read(resolution: int, n: int = 256, batch: int = 8, repeats: int = 20) -> float:
    grid, dim = resolution // 32, 1024
    with tempfile.TemporaryDirectory() as tmp:
        with DenseWriter(Path(tmp) / "part-00000.arrow", grid * grid, dim, {}) as writer:
            for start in range(0, n, 64):
                writer.write([str(i) for i in range(start, start + 64)], np.random.rand(64, grid * grid, dim))
        stored = DenseFeatures(tmp)
        rng = np.random.default_rng(0)
        stored.take(rng.choice(n, batch))
        times = []
        for _ in range(repeats):
            rows = rng.choice(n, batch, replace=False)
            started = time.perf_counter()
            stored.take(rows)
            times.append(time.perf_counter() - started)
    return min(times) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    visual = rn50_visual()
    per_image = {}
    print(
        "| px | locations | stored bytes / image | compute, CPU ms / image | compute, wall ms / image | read, wall ms / image |"
    )
    print("|---|---|---|---|---|---|")
    for resolution in (224, 448):
        (wall, compute), read = time_compute(visual, resolution), time_read(resolution)
        per_image[resolution] = (bytes_per_image(resolution, 1024), compute, read)
        print(
            f"| {resolution} | {(resolution // 32) ** 2} | {bytes_per_image(resolution, 1024):,} | {compute * 1e3:.1f} "
            f"| {wall * 1e3:.1f} | {read * 1e3:.3f} |"
        )
    print()
    print(
        "| dataset | DualCoOp: train + test at 448 px, stored | recompute every epoch, 50 (CPU h) | store once, read 50 times (CPU h) "
        "| TaI-DPT: test at 224 px, stored |"
    )
    print("|---|---|---|---|---|")
    for name, (train, test) in DATASETS.items():
        size448, compute448, read448 = per_image[448]
        size224 = per_image[224][0]
        recompute = (50 * train + test) * compute448 / 3600
        store = ((train + test) * compute448 + 50 * train * read448) / 3600
        print(
            f"| {name} | {(train + test) * size448 / 2**30:.1f} GiB | {recompute:.1f} | {store:.1f} "
            f"| {test * size224 / 2**30:.2f} GiB |"
        )
    print(f"\n{args.threads} torch thread(s); CPU")


if __name__ == "__main__":
    main()
