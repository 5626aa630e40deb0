"""Visual and text centroids, and the text-to-image offsets of the partial-label setting.

`partial.shift` picks how each text is shifted towards the images before the noise
(`text_shifts`); all four estimates are computed by the centroids stage, so changing the
mode reruns only train:

- combination (the paper's eq. 9): the offset of the text's label combination, below.
- label (ours): the mean, over the text's labels, of each label's gap = its visual centroid
  minus the text centroid of the texts that have the label. Exact when the gap is the same for
  every image (both centroids average the same combinations); when the gap is a sum of per-label
  parts a label's estimate mixes in the gaps of the labels it co-occurs with
  (`pipeline.testbeds.synthetic_worlds`). Needs fewer images per estimate than a combination.
- global (ours): one offset for every text = mean embedding of the partially labelled
  images minus mean text embedding. Exact when the gap is the same for every image.
- none: no shift, perturbation only.

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
any normalisation (`pipeline.method.train`).

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

`artifacts/centroids/gaps.parquet` (`GAP_SCHEMA`): one row per label (`kind` "label"), then
one row `kind` "global" (`label` null):

  ==================  =============  =================================================
  `kind`              Utf8           "label" | "global"
  `label`             Utf8           the label (null for the global row)
  `n_images`          Int64          images behind `image_centroid`
  `n_texts`           Int64          texts behind `text_centroid`
  `image_centroid`    List[Float32]  visual centroid (label) / mean image (global)
  `text_centroid`     List[Float32]  mean of the texts with the label / of all texts
  `offset`            List[Float32]  image_centroid - text_centroid; null when either is missing
  `offset_norm`       Float64        its L2 norm (null with it)
  ==================  =============  =================================================

All tables are empty (with these schemas) when the partial-label setting is off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipeline import paths
from pipeline.data.labels import LabelSet
from pipeline.errors import UserError

log = logging.getLogger(__name__)

VISUAL_PATH = paths.CENTROIDS_VISUAL
COMBINATIONS_PATH = paths.CENTROIDS_COMBINATIONS
GAPS_PATH = paths.CENTROIDS_GAPS
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
GAP_SCHEMA = {
    "kind": pl.Utf8,
    "label": pl.Utf8,
    "n_images": pl.Int64,
    "n_texts": pl.Int64,
    "image_centroid": pl.List(pl.Float32),
    "text_centroid": pl.List(pl.Float32),
    "offset": pl.List(pl.Float32),
    "offset_norm": pl.Float64,
}


@dataclass
class CombinationStats:
    n_combinations: int
    n_texts: int
    n_partly_shifted: int  # combinations where some (not all) labels lack a visual centroid
    n_unshifted: int  # combinations where no label has one: zero offset
    labels_without_centroid: list[str]


def empty_visual() -> pl.DataFrame:
    return pl.DataFrame(schema=VISUAL_SCHEMA)


def empty_combinations() -> pl.DataFrame:
    return pl.DataFrame(schema=COMBINATION_SCHEMA)


def empty_gaps() -> pl.DataFrame:
    return pl.DataFrame(schema=GAP_SCHEMA)


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
    centroids = [(sums[c] / counts[c]).astype(np.float32).tolist() if counts[c] else None for c in range(len(labels))]
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
        log.warning(
            "%d label(s) have no known positive image, hence no visual centroid: %s", len(missing), missing[:20]
        )
    if partly or unshifted:
        log.warning(
            "%d combination(s) shifted using only the labels that have a visual centroid; "
            "%d combination(s) with none of them left unshifted (zero offset)",
            partly,
            unshifted,
        )
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
            raise UserError(f"offsets have {len(offset)} dims, the text embeddings {dim}: run `dvc repro centroids`")
        out[row] = offset
    if missing:
        log.warning("%d text(s) have a combination missing from the centroid table: left unshifted", missing)
    return out


def _vector(v: np.ndarray | None) -> list[float] | None:
    return None if v is None else np.asarray(v, dtype=np.float32).tolist()


def gap_table(
    text_vectors: np.ndarray, text_labels: list, visual: pl.DataFrame, image_vectors: np.ndarray, labels: LabelSet
) -> pl.DataFrame:
    """Per-label gaps (visual centroid - text centroid of the texts having the label) and the global gap
    (mean of `image_vectors`, the partially labelled images, - mean text), as `GAP_SCHEMA` rows."""
    text_vectors = np.asarray(text_vectors, dtype=np.float64)
    image_vectors = np.asarray(image_vectors, dtype=np.float64)
    dim = text_vectors.shape[1] if text_vectors.ndim == 2 else 0
    matrix, has = centroid_matrix(visual, labels, dim)
    n_images = dict(zip(visual["label"].to_list(), visual["n_images"].to_list()))
    having = labels.multi_hot(text_labels).astype(np.float64) if len(text_labels) else np.zeros((0, len(labels)))
    n_texts = having.sum(axis=0)
    text_sums = having.T @ text_vectors if len(text_vectors) else np.zeros((len(labels), dim))
    rows = {k: [] for k in GAP_SCHEMA}

    def add(kind, label, n_img, n_txt, image_centroid, text_centroid):
        offset = None if image_centroid is None or text_centroid is None else image_centroid - text_centroid
        rows["kind"].append(kind)
        rows["label"].append(label)
        rows["n_images"].append(int(n_img))
        rows["n_texts"].append(int(n_txt))
        rows["image_centroid"].append(_vector(image_centroid))
        rows["text_centroid"].append(_vector(text_centroid))
        rows["offset"].append(_vector(offset))
        rows["offset_norm"].append(None if offset is None else float(np.linalg.norm(offset.astype(np.float32))))

    for c, name in enumerate(labels.names):
        text_centroid = text_sums[c] / n_texts[c] if n_texts[c] else None
        add("label", name, n_images.get(name, 0), n_texts[c], matrix[c] if has[c] else None, text_centroid)
    add(
        "global",
        None,
        len(image_vectors),
        len(text_vectors),
        image_vectors.mean(axis=0) if len(image_vectors) else None,
        text_vectors.mean(axis=0) if len(text_vectors) else None,
    )
    return pl.DataFrame(rows, schema=GAP_SCHEMA)


def text_shifts(
    mode: str, text_labels: list, combinations: pl.DataFrame, gaps: pl.DataFrame, labels: LabelSet, dim: int
) -> np.ndarray:
    """(texts x dim) float32: each text's shift under `partial.shift` = mode (see the module docstring)."""
    if mode == "none":
        return np.zeros((len(text_labels), dim), dtype=np.float32)
    if mode == "combination":
        return text_offsets(text_labels, combinations, labels, dim)
    rows = gaps.filter(pl.col("kind") == mode)
    if mode == "global":
        offset = rows["offset"].to_list()[0] if rows.height else None
        if offset is None:
            log.warning("no global gap (no image or no text): texts left unshifted")
            return np.zeros((len(text_labels), dim), dtype=np.float32)
        if len(offset) != dim:
            raise UserError(
                f"the global gap has {len(offset)} dims, the text embeddings {dim}: run `dvc repro centroids`"
            )
        return np.broadcast_to(np.asarray(offset, dtype=np.float32), (len(text_labels), dim)).copy()
    gap = np.zeros((len(labels), dim), dtype=np.float64)  # mode "label"
    has = np.zeros(len(labels), dtype=bool)
    for name, offset in zip(rows["label"].to_list(), rows["offset"].to_list()):
        if offset is None or name not in labels.index:
            continue
        if len(offset) != dim:
            raise UserError(f"label gaps have {len(offset)} dims, the text embeddings {dim}: run `dvc repro centroids`")
        gap[labels.index[name]], has[labels.index[name]] = offset, True
    usable = labels.multi_hot(text_labels).astype(bool) & has if len(text_labels) else np.zeros((0, len(labels)), bool)
    counts = usable.sum(axis=1, keepdims=True)
    out = (usable.astype(np.float64) @ gap) / np.maximum(counts, 1)
    if (counts == 0).any():
        log.warning("%d text(s) have no label with a gap estimate: left unshifted", int((counts == 0).sum()))
    return out.astype(np.float32)


def shift_offsets(
    mode: str,
    text_vectors: np.ndarray,
    text_labels: list,
    image_vectors: np.ndarray,
    known_positive: np.ndarray,
    labels: LabelSet,
) -> np.ndarray:
    """Per-text shifts from raw arrays, through the same tables the centroids stage writes (synthetic
    experiments and tests): `image_vectors` are the partially labelled images, `known_positive` their mask."""
    visual = visual_centroids(image_vectors, known_positive, labels)
    combinations, _ = combination_offsets(text_vectors, text_labels, visual, labels)
    gaps = gap_table(text_vectors, text_labels, visual, image_vectors, labels)
    return text_shifts(mode, text_labels, combinations, gaps, labels, np.asarray(text_vectors).shape[1])
