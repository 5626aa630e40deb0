"""Few-shot support sets: n labelled images per class, drawn CoOp-style from a training split.

Sampling (`sample_support`) is greedy and seeded: the classes are visited in a random
order; for each, random images that contain it (and are not yet picked) are added until
the class has at least n positive images among everything picked so far. A picked image
brings all its labels, so a class visited late often already has its n positives and
adds nothing; a class with fewer than n images in the split gets all of them (logged).
The same (manifest, shots, seed) always gives the same support set; the code uses only
the manifest columns `image_id` and `labels`, so it works for any split of any dataset
(VOC 2007 trainval, COCO 2014 train, NUS-WIDE train, a folder dataset).

Support table (`artifacts/fewshot/support.parquet`, `SUPPORT_SCHEMA`), one row per picked image,
in manifest order:

  ============  ===========  ==============================================================
  column        dtype        meaning
  ============  ===========  ==============================================================
  `image_id`    Utf8         the image (the manifest's `image_id`)
  `labels`      List[Utf8]   all its positive labels (the manifest's `labels`), label order
  `picked_for`  Utf8         the class whose visit picked the image
  ============  ===========  ==============================================================

With `fewshot.shots: 0` (zero-shot) the table is empty, with this schema.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from pipeline import paths

from .labels import LabelSet

log = logging.getLogger(__name__)

SUPPORT_PATH = paths.FEWSHOT_SUPPORT
SUPPORT_SCHEMA = {"image_id": pl.Utf8, "labels": pl.List(pl.Utf8), "picked_for": pl.Utf8}


def empty_support() -> pl.DataFrame:
    return pl.DataFrame(schema=SUPPORT_SCHEMA)


def sample_support(manifest: pl.DataFrame, labels: LabelSet, shots: int, seed: int) -> pl.DataFrame:
    """At least `shots` positive images per class (fewer only where the split has fewer), seeded.

    `manifest` needs columns `image_id` and `labels`; returns a frame with SUPPORT_SCHEMA.
    """
    if shots == 0 or manifest.height == 0:
        return empty_support()
    ids = manifest["image_id"].to_list()
    image_labels = manifest["labels"].to_list()
    labels.check_known({l for ls in image_labels for l in ls}, "few-shot manifest")
    members: dict[str, list[int]] = {name: [] for name in labels.names}
    for row, ls in enumerate(image_labels):
        for l in ls:
            members[l].append(row)

    rng = np.random.default_rng(seed)
    counts = dict.fromkeys(labels.names, 0)
    picked: dict[int, str] = {}  # manifest row -> the class it was picked for
    for c in rng.permutation(len(labels)):
        name = labels.names[c]
        candidates = [r for r in members[name] if r not in picked]
        for r in rng.permutation(len(candidates)):
            if counts[name] >= shots:
                break
            row = candidates[r]
            picked[row] = name
            for l in set(image_labels[row]):
                counts[l] += 1
        if counts[name] < shots:
            log.warning(
                "class %r has only %d image(s) in the split, fewer than shots = %d: using all of them",
                name,
                counts[name],
                shots,
            )
    rows = sorted(picked)
    return pl.DataFrame(
        {
            "image_id": [ids[r] for r in rows],
            "labels": [list(image_labels[r]) for r in rows],
            "picked_for": [picked[r] for r in rows],
        },
        schema=SUPPORT_SCHEMA,
    )


def positives_per_class(support: pl.DataFrame, labels: LabelSet) -> dict[str, int]:
    """How many support images contain each class."""
    counts = labels.multi_hot(support["labels"].to_list()).sum(axis=0) if support.height else np.zeros(len(labels))
    return {name: int(n) for name, n in zip(labels.names, counts)}
