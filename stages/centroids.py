"""centroids: visual centroids of the labels and text-to-image offsets of the label combinations
(partial-label setting), plus the t-SNE picture of the paper's Fig. 7.

Writes (see `pipeline.centroids` for the columns):

    artifacts/centroids/visual.parquet        label, n_images, centroid
    artifacts/centroids/combinations.parquet  combination, n_texts, n_labels_used, text_centroid, offset, offset_norm
    artifacts/centroids/tsne.png              images by label, visual centroids, text centroids before/after the shift

Image embeddings are those of partial.split at encode.partial_resolution; only KNOWN positives
(artifacts/partial/mask.parquet) make a visual centroid. With partial.known_proportion null
both tables are empty and the picture is a placeholder.
"""

import logging

import numpy as np
import polars as pl

from pipeline.artifacts import labelled_images, read_labels
from pipeline.centroids import (
    COMBINATIONS_PATH, TSNE_PATH, VISUAL_PATH, combination_offsets, empty_combinations, empty_visual,
    visual_centroids,
)
from pipeline.io import write_parquet
from pipeline.partial import MASK_PATH, mask_arrays
from pipeline.plots import placeholder_figure, tsne_figure
from pipeline.stage import run
from pipeline.training_data import read_texts, text_embeddings

log = logging.getLogger("centroids")


def main(params) -> None:
    p = params.partial
    if not p.enabled:
        log.info("partial.known_proportion is null (partial labels off): skipping centroids, writing empty tables "
                 "and a placeholder picture")
        write_parquet(empty_visual(), VISUAL_PATH)
        write_parquet(empty_combinations(), COMBINATIONS_PATH)
        placeholder_figure(TSNE_PATH, "partial-label setting off:\nno centroids")
        return
    if not MASK_PATH.is_file():
        raise FileNotFoundError(f"{MASK_PATH}: not found; run `dvc repro mask` first")
    labels = read_labels(params)
    mask = pl.read_parquet(MASK_PATH)
    images = labelled_images(params, labels, p.split, params.encode.partial_resolution, "train")
    known_positive, _ = mask_arrays(mask, labels, images.ids)
    visual = visual_centroids(images.vectors, known_positive, labels)

    texts = read_texts(labels)
    text = text_embeddings(texts).numpy()
    if text.shape[1] != images.vectors.shape[1]:
        raise ValueError(f"text embeddings have {text.shape[1]} dims but image embeddings {images.vectors.shape[1]}: "
                         "encode both with the same encode.model (`dvc repro encode_text encode_images`)")
    combinations, stats = combination_offsets(text, texts["labels"].to_list(), visual, labels)
    log.info("%d images of %s at %d px; %d/%d labels with a visual centroid; %d texts in %d combinations "
             "(%d shifted with only some of their labels, %d left unshifted); mean offset norm %.3f",
             len(images.ids), p.split, images.resolution, len(labels) - len(stats.labels_without_centroid),
             len(labels), stats.n_texts, stats.n_combinations, stats.n_partly_shifted, stats.n_unshifted,
             float(combinations["offset_norm"].mean() or 0.0))
    write_parquet(visual, VISUAL_PATH)
    write_parquet(combinations, COMBINATIONS_PATH)

    have = visual.filter(pl.col("centroid").is_not_null())
    first_known = [labels.names[int(np.argmax(row))] if row.any() else None for row in known_positive]
    text_centroids = np.array(combinations["text_centroid"].to_list(), dtype=np.float32).reshape(len(combinations), -1)
    offsets = np.array(combinations["offset"].to_list(), dtype=np.float32).reshape(len(combinations), -1)
    tsne_figure(
        TSNE_PATH, images.vectors, first_known, list(labels.names),
        np.array(have["centroid"].to_list(), dtype=np.float32).reshape(have.height, -1), have["label"].to_list(),
        text_centroids, text_centroids + offsets, seed=p.seed,
        title=f"t-SNE: {p.split} images @{images.resolution}px, known proportion {p.known_proportion}",
    )
    log.info("wrote %s, %s, %s", VISUAL_PATH, COMBINATIONS_PATH, TSNE_PATH)


if __name__ == "__main__":
    run(main, "centroids")
