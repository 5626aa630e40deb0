"""Assembling what the adapter trains on, for each of the paper's settings.

- zero-shot: generated texts only, perturbed with radius train.radius.
- few-shot (fewshot.shots > 0): plus the support images, perturbed with fewshot.radius
  (fewshot.noise, interior by default as in eq. 6).
- partial labels (partial.known_proportion set): texts shifted towards the images
  (partial.shift; eq. 9 by default) then perturbed with partial.radius; with
  partial.image_weight > 0 (ours, off by default) also the partially labelled images with a
  loss mask.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import torch

from . import paths
from .centroids import COMBINATIONS_PATH, GAPS_PATH, text_shifts
from .config import FewshotParams, PartialParams
from .labelled_images import labelled_images
from .labels import LabelSet
from .partial import MASK_PATH, known_summary, mask_arrays
from .texts import read_texts, text_embeddings
from .train import TrainingSet

log = logging.getLogger(__name__)


def build_training_set(
    labels: LabelSet,
    dataset: str,
    text_radius: float,
    image_resolution: int,
    partial_resolution: int | None,
    fewshot: FewshotParams,
    partial: PartialParams,
) -> tuple[TrainingSet, int]:
    """The training set and the image resolution the adapter must be evaluated at (`dataset` is
    prepare.dataset, `text_radius` train.radius, the resolutions encode's).

    zero-shot: texts only, radius train.radius, evaluated at encode.image_resolution.
    few-shot: plus the support images (`artifacts/fewshot/support.parquet`) of fewshot.split at
    encode.image_resolution, radius fewshot.radius, fewshot.image_weight of each batch.
    partial labels: texts shifted by partial.shift (`artifacts/centroids/{combinations,gaps}.parquet`),
    radius partial.radius; with partial.image_weight > 0 plus every image of partial.split at
    encode.partial_resolution that has a known entry, with its known labels (`artifacts/partial/mask.parquet`;
    unknown entries masked out of the loss), radius partial.image_radius, partial.image_weight of
    each batch; evaluated at encode.partial_resolution.
    """
    texts = read_texts(labels)
    text = torch.from_numpy(text_embeddings(texts))
    text_targets = torch.from_numpy(labels.multi_hot(texts["labels"].to_list()))
    if fewshot.enabled:
        return _fewshot_set(fewshot, dataset, image_resolution, labels, text, text_targets, text_radius), image_resolution
    if partial.enabled:
        return _partial_set(partial, dataset, partial_resolution, labels, texts, text, text_targets), partial_resolution
    return TrainingSet(text=text, text_targets=text_targets, text_radius=text_radius), image_resolution


def _read_table(path, stage: str) -> pl.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run `dvc repro {stage}` first")
    return pl.read_parquet(path)


def _fewshot_set(p: FewshotParams, dataset: str, resolution: int, labels: LabelSet, text: torch.Tensor,
                 text_targets: torch.Tensor, text_radius: float) -> TrainingSet:
    support = _read_table(paths.FEWSHOT_SUPPORT, "fewshot")
    if support.height == 0:
        raise FileNotFoundError(
            f"{paths.FEWSHOT_SUPPORT} is empty but fewshot.shots = {p.shots}: run `dvc repro fewshot` to sample the support set"
        )
    images = labelled_images(dataset, labels, p.split, resolution, "support")
    have = set(images.ids)
    missing = [i for i in support["image_id"].to_list() if i not in have]
    if missing:
        log.warning("%d support image(s) have no embedding (unreadable, skipped by encode_images), e.g. %s: "
                    "training without them", len(missing), missing[:3])
        support = support.filter(pl.col("image_id").is_in(list(have)))
    position = {i: n for n, i in enumerate(images.ids)}
    rows = [position[i] for i in support["image_id"].to_list()]
    log.info("few-shot: %d texts (radius %g) + %d support images of %s (radius %g, %.0f%% of each batch)",
             len(text), text_radius, len(rows), p.split, p.radius, 100 * p.image_weight)
    return TrainingSet(
        text=text,
        text_targets=text_targets,
        text_radius=text_radius,
        images=torch.from_numpy(images.vectors[rows]),
        image_targets=torch.from_numpy(labels.multi_hot(support["labels"].to_list())),
        image_radius=p.radius,
        image_weight=p.image_weight,
        image_noise=p.noise,
    )


def _partial_set(p: PartialParams, dataset: str, resolution: int, labels: LabelSet, texts: pl.DataFrame,
                 text: torch.Tensor, text_targets: torch.Tensor) -> TrainingSet:
    mask = _read_table(MASK_PATH, "mask")
    combinations = _read_table(COMBINATIONS_PATH, "centroids")
    gaps = _read_table(GAPS_PATH, "centroids")
    if mask.height == 0 or combinations.height == 0 or gaps.height == 0:
        raise FileNotFoundError(
            f"{MASK_PATH}, {COMBINATIONS_PATH} or {GAPS_PATH} is empty but partial.known_proportion = "
            f"{p.known_proportion}: run `dvc repro centroids`"
        )
    offsets = text_shifts(p.shift, texts["labels"].to_list(), combinations, gaps, labels, text.shape[1])
    norm = float(np.linalg.norm(offsets, axis=1).mean()) if len(offsets) else 0.0
    if p.image_weight == 0:
        log.info("partial labels: %d texts shifted (partial.shift %s, mean offset norm %.3f) with radius %g; "
                 "texts only (partial.image_weight 0, the paper's method)", len(text), p.shift, norm, p.radius)
        return TrainingSet(text=text, text_targets=text_targets, text_radius=p.radius,
                           text_offsets=torch.from_numpy(offsets))
    images = labelled_images(dataset, labels, p.split, resolution, "partial")
    targets, known = mask_arrays(mask, labels, images.ids)
    informative = known.any(axis=1)            # an image with no known entry adds nothing to the masked loss
    if not informative.all():
        log.info("partial labels: %d of %d images have no known label entry: left out of training",
                 int((~informative).sum()), len(informative))
    vectors, targets, known = images.vectors[informative], targets[informative], known[informative]
    summary = known_summary(mask, len(labels))
    log.info("partial labels: %d texts shifted (partial.shift %s, mean offset norm %.3f) with radius %g + %d images "
             "of %s at %d px (%.1f%% of entries known, radius %g %s, %.0f%% of each batch)",
             len(text), p.shift, norm, p.radius, len(vectors), p.split, images.resolution,
             100 * summary["known_share"], p.image_radius, p.image_noise, 100 * p.image_weight)
    return TrainingSet(
        text=text,
        text_targets=text_targets,
        text_radius=p.radius,
        text_offsets=torch.from_numpy(offsets),
        images=torch.from_numpy(vectors),
        image_targets=torch.from_numpy(targets),
        image_known=torch.from_numpy(known),
        image_radius=p.image_radius,
        image_weight=p.image_weight,
        image_noise=p.image_noise,
    )
