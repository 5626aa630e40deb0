"""Partial labels: which (image, label) entries of a training split are known.

`sample_mask` reveals each entry independently with probability `known_proportion`
(a seeded Bernoulli draw). A revealed entry is a known positive when the label is in the
image's `labels`, a known negative otherwise. Entries the manifest marks `difficult`
(VOC) are never revealed: they are neither a clean positive nor a clean negative.

Each image's draws come from its own generator, seeded by (seed, image_id), so the mask
of an image does not depend on the row order or on which other images the split holds,
and, for one seed, entries are revealed when uniform(0, 1) < p: raising the proportion
only reveals more entries (the mask at 0.5 contains the mask at 0.3).
The code reads only the manifest columns `image_id`, `labels` (and `difficult` when
present), so it serves VOC 2007 trainval, COCO 2014 train, NUS-WIDE train alike.

Mask table (`artifacts/partial/mask.parquet`, `MASK_SCHEMA`), one row per image, manifest order:

  ==================  ===========  ========================================================
  column              dtype        meaning
  ==================  ===========  ========================================================
  `image_id`          Utf8         the image (the manifest's `image_id`)
  `known_positive`    List[Utf8]   labels known to be present (label order)
  `known_negative`    List[Utf8]   labels known to be absent (label order)
  ==================  ===========  ========================================================

Every other label of the image is unknown and ignored by the training loss. With
`partial.known_proportion: null` the table is empty, with this schema.
"""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl

from pipeline import paths

from .labels import LabelSet

MASK_PATH = paths.PARTIAL_MASK
MASK_SCHEMA = {"image_id": pl.Utf8, "known_positive": pl.List(pl.Utf8), "known_negative": pl.List(pl.Utf8)}


def empty_mask() -> pl.DataFrame:
    return pl.DataFrame(schema=MASK_SCHEMA)


def _image_seed(seed: int, image_id: str) -> list[int]:
    digest = hashlib.sha256(f"partial-mask\x1f{image_id}".encode()).digest()
    return [int(seed), int.from_bytes(digest[:8], "little")]


def reveal_draws(image_ids: list[str], n_labels: int, seed: int) -> np.ndarray:
    """(images x labels) uniforms in [0, 1); an entry is revealed at proportion p when its draw < p."""
    out = np.empty((len(image_ids), n_labels), dtype=np.float64)
    for row, image_id in enumerate(image_ids):
        out[row] = np.random.default_rng(_image_seed(seed, image_id)).random(n_labels)
    return out


def sample_mask(manifest: pl.DataFrame, labels: LabelSet, known_proportion: float, seed: int) -> pl.DataFrame:
    """The known positives and negatives of every image of `manifest` (columns image_id, labels[, difficult])."""
    ids = manifest["image_id"].to_list()
    positives = labels.multi_hot(manifest["labels"].to_list()) > 0
    difficult = (
        labels.multi_hot(manifest["difficult"].to_list()) > 0
        if "difficult" in manifest.columns
        else np.zeros_like(positives)
    )
    known = (reveal_draws(ids, len(labels), seed) < known_proportion) & ~difficult
    names = np.array(labels.names, dtype=object)
    return pl.DataFrame(
        {
            "image_id": ids,
            "known_positive": [list(names[k & p]) for k, p in zip(known, positives)],
            "known_negative": [list(names[k & ~p]) for k, p in zip(known, positives)],
        },
        schema=MASK_SCHEMA,
    )


def mask_arrays(mask: pl.DataFrame, labels: LabelSet, image_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(targets, known), float32 (images x labels), aligned to `image_ids`.

    targets is 1 for known positives, 0 elsewhere; known is 1 for known entries. An image
    missing from the mask raises KeyError naming it (the mask and the embeddings disagree).
    """
    aligned = pl.DataFrame({"image_id": image_ids}, schema={"image_id": pl.Utf8}).join(
        mask, on="image_id", how="left", maintain_order="left"
    )
    lacking = aligned.filter(pl.col("known_positive").is_null())["image_id"].to_list()
    if lacking:
        raise KeyError(
            f"{len(lacking)} image(s) have embeddings but no row in the partial-label mask, e.g. {lacking[:3]}: "
            "run `dvc repro mask` again"
        )
    targets = labels.multi_hot(aligned["known_positive"].to_list())
    known = np.maximum(targets, labels.multi_hot(aligned["known_negative"].to_list()))
    return targets, known


def known_summary(mask: pl.DataFrame, n_labels: int) -> dict[str, float]:
    """Counts for logs: images, known positives / negatives, and the share of entries known."""
    n_pos = int(mask["known_positive"].list.len().sum() or 0) if mask.height else 0
    n_neg = int(mask["known_negative"].list.len().sum() or 0) if mask.height else 0
    entries = mask.height * n_labels
    return {
        "n_images": mask.height,
        "n_known_positive": n_pos,
        "n_known_negative": n_neg,
        "known_share": (n_pos + n_neg) / entries if entries else 0.0,
    }
