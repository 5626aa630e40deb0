"""Readers for what earlier stages wrote, so stages and the `tai` command share one
way of finding a split's images, labels and embeddings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from . import paths
from .config import Params
from .embeddings import read_shards
from .image_sets import embeddings_root
from .labels import LabelSet

log = logging.getLogger(__name__)


def read_labels(params: Params) -> LabelSet:
    path = paths.labels_path(params.prepare.dataset)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no label table; run `dvc repro prepare` first")
    return LabelSet.read(path)


def read_manifest(params: Params, split: str) -> pl.DataFrame:
    """The prepare stage's manifest of `split`, columns checked (see pipeline.datasets)."""
    from .manifest import read_manifest as read_checked

    path = paths.manifest_path(params.prepare.dataset, split)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no manifest for split {split!r}; add it to prepare.splits and run `dvc repro prepare`"
        )
    return read_checked(path)


@dataclass
class LabelledImages:
    """Image embeddings of one split with their 0/1 targets, aligned row by row."""

    ids: list[str]
    vectors: np.ndarray
    targets: np.ndarray
    resolution: int
    n_skipped: int = 0      # images of the split's manifest with no embedding (encode_images could not read them)


def labelled_images(params: Params, labels: LabelSet, split: str, resolution: int, purpose: str) -> LabelledImages:
    """Embeddings of the split's readable images (unreadable ones were skipped by the encode stage).

    `purpose` is "eval" (images that are scored) or "train" (images the adapter learns from): each
    has its own encode stage, which encodes only what the setting needs (`pipeline.image_sets`)."""
    directory = paths.image_embeddings_dir(embeddings_root(purpose), split, resolution)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{directory}: no image embeddings for split {split!r} at {resolution} px; "
            f"run `dvc repro encode_{purpose}_images` (the settings in params.yaml decide which sets it encodes)"
        )
    embeddings = read_shards(directory)
    manifest = read_manifest(params, split).select("image_id", "labels")
    order = pl.DataFrame({"image_id": embeddings.ids}).join(manifest, on="image_id", how="left", maintain_order="left")
    # an evaluation set is the whole split: a manifest image with no embedding could not be read
    # (training sets may be a subset on purpose: the few-shot support images)
    n_skipped = manifest.height - manifest["image_id"].is_in(embeddings.ids).sum() if purpose == "eval" else 0
    if n_skipped:
        log.warning("%d of %d %s images have no embedding (encode_eval_images could not read them; see %s): "
                    "scoring the other %d", n_skipped, manifest.height, split,
                    paths.skipped_images_path(embeddings_root(purpose)), manifest.height - n_skipped)
    targets = labels.multi_hot(order["labels"].to_list())
    return LabelledImages(embeddings.ids, embeddings.vectors, targets, resolution, int(n_skipped))
