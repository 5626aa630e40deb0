"""Assembling what the adapter trains on, from the Plan's plain values (pipeline.settings decides them).

- zero-shot: generated texts only, perturbed with the text noise (train.radius, train.noise).
- few-shot: plus the support images (`artifacts/fewshot/support.parquet`), perturbed with the image noise
  (fewshot.radius, fewshot.noise: interior by default, as in eq. 6).
- partial labels: texts shifted towards the images (`shift`: partial.shift, eq. 9 by default, from
  `artifacts/centroids/`) then perturbed with partial.radius; with partial.image_weight > 0 (ours, off by
  default) also the partially labelled images, with a loss mask (`artifacts/partial/mask.parquet`).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import polars as pl
import torch

from pipeline import paths
from pipeline.data.labelled_images import labelled_images
from pipeline.data.labels import LabelSet
from pipeline.data.partial_labels import MASK_PATH, known_summary, mask_arrays
from pipeline.data.texts import read_texts, text_embeddings
from pipeline.settings import ImageSet, Noise

from .centroids import COMBINATIONS_PATH, GAPS_PATH, text_shifts
from .train import TrainingSet

log = logging.getLogger(__name__)


def build_training_set(
    labels: LabelSet,
    dataset: str,
    text_noise: Noise,
    shift: str | None = None,
    images: ImageSet | None = None,
    image_noise: Noise | None = None,
    image_weight: float = 0.0,
) -> TrainingSet:
    """The texts with `text_noise`, shifted by `shift` (a partial.shift mode; None: not shifted), plus the
    labelled `images` (None: texts only) with `image_noise`, `image_weight` of each batch. `images` is the
    few-shot support set (`support_only`) or the partially labelled split, whose unknown entries are masked
    out of the loss."""
    texts = read_texts(labels)
    text = torch.from_numpy(text_embeddings(texts))
    data = TrainingSet(
        text=text,
        text_targets=torch.from_numpy(labels.multi_hot(texts["labels"].to_list())),
        text_radius=text_noise.radius,
        text_noise=text_noise.kind,
    )
    if shift is not None:
        offsets = _text_offsets(shift, labels, texts, text.shape[1])
        data.text_offsets = torch.from_numpy(offsets)
        norm = float(np.linalg.norm(offsets, axis=1).mean()) if len(offsets) else 0.0
        log.info(
            "%d texts shifted (partial.shift %s, mean offset norm %.3f) with radius %g",
            len(text),
            shift,
            norm,
            text_noise.radius,
        )
    if images is None:
        log.info("training on %d texts only (radius %g)", len(text), text_noise.radius)
        return data
    read = _support_images if images.support_only else _partially_labelled_images
    vectors, targets, known = read(dataset, labels, images)
    log.info(
        "+ %d images of %s at %d px (radius %g %s, %.0f%% of each batch)",
        len(vectors),
        images.split,
        images.resolution,
        image_noise.radius,
        image_noise.kind,
        100 * image_weight,
    )
    return dataclasses.replace(
        data,
        images=torch.from_numpy(vectors),
        image_targets=torch.from_numpy(targets),
        image_known=None if known is None else torch.from_numpy(known),
        image_radius=image_noise.radius,
        image_weight=image_weight,
        image_noise=image_noise.kind,
    )


def _read_table(path, stage: str) -> pl.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run `dvc repro {stage}` first")
    return pl.read_parquet(path)


def _text_offsets(shift: str, labels: LabelSet, texts: pl.DataFrame, dim: int) -> np.ndarray:
    mask = _read_table(MASK_PATH, "mask")
    combinations = _read_table(COMBINATIONS_PATH, "centroids")
    gaps = _read_table(GAPS_PATH, "centroids")
    if mask.height == 0 or combinations.height == 0 or gaps.height == 0:
        raise FileNotFoundError(
            f"{MASK_PATH}, {COMBINATIONS_PATH} or {GAPS_PATH} is empty but partial labels are on "
            f"(partial.known_proportion set): run `dvc repro centroids`"
        )
    return text_shifts(shift, texts["labels"].to_list(), combinations, gaps, labels, dim)


def _support_images(dataset: str, labels: LabelSet, images: ImageSet) -> tuple[np.ndarray, np.ndarray, None]:
    support = _read_table(paths.FEWSHOT_SUPPORT, "fewshot")
    if support.height == 0:
        raise FileNotFoundError(
            f"{paths.FEWSHOT_SUPPORT} is empty but fewshot.shots is set: run `dvc repro fewshot` to sample the support set"
        )
    encoded = labelled_images(dataset, labels, images.split, images.resolution, images.purpose)
    have = set(encoded.ids)
    missing = [i for i in support["image_id"].to_list() if i not in have]
    if missing:
        log.warning(
            "%d support image(s) have no embedding (unreadable, skipped by encode_images), e.g. %s: "
            "training without them",
            len(missing),
            missing[:3],
        )
        support = support.filter(pl.col("image_id").is_in(list(have)))
    position = {i: n for n, i in enumerate(encoded.ids)}
    rows = [position[i] for i in support["image_id"].to_list()]
    return encoded.vectors[rows], labels.multi_hot(support["labels"].to_list()), None


def _partially_labelled_images(dataset: str, labels: LabelSet, images: ImageSet) -> tuple[np.ndarray, ...]:
    mask = _read_table(MASK_PATH, "mask")
    encoded = labelled_images(dataset, labels, images.split, images.resolution, images.purpose)
    targets, known = mask_arrays(mask, labels, encoded.ids)
    informative = known.any(axis=1)  # an image with no known entry adds nothing to the masked loss
    if not informative.all():
        log.info(
            "partial labels: %d of %d images have no known label entry: left out of training",
            int((~informative).sum()),
            len(informative),
        )
    log.info("partial labels: %.1f%% of entries known", 100 * known_summary(mask, len(labels))["known_share"])
    return encoded.vectors[informative], targets[informative], known[informative]
