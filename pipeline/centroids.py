"""Visual and text centroids, and the text-to-image offset of each label combination
(the paper's shifted perturbation for partial labels).

- The visual centroid of a label is the mean (raw CLIP) embedding of the images where
  the label is a KNOWN positive (the partial-label mask); unknown entries are never used.
- Texts are grouped by their `labels` column, sorted in label-table order: the labels the
  text is trained to predict (found in the text). We key on `labels`, not on `combination`
  (the labels the generator asked for), so that a text is shifted towards the images of
  exactly the labels it is a training example of; the two differ only when an LLM caption
  drops or adds a label.
- The offset of a combination is the mean of its labels' visual centroids minus the mean
  of its texts' embeddings. A label with no known positive image has no centroid: the
  offset uses the combination's labels that have one (`n_labels_used` says how many);
  when none has one the offset is zero (no shift) and the combination is counted in
  `CombinationStats.n_unshifted` and logged. Texts with no label get a zero offset too.

All vectors are raw (not L2-normalised) CLIP embeddings: training adds the offset before
any normalisation (`pipeline.train`).

Tables (List[Float32] vectors, so an empty table needs no dimension):

`artifacts/centroids/visual.parquet` (`VISUAL_SCHEMA`), one row per label, label order:

  ============  =============  ==========================================================
  `label`       Utf8           the label
  `n_images`    Int64          images where it is a known positive
  `centroid`    List[Float32]  their mean embedding; null when `n_images` is 0
  ============  =============  ==========================================================

`artifacts/centroids/combinations.parquet` (`COMBINATION_SCHEMA`), one row per distinct
sorted `labels` list of the texts:

  =================  =============  =====================================================
  `combination`      List[Utf8]     the labels, label-table order
  `n_texts`          Int64          texts with exactly these labels
  `n_labels_used`    Int32          its labels that have a visual centroid
  `text_centroid`    List[Float32]  mean embedding of those texts
  `offset`           List[Float32]  mean visual centroid of the used labels - text_centroid
                                    (zeros when n_labels_used is 0)
  `offset_norm`      Float64        L2 norm of `offset`
  =================  =============  =====================================================

Both tables are empty (with these schemas) when the partial-label setting is off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from . import paths
from .labels import LabelSet

log = logging.getLogger(__name__)

VISUAL_PATH = paths.CENTROIDS_VISUAL
COMBINATIONS_PATH = paths.CENTROIDS_COMBINATIONS
TSNE_PATH = paths.CENTROIDS_PLOT
VISUAL_SCHEMA = {"label": pl.Utf8, "n_images": pl.Int64, "centroid": pl.List(pl.Float32)}
COMBINATION_SCHEMA = {
    "combination": pl.List(pl.Utf8),
    "n_texts": pl.Int64,
    "n_labels_used": pl.Int32,
    "text_centroid": pl.List(pl.Float32),
    "offset": pl.List(pl.Float32),
    "offset_norm": pl.Float64,
}


@dataclass
class CombinationStats:
    n_combinations: int
    n_texts: int
    n_partly_shifted: int    # combinations where some (not all) labels lack a visual centroid
    n_unshifted: int         # combinations where no label has one: zero offset
    labels_without_centroid: list[str]


def empty_visual() -> pl.DataFrame:
    return pl.DataFrame(schema=VISUAL_SCHEMA)


def empty_combinations() -> pl.DataFrame:
    return pl.DataFrame(schema=COMBINATION_SCHEMA)


def combination_key(label_list, labels: LabelSet) -> tuple[str, ...]:
    """The label list deduplicated and sorted in label-table order."""
    return tuple(sorted(set(label_list), key=labels.index.__getitem__))


def visual_centroids(vectors: np.ndarray, known_positive: np.ndarray, labels: LabelSet) -> pl.DataFrame:
    """Mean embedding per label over the images (rows of `vectors`) where `known_positive` is 1."""
    vectors = np.asarray(vectors, dtype=np.float64)
    known_positive = np.asarray(known_positive) > 0
    if known_positive.shape != (len(vectors), len(labels)):
        raise ValueError(f"known_positive has shape {known_positive.shape}, expected {(len(vectors), len(labels))}")
    counts = known_positive.sum(axis=0)
    sums = known_positive.T.astype(np.float64) @ vectors if len(vectors) else np.zeros((len(labels), 0))
    centroids = [
        (sums[c] / counts[c]).astype(np.float32).tolist() if counts[c] else None for c in range(len(labels))
    ]
    return pl.DataFrame(
        {"label": list(labels.names), "n_images": counts.astype(np.int64), "centroid": centroids},
        schema=VISUAL_SCHEMA,
    )


def centroid_matrix(visual: pl.DataFrame, labels: LabelSet, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels x dim) centroids in label order (zeros where missing) and a bool mask of labels that have one."""
    matrix = np.zeros((len(labels), dim), dtype=np.float64)
    has = np.zeros(len(labels), dtype=bool)
    for name, centroid in zip(visual["label"].to_list(), visual["centroid"].to_list()):
        if centroid is None:
            continue
        if len(centroid) != dim:
            raise ValueError(f"visual centroid of {name!r} has {len(centroid)} dims, the texts have {dim}")
        matrix[labels.index[name]] = centroid
        has[labels.index[name]] = True
    return matrix, has


