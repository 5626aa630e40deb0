"""download: the dataset's public archives, fetched, checksum-verified and unpacked into
data/downloads/<dataset>/ (a persisted, DVC-cached output), so that `dvc repro` on a fresh
machine does everything and queued or `--temp` experiments find the data in DVC's cache.

Datasets with no public download (folder, your own COCO export, NUS-WIDE) write a note instead:
track such a folder with `dvc add data/<folder>` (README, "Experiments"). A dataset already
unpacked in place is found and not fetched again (offline machines: put it there by hand).
"""

import logging

from pipeline import paths
from pipeline.download import DOWNLOADS, MARKER, download
from pipeline.io import write_text
from pipeline.stage import run

log = logging.getLogger("download")


def main(params) -> None:
    dataset = params.prepare.dataset
    paths.DOWNLOADS.mkdir(parents=True, exist_ok=True)
    if dataset not in DOWNLOADS:
        note = (f"prepare.dataset = {dataset!r} has no public download: nothing was fetched.\n"
                f"Keep your data under data/ and track it with `dvc add data/<folder>` so queued experiments find it.\n")
        write_text(note, paths.DOWNLOADS / "NOTE.txt")
        log.info("%s", note.splitlines()[0])
        return
    (paths.DOWNLOADS / "NOTE.txt").unlink(missing_ok=True)
    dest = paths.DOWNLOADS / dataset
    unpacked = dest / DOWNLOADS[dataset].extracts_to
    if unpacked.is_dir() and not (dest / MARKER).is_file():
        log.info("%s is there already (placed by hand?): not fetching it; delete it to download again", unpacked)
        return
    download(dataset, dest, progress=False, log=log.info)


if __name__ == "__main__":
    run(main, "download")
