"""mask: which (image, label) entries of `partial.split` are known in the partial-label setting.

Writes `artifacts/partial/mask.parquet` (image_id Utf8, known_positive List[Utf8],
known_negative List[Utf8]; see `pipeline.data.partial_labels`), an empty table with those columns when
partial.known_proportion is null.
"""

import logging

from pipeline.data.labels import read_labels
from pipeline.data.manifest import read_split
from pipeline.data.partial_labels import MASK_PATH, empty_mask, known_summary, sample_mask
from pipeline.io import write_parquet
from pipeline.settings import plan
from pipeline.stage import run, skipped

log = logging.getLogger("mask")


def main(params) -> None:
    partial = params.partial
    if skipped(plan(params).off, "mask", f"an empty {MASK_PATH}"):
        write_parquet(empty_mask(), MASK_PATH)
        return
    labels = read_labels(params.prepare.dataset)
    manifest = read_split(params.prepare.dataset, partial.split)
    mask = sample_mask(manifest, labels, partial.known_proportion, partial.seed)
    s = known_summary(mask, len(labels))
    n_difficult = int(manifest["difficult"].list.len().sum() or 0) if "difficult" in manifest.columns else 0
    log.info(
        "%s: %d images, %.1f%% of entries known (asked %.0f%%): %d known positives, %d known negatives; "
        "%d 'difficult' entries never revealed",
        partial.split,
        s["n_images"],
        100 * s["known_share"],
        100 * partial.known_proportion,
        s["n_known_positive"],
        s["n_known_negative"],
        n_difficult,
    )
    write_parquet(mask, MASK_PATH)


if __name__ == "__main__":
    run(main, "mask")
