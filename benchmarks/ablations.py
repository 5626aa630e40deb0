"""The partial-label method's variants on synthetic worlds whose gap is known: one table.

    python benchmarks/ablations.py [--seeds 3] [--noise surface interior ball] [--p 0.5]

Three worlds (pipeline/testbeds/synthetic_worlds.py WORLDS): a gap common to every image; plus per-label gaps that
add up; plus a gap per label combination. For each world, every `partial.shift` mode and each
text-noise kind (`train.noise`) trains the adapter on shifted, perturbed texts only (the paper's
partial-label method, `partial.image_weight` 0) from a mask at known proportion p, and scores the
world's images. A last row per world adds the partially labelled images to training
(`partial.image_weight` 0.5, our extension). Mean and sample standard deviation (ddof=1) of test
mAP over seeds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pipeline.data.partial_labels import mask_arrays, sample_mask
from pipeline.method.centroids import shift_offsets
from pipeline.method.train import TrainingSet, train_adapter
from pipeline.testbeds.synthetic_worlds import WORLDS, World, known_positives, partial_label_map, score, train_params

SHIFTS = ("combination", "label", "global", "none")


def mean_std(maps: list[float]) -> str:
    """ "mean ± std" over seeds: the sample standard deviation (ddof=1), as `tai report` gives; one seed has none."""
    std = np.std(maps, ddof=1) if len(maps) > 1 else float("nan")
    return f"{np.mean(maps):.3f} ± {std:.3f}"


def with_images_map(world: World, seed: int, p: float, noise: str) -> float:
    """Eq. 9 shift plus the partially labelled images under a masked loss (partial.image_weight 0.5)."""
    import polars as pl

    text_x, text_labels = world.texts(1500)
    image_x, image_labels = world.images(500)
    test_x, test_labels = world.images(600)
    known_positive = known_positives(world, image_labels, p, seed)
    offsets = shift_offsets("combination", text_x, text_labels, image_x, known_positive, world.labels)
    manifest = pl.DataFrame({"image_id": [f"i{j}" for j in range(len(image_x))], "labels": image_labels})
    targets, known = mask_arrays(
        sample_mask(manifest, world.labels, p, seed), world.labels, manifest["image_id"].to_list()
    )
    data = TrainingSet(
        torch.from_numpy(text_x),
        torch.from_numpy(world.labels.multi_hot(text_labels)),
        1.0,
        text_offsets=torch.from_numpy(offsets),
        images=torch.from_numpy(image_x),
        image_targets=torch.from_numpy(targets),
        image_known=torch.from_numpy(known),
        image_radius=1.0,
        image_weight=0.5,
        image_noise="interior",
    )
    model, _ = train_adapter(data, train_params(seed=seed, noise=noise))
    return score(model, test_x, test_labels, world.labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--noise", nargs="+", default=["surface", "interior", "ball"])
    parser.add_argument("--p", type=float, default=0.5, help="known proportion of the mask")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import logging

    logging.disable(logging.WARNING)
    started = time.perf_counter()
    rows = []
    for world_name, spec in WORLDS.items():
        for shift in SHIFTS:
            cells = []
            for noise in args.noise:
                maps = [
                    partial_label_map(World(seed, **spec), shift, seed, p=args.p, noise=noise)
                    for seed in range(args.seeds)
                ]
                cells.append(mean_std(maps))
            rows.append((world_name, f"{shift}, texts only", cells))
        maps = {
            noise: [with_images_map(World(seed, **spec), seed, args.p, noise) for seed in range(args.seeds)]
            for noise in args.noise
        }
        rows.append((world_name, "combination + images (image_weight 0.5)", [mean_std(maps[n]) for n in args.noise]))
    header = ["world", "partial.shift", *[f"{n} noise" for n in args.noise]]
    print(
        f"test mAP, mean ± sample std (ddof=1) over {args.seeds} seeds; known proportion {args.p}; text radius 1; "
        f"dim 32, 6 labels, 1500 texts, 500 partially labelled images, 600 test images"
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for world_name, shift, cells in rows:
        print(f"| {world_name} | {shift} | " + " | ".join(cells) + " |")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
