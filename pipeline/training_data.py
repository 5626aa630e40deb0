"""Assembling what the adapter trains on, for each of the paper's settings.

- zero-shot: generated texts only, perturbed with radius train.radius.
- few-shot (fewshot.shots > 0): plus the support images, perturbed with fewshot.radius.
- partial labels (partial.known_proportion set): texts shifted by their combination's
  text-to-image offset then perturbed with partial.radius, plus the partially labelled
  images with a loss mask.
"""

from __future__ import annotations

import polars as pl
import torch

from . import paths
from .config import Params
from .embeddings import read_shards
from .labels import LabelSet
from .train import TrainingSet


def read_texts(labels: LabelSet) -> pl.DataFrame:
    texts = pl.read_parquet(paths.TEXTS)
    labels.check_known({l for ls in texts["labels"].to_list() for l in ls}, str(paths.TEXTS))
    return texts


def text_embeddings(texts: pl.DataFrame) -> torch.Tensor:
    """Text embeddings in the row order of `texts`."""
    embeddings = read_shards(paths.TEXT_EMBEDDINGS)
    return torch.from_numpy(embeddings.select(texts["text_id"].to_list()))


def build_training_set(params: Params, labels: LabelSet) -> tuple[TrainingSet, int]:
    """The training set and the image resolution the adapter must be evaluated at."""
    texts = read_texts(labels)
    data = TrainingSet(
        text=text_embeddings(texts),
        text_targets=torch.from_numpy(labels.multi_hot(texts["labels"].to_list())),
        text_radius=params.train.radius,
    )
    return data, params.encode.image_resolution
