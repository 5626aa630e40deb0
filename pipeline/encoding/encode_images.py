"""Encoding images through the content-addressed cache (`pipeline.encoding.encode` holds the text side and the cache key).

An image that is missing or cannot be decoded is skipped and reported, never fatal. Images are encoded here
(`encode.engine: local`) by `pipeline.encoding.image_runtime.ImageEncoder`, or on a Ray cluster (`ray`,
`pipeline.encoding.encode_ray`); the cache writes are the same.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .decode import DECODING, decoded_batches
from .embeddings import EmbeddingCache, content_key
from .encode import EncodeResult, cache_kind
from .encode_ray import ray_batches
from .image_runtime import image_encoder
from .openai_clip import ClipEncoder

log = logging.getLogger(__name__)


def _file_key(encoder: ClipEncoder, resolution: int, path: str, resize: str = "square") -> str:
    return content_key(
        encoder.identity, cache_kind(encoder, "image"), str(resolution), resize, DECODING, Path(path).read_bytes()
    )


def _local_batches(
    encoder: ClipEncoder,
    paths: list[str],
    positions: list[int],
    resolution: int,
    transform,
    batch_size: int,
    num_workers: int,
):
    """(positions, vectors, [(position, why)]) per batch: decoded by `num_workers` threads, encoded here."""
    images = image_encoder(encoder)
    for good, pixels, bad in decoded_batches(paths, positions, transform, batch_size, num_workers):
        vectors = images(pixels, resolution) if pixels is not None else np.zeros((0, encoder.embed_dim), np.float32)
        yield good, vectors, bad


def encode_images(
    encoder: ClipEncoder,
    paths: list[str],
    resolution: int,
    cache: EmbeddingCache,
    batch_size: int = 64,
    num_workers: int = 0,
    resize: str = "square",
    engine: str = "local",
    ray_address: str | None = None,
) -> EncodeResult:
    """Embeddings of `paths` at `resolution`, preprocessed with `resize` (`encoder.transform`: the model's
    own normalisation).
    engine "local" decodes in `num_workers` threads (`pipeline.encoding.decode.decoded_batches`) and encodes in this process; "ray" runs
    both on a Ray cluster (`pipeline.encoding.encode_ray`). Either way the cache gets the same entries, written
    here batch by batch, and the result is the same."""
    encoder.set_resolution(resolution)  # a resolution the model cannot take fails here, before any work
    keys: list[str | None] = []
    skipped: list[tuple[int, str]] = []
    for position, path in enumerate(tqdm(paths, desc=f"hash images @{resolution}", unit="img", leave=False)):
        try:
            keys.append(_file_key(encoder, resolution, path, resize))
        except OSError as e:
            keys.append(None)
            skipped.append((position, f"{type(e).__name__}: {e.strerror or e}"))
    missing = sorted(
        {k: i for i, k in enumerate(keys) if k is not None and k not in cache}.values()
    )  # each content once
    log.info(
        "images @%dpx: %d cached, %d to encode, %d unreadable",
        resolution,
        len(paths) - len(missing) - len(skipped),
        len(missing),
        len(skipped),
    )
    transform = encoder.transform(resolution, resize)
    if engine == "ray":
        batches = ray_batches(encoder, paths, missing, resolution, transform, batch_size, num_workers, ray_address)
    else:  # "local"
        batches = _local_batches(encoder, paths, missing, resolution, transform, batch_size, num_workers)
    n_encoded, undecodable = 0, {}
    with tqdm(total=len(missing), desc=f"encode images @{resolution}", unit="img") as bar:
        for positions, vectors, bad in batches:
            undecodable.update({keys[p]: why for p, why in bad})
            cache.put([keys[p] for p in positions], vectors)
            n_encoded += len(positions)
            bar.update(len(positions) + len(bad))
    skipped += [(i, undecodable[k]) for i, k in enumerate(keys) if k in undecodable]
    skipped.sort()
    for position, why in skipped:
        log.warning("skipped image %s: %s", paths[position], why)
    bad_positions = {p for p, _ in skipped}
    kept = [i for i in range(len(paths)) if i not in bad_positions]
    vectors = np.stack([cache.get(keys[i]) for i in kept]) if kept else np.zeros((0, encoder.embed_dim), np.float32)
    return EncodeResult(vectors, kept, skipped, n_cached=len(kept) - n_encoded, n_encoded=n_encoded)
