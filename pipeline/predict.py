"""Scoring a folder of images with a trained adapter, outside the pipeline.

Output table: `path` (Utf8), `predicted` (List[Utf8]: labels with probability >=
threshold, most likely first), then one Float64 probability column per label.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
import torch

from .adapter import AdapterBundle
from .clip_model import ClipEncoder
from .config import EncodeParams
from .embeddings import EmbeddingCache
from .encode import encode_images
from .paths import embedding_cache_dir

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def find_images(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of images")
    return sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def predict_folder(
    adapter: Path,
    folder: Path,
    clip_model: str | None = None,
    threshold: float = 0.5,
    device: str = "auto",
    batch_size: int = 32,
    cache_dir: Path | None = None,
    num_workers: int = EncodeParams.num_workers,
) -> tuple[pl.DataFrame, list[tuple[str, str]]]:
    """(predictions, skipped (path, why)). The CLIP model defaults to the one the adapter was trained with;
    images are encoded as in the encode stages (`encode_images`, `num_workers` decoding workers)."""
    bundle = AdapterBundle.load(adapter)
    paths = find_images(folder)
    if not paths:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    encoder = ClipEncoder(clip_model or bundle.clip_model, device, bundle.precision)   # encoded as it was trained
    cache = EmbeddingCache(cache_dir or embedding_cache_dir())   # never inside the user's folder
    result = encode_images(encoder, paths, bundle.image_resolution, cache, batch_size, num_workers, resize=bundle.resize)
    probabilities = bundle.scores(torch.from_numpy(result.vectors)).numpy()
    names = np.array(bundle.labels)
    predicted = [names[np.argsort(-row)][np.sort(row)[::-1] >= threshold].tolist() for row in probabilities]
    frame = pl.DataFrame({"path": [paths[i] for i in result.kept], "predicted": predicted},
                         schema={"path": pl.Utf8, "predicted": pl.List(pl.Utf8)})
    frame = frame.with_columns(
        [pl.Series(name, probabilities[:, i], dtype=pl.Float64) for i, name in enumerate(bundle.labels)]
    )
    return frame, [(paths[i], why) for i, why in result.skipped]
