"""Image embeddings of one split with their 0/1 targets: the join of an encode stage's shards
(`pipeline.encoding.embeddings`), prepare's manifest (`pipeline.data.manifest`) and the label set.

Stages that score images (zeroshot, evaluate) or learn from them (centroids, train in the few-shot
and partial-label settings) read them here, by plain values: the dataset, the split, the resolution
and the purpose (which encode stage wrote them, `pipeline.paths.IMAGE_EMBEDDINGS`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipeline import paths
from pipeline.encoding.embeddings import read_shards

from .labels import LabelSet
from .manifest import read_split

log = logging.getLogger(__name__)


@dataclass
class LabelledImages:
    """Image embeddings of one split with their 0/1 targets, aligned row by row."""

    ids: list[str]
    vectors: np.ndarray
    targets: np.ndarray
    resolution: int
    n_skipped: int = 0  # images of the split's manifest with no embedding (encode_images could not read them)


def labelled_images(dataset: str, labels: LabelSet, split: str, resolution: int, purpose: str) -> LabelledImages:
    """Embeddings of the split's readable images (unreadable ones were skipped by the encode stage).

    `purpose` is "eval" (images that are scored), "support" or "partial" (images the adapter learns
    from): each has its own encode stage, which encodes only what the setting needs (the Plan's sets, `pipeline.settings`)."""
    root = paths.IMAGE_EMBEDDINGS[purpose]
    directory = paths.image_embeddings_dir(root, split, resolution)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{directory}: no image embeddings for split {split!r} at {resolution} px; "
            f"run `dvc repro encode_{purpose}_images` (the settings in params.yaml decide which sets it encodes)"
        )
    embeddings = read_shards(directory)
    manifest = read_split(dataset, split).select("image_id", "labels")
    order = pl.DataFrame({"image_id": embeddings.ids}).join(manifest, on="image_id", how="left", maintain_order="left")
    # an evaluation set is the whole split: a manifest image with no embedding could not be read
    # (training sets may be a subset on purpose: the few-shot support images)
    n_skipped = manifest.height - manifest["image_id"].is_in(embeddings.ids).sum() if purpose == "eval" else 0
    if n_skipped:
        log.warning(
            "%d of %d %s images have no embedding (encode_eval_images could not read them; see %s): "
            "scoring the other %d",
            n_skipped,
            manifest.height,
            split,
            paths.skipped_images_path(root),
            manifest.height - n_skipped,
        )
    targets = labels.multi_hot(order["labels"].to_list())
    return LabelledImages(embeddings.ids, embeddings.vectors, targets, resolution, int(n_skipped))
