"""centroids: visual centroids of the labels and text-to-image offsets of the label combinations
(partial-label setting), per-label and global gaps, plus the paper's Fig. 7 / Fig. 10 picture.

Writes (see `pipeline.method.centroids` for the columns):

    artifacts/centroids/visual.parquet        label, n_images, centroid
    artifacts/centroids/combinations.parquet  combination, n_texts, n_labels_used, text_centroid, offset, offset_norm
    artifacts/centroids/gaps.parquet          kind, label, n_images, n_texts, image_centroid, text_centroid, offset, offset_norm
    reports/centroids.png                     the most frequent label combinations: their images, the centroid
                                              estimated from the known labels and the one from the full labels

Image embeddings are those of partial.split at encode.partial_resolution; only KNOWN positives
(artifacts/partial/mask.parquet) make a visual centroid. With partial.known_proportion null
the tables are empty and the picture is a placeholder.
"""

import logging

import numpy as np
import polars as pl

from pipeline.data.labelled_images import labelled_images
from pipeline.data.labels import read_labels
from pipeline.data.partial_labels import MASK_PATH, mask_arrays
from pipeline.data.texts import read_texts, text_embeddings
from pipeline.evaluation.figures import centroids_figure, combination_panel, placeholder_figure
from pipeline.io import write_parquet
from pipeline.method.centroids import (
    COMBINATIONS_PATH,
    GAPS_PATH,
    TSNE_PATH,
    VISUAL_PATH,
    combination_offsets,
    empty_combinations,
    empty_gaps,
    empty_visual,
    gap_table,
    visual_centroids,
)
from pipeline.settings import plan
from pipeline.stage import run, skipped

log = logging.getLogger("centroids")


def main(params) -> None:
    p, the_plan = params.partial, plan(params)
    if skipped(the_plan.off, "centroids", "empty tables and a placeholder picture"):
        write_parquet(empty_visual(), VISUAL_PATH)
        write_parquet(empty_combinations(), COMBINATIONS_PATH)
        write_parquet(empty_gaps(), GAPS_PATH)
        placeholder_figure(TSNE_PATH, "partial-label setting off:\nno centroids")
        return
    if not MASK_PATH.is_file():
        raise FileNotFoundError(f"{MASK_PATH}: not found; run `dvc repro mask` first")
    if p.known_proportion == 0:
        log.info(
            "partial.known_proportion is 0 (Fig. 6c's 0%% point): no label is known, so no label has a visual "
            "centroid and no combination an offset; texts keep their place (partial.shift global needs no label)"
        )
    labels = read_labels(params.prepare.dataset)
    mask = pl.read_parquet(MASK_PATH)
    s = the_plan.training_images  # the partially labelled split at encode.partial_resolution
    images = labelled_images(params.prepare.dataset, labels, s.split, s.resolution, s.purpose)
    known_positive, _ = mask_arrays(mask, labels, images.ids)
    visual = visual_centroids(images.vectors, known_positive, labels)

    texts = read_texts(labels)
    text = text_embeddings(texts)
    if text.shape[1] != images.vectors.shape[1]:
        raise ValueError(
            f"text embeddings have {text.shape[1]} dims but image embeddings {images.vectors.shape[1]}: "
            "encode both with the same encode.model (`dvc repro encode_text encode_images`)"
        )
    combinations, stats = combination_offsets(text, texts["labels"].to_list(), visual, labels)
    log.info(
        "%d images of %s at %d px; %d/%d labels with a visual centroid; %d texts in %d combinations "
        "(%d shifted with only some of their labels, %d left unshifted); mean offset norm %.3f",
        len(images.ids),
        p.split,
        images.resolution,
        len(labels) - len(stats.labels_without_centroid),
        len(labels),
        stats.n_texts,
        stats.n_combinations,
        stats.n_partly_shifted,
        stats.n_unshifted,
        float(combinations["offset_norm"].mean() or 0.0),
    )
    gaps = gap_table(text, texts["labels"].to_list(), visual, images.vectors, labels)
    global_norm = gaps.filter(pl.col("kind") == "global")["offset_norm"].to_list()[0]
    log.info(
        "global gap norm %.3f, mean per-label gap norm %.3f",
        global_norm or 0.0,
        float(gaps.filter(pl.col("kind") == "label")["offset_norm"].mean() or 0.0),
    )
    write_parquet(visual, VISUAL_PATH)
    write_parquet(combinations, COMBINATIONS_PATH)
    write_parquet(gaps, GAPS_PATH)

    manifest_labels = [[labels.names[c] for c in np.flatnonzero(row)] for row in images.targets]
    panel = combination_panel(
        f"{p.split} images @{images.resolution}px, known proportion {p.known_proportion}",
        images.vectors,
        manifest_labels,
        known_positive,
        labels,
        full_positive=images.targets,
        seed=p.seed,
    )
    centroids_figure(TSNE_PATH, [panel], seed=p.seed)
    log.info("wrote %s, %s, %s, %s", VISUAL_PATH, COMBINATIONS_PATH, GAPS_PATH, TSNE_PATH)


if __name__ == "__main__":
    run(main, "centroids")
