"""fewshot: the few-shot support set, `fewshot.shots` labelled images per class of `fewshot.split`.

Writes `artifacts/fewshot/support.parquet` (image_id Utf8, labels List[Utf8], picked_for Utf8;
see `pipeline.data.fewshot`), an empty table with those columns outside the few-shot setting (pipeline.settings).
"""

import logging

from pipeline.data.fewshot import SUPPORT_PATH, empty_support, positives_per_class, sample_support
from pipeline.data.labels import read_labels
from pipeline.data.manifest import read_split
from pipeline.io import write_parquet
from pipeline.settings import plan
from pipeline.stage import run, skipped

log = logging.getLogger("fewshot")


def main(params) -> None:
    fewshot = params.fewshot
    if skipped(plan(params).off, "fewshot", f"an empty {SUPPORT_PATH}"):
        write_parquet(empty_support(), SUPPORT_PATH)
        return
    labels = read_labels(params.prepare.dataset)
    manifest = read_split(params.prepare.dataset, fewshot.split)
    support = sample_support(manifest, labels, fewshot.shots, fewshot.seed)
    counts = positives_per_class(support, labels)
    log.info(
        "%d-shot support from %s (%d images): %d images picked; positives per class min %d, max %d",
        fewshot.shots,
        fewshot.split,
        manifest.height,
        support.height,
        min(counts.values()),
        max(counts.values()),
    )
    write_parquet(support, SUPPORT_PATH)


if __name__ == "__main__":
    run(main, "fewshot")