def combination_offsets(
    text_vectors: np.ndarray, text_labels: list, visual: pl.DataFrame, labels: LabelSet
) -> tuple[pl.DataFrame, CombinationStats]:
    """Text centroid and offset of every combination of `text_labels` (one label list per text row)."""
    text_vectors = np.asarray(text_vectors, dtype=np.float64)
    if len(text_vectors) != len(text_labels):
        raise ValueError(f"{len(text_vectors)} text vectors but {len(text_labels)} label lists")
    dim = text_vectors.shape[1] if text_vectors.ndim == 2 else 0
    matrix, has = centroid_matrix(visual, labels, dim)
    keys: dict[tuple[str, ...], int] = {}
    group = np.array([keys.setdefault(combination_key(ls, labels), len(keys)) for ls in text_labels], dtype=np.int64)
    order = sorted(keys, key=lambda k: (len(k), [labels.index[l] for l in k]))
    sums = np.zeros((len(keys), dim))
    np.add.at(sums, group, text_vectors)
    n_texts = np.bincount(group, minlength=len(keys))
    rows = {"combination": [], "n_texts": [], "n_labels_used": [], "text_centroid": [], "offset": [], "offset_norm": []}
    partly = unshifted = 0
    for key in order:
        g = keys[key]
        text_centroid = sums[g] / n_texts[g]
        used = [labels.index[l] for l in key if has[labels.index[l]]]
        if used:
            offset = matrix[used].mean(axis=0) - text_centroid
            partly += len(used) < len(key)
        else:
            offset = np.zeros(dim)
            unshifted += 1
        rows["combination"].append(list(key))
        rows["n_texts"].append(int(n_texts[g]))
        rows["n_labels_used"].append(len(used))
        rows["text_centroid"].append(text_centroid.astype(np.float32).tolist())
        rows["offset"].append(offset.astype(np.float32).tolist())
        rows["offset_norm"].append(float(np.linalg.norm(offset.astype(np.float32))))
    frame = pl.DataFrame(rows, schema=COMBINATION_SCHEMA)
    missing = [labels.names[c] for c in range(len(labels)) if not has[c]]
    stats = CombinationStats(len(keys), len(text_labels), partly, unshifted, missing)
    if missing:
        log.warning("%d label(s) have no known positive image, hence no visual centroid: %s", len(missing), missing[:20])
    if partly or unshifted:
        log.warning("%d combination(s) shifted using only the labels that have a visual centroid; "
                    "%d combination(s) with none of them left unshifted (zero offset)", partly, unshifted)
    return frame, stats


def text_offsets(text_labels: list, combinations: pl.DataFrame, labels: LabelSet, dim: int) -> np.ndarray:
    """(texts x dim) float32: each text's combination offset (zeros for a combination not in the table)."""
    table = {
        combination_key(c, labels): np.asarray(o, dtype=np.float32)
        for c, o in zip(combinations["combination"].to_list(), combinations["offset"].to_list())
    }
    out = np.zeros((len(text_labels), dim), dtype=np.float32)
    missing = 0
    for row, ls in enumerate(text_labels):
        offset = table.get(combination_key(ls, labels))
        if offset is None:
            missing += 1
            continue
        if len(offset) != dim:
            raise ValueError(f"offsets have {len(offset)} dims, the text embeddings {dim}: run `dvc repro centroids`")
        out[row] = offset
    if missing:
        log.warning("%d text(s) have a combination missing from the centroid table: left unshifted", missing)
    return out
