"""prepare: the dataset's label table and per-split manifests.

Reads params.yaml's `prepare` section and writes, atomically (the folder is swapped in whole):

    artifacts/data/<dataset>/labels.parquet    index (Int32), label (Utf8), synonyms (List[Utf8])
    artifacts/data/<dataset>/<split>.parquet   image_id (Utf8, unique), path (Utf8), labels (List[Utf8]),
                                               difficult (List[Utf8])
    artifacts/data/nuswide/missing_<split>.parquet   NUS-WIDE only: listed images not on disk

With `prepare.dataset: labels` only labels.parquet is written (a labels-only project).

Column meanings: `pipeline.data.datasets`. Run from the project root: `python -m stages.prepare`.
Every check runs before anything is written; a bad source exits with one line naming the file or
params.yaml key to fix (`pipeline.stage.run`).
"""

import logging

from pipeline.data.datasets import prepare_dataset, write_dataset
from pipeline.data.datasets.specs import check_reachable
from pipeline.stage import run

log = logging.getLogger("prepare")


def main(params) -> None:
    check_reachable(params.prepare)  # a folder outside the project: one line in a queued or --temp copy
    prepared = prepare_dataset(params.prepare)
    written = write_dataset(params.prepare.dataset, prepared.labels, prepared.manifests, extras=prepared.extras)
    sizes = ", ".join(f"{split}: {frame.height} images" for split, frame in prepared.manifests.items())
    log.info("%s: %d labels; %s", params.prepare.dataset, len(prepared.labels), sizes or "no images (labels only)")
    for path in written:
        log.info("wrote %s", path)


if __name__ == "__main__":
    run(main, "prepare")
