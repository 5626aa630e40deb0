"""Scoring a folder of images with a trained classifier, outside the pipeline.

The classifier is an exported folder (`tai export`, no pickle) or the workspace's adapter bundle.
Output table: `path` (Utf8), `predicted` (List[Utf8]: labels at or above their threshold, most likely
first, at most `top_k`), then one Float64 probability column per label.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
import torch

from pipeline.config import EncodeParams
from pipeline.encoding.embeddings import EmbeddingCache
from pipeline.encoding.encode_images import encode_images
from pipeline.paths import embedding_cache_dir

from .classifier import DEFAULT_THRESHOLD, load_bundle, load_encoder, read_thresholds, select_labels, threshold_vector

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def find_images(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of images")
    return sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def predict_folder(
    model: Path,
    folder: Path,
    clip_model: str | None = None,
    threshold: float | None = None,
    device: str = "auto",
    batch_size: int = 32,
    cache_dir: Path | None = None,
    top_k: int | None = None,
    num_workers: int = EncodeParams.num_workers,
    thresholds_file: Path | None = None,
) -> tuple[pl.DataFrame, list[tuple[str, str]]]:
    """(predictions, skipped (path, why)). `model` is an exported folder or an adapter bundle; the CLIP
    defaults to the one it was trained with. A label's threshold: its entry in `thresholds_file`, else
    `threshold`, else the one the export recorded, else 0.5. Images are encoded as in the encode
    stages (`encode_images`, `num_workers` decoding workers) and in the precision the adapter was trained in."""
    bundle, recorded = load_bundle(model)
    per_label = {
        **(recorded if threshold is None else {}),
        **(read_thresholds(thresholds_file, bundle.labels) if thresholds_file else {}),
    }
    limits = threshold_vector(bundle.labels, DEFAULT_THRESHOLD if threshold is None else threshold, per_label)
    paths = find_images(folder)
    if not paths:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    encoder = load_encoder(bundle, device, clip_model)
    cache = EmbeddingCache(cache_dir or embedding_cache_dir())  # never inside the user's folder
    result = encode_images(
        encoder, paths, bundle.image_resolution, cache, batch_size, num_workers, resize=bundle.resize
    )
    cache.compact()  # like every encode run: the shared cache stays a few files
    probabilities = bundle.scores(torch.from_numpy(result.vectors)).numpy()
    predicted = select_labels(probabilities, bundle.labels, limits, top_k)
    frame = pl.DataFrame(
        {"path": [paths[i] for i in result.kept], "predicted": predicted},
        schema={"path": pl.Utf8, "predicted": pl.List(pl.Utf8)},
    )
    frame = frame.with_columns(
        [pl.Series(name, probabilities[:, i], dtype=pl.Float64) for i, name in enumerate(bundle.labels)]
    )
    return frame, [(paths[i], why) for i, why in result.skipped]
