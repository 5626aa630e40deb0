"""download: the dataset's public archives, fetched, checksum-verified and unpacked into
data/downloads/ (a persisted, DVC-cached output), so that `dvc repro` on a fresh machine does
everything and queued or `--temp` experiments find the data in DVC's cache.

NUS-WIDE has no public download: put its files under data/downloads/nuswide/ by hand (the stage
says how when they are missing) and DVC caches them from there. Datasets that are yours (folder,
a COCO-format export, labels only) write a note instead: keep them in git or `dvc add` them.
A dataset already unpacked in place is found and not fetched again.
"""

import logging

from pipeline import paths
from pipeline.download import DOWNLOADS, MANUAL, MARKER, dataset_root, download_dataset
from pipeline.io import write_text
from pipeline.stage import run

log = logging.getLogger("download")
NOTE = paths.DOWNLOADS / "NOTE.txt"


def main(params) -> None:
    dataset = params.prepare.dataset
    paths.DOWNLOADS.mkdir(parents=True, exist_ok=True)
    if dataset not in DOWNLOADS and dataset not in MANUAL:
        note = (f"prepare.dataset = {dataset!r} is your own data: nothing to download.\n"
                "Keep it in git (small files) or track it with `dvc add data/<folder>`, so queued experiments find it.\n")
        write_text(note, NOTE)
        log.info("%s", note.splitlines()[0])
        return
    NOTE.unlink(missing_ok=True)
    root = dataset_root(dataset, paths.DOWNLOADS)
    if dataset in DOWNLOADS and root.is_dir() and not (paths.DOWNLOADS / MARKER).is_file():
        log.info("%s is there already (placed by hand?): not fetching it; delete it to download again", root)
        return
    download_dataset(dataset, paths.DOWNLOADS, progress=False, log=log.info)


if __name__ == "__main__":
    run(main, "download")
