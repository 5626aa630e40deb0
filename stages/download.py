"""download: make sure the data `prepare` reads is on disk, and fetch it only when it is not.

The stage first checks what `prepare.root` (and `annotations`, `image_root`, `labels_file`,
`label_names`) point at, against the dataset's spec (`pipeline.data.datasets.specs`):

- all there (your own copy, wherever it is): it says so and fetches nothing;
- something missing, and `prepare.root` is the folder this stage unpacks to (the default for
  voc2007 and coco2014, under data/downloads/): it fetches the public archives, checks their MD5
  sums and unpacks them there; a folder it unpacked earlier is topped up from its marker file;
- something missing anywhere else: exit 2 with one line naming the key, the path and the fix.

data/downloads/ is the stage's output (persisted, DVC-cached, so queued and `--temp` experiments
find a download): the unpacked archives, or NOTE.txt saying where the data is. Your own copy
belongs elsewhere under data/ (`dvc add data/<folder>`): never inside data/downloads/, which DVC
owns as this stage's output. A folder outside the project works for `dvc repro`; a queued or
`--temp` experiment that has to read it stops with one line saying what to do (`check_reachable`).
"""

import logging
import os
from pathlib import Path

from pipeline import paths
from pipeline.data.datasets.specs import DatasetSpec, Needs, check_reachable, dataset_spec, download_dataset
from pipeline.data.download import MARKER
from pipeline.errors import DatasetError
from pipeline.io import write_text
from pipeline.stage import run

log = logging.getLogger("download")
NOTE = paths.DOWNLOADS / "NOTE.txt"


def _same_folder(a: str | Path, b: str | Path) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


def _value(params, key: str) -> str:
    """The params.yaml value behind a key of `DatasetSpec.needs` ("prepare.annotations.train")."""
    _, name, *split = key.split(".", 2)
    value = getattr(params, name)
    return str(value[split[0]] if split else value)


def _missing_message(spec: DatasetSpec, params, missing: Needs, target: Path | None) -> str:
    key, path = missing[0]
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    where = f"{key} = {_value(params, key)!r}: {path} is missing{more}"
    if spec.downloadable:
        return (
            f"{where}; put your {spec.name} copy there, or set prepare.root to {target.as_posix()} and this "
            f"stage downloads it ({spec.source.description})"
        )
    if spec.source is not None:
        return (
            f"{where}; {spec.name} has no official download: `tai download {spec.name}` says how to get it "
            f"and where to put it ({target.as_posix()} by default)"
        )
    return f"{where}; point {key} at your data (a path relative to the project root, or absolute)"


def main(params) -> None:
    prepare = params.prepare
    spec = dataset_spec(prepare.dataset)
    check_reachable(prepare)
    paths.DOWNLOADS.mkdir(parents=True, exist_ok=True)
    target = spec.download_root(paths.DOWNLOADS)
    ours = target is not None and _same_folder(prepare.root, target)  # a dataset without images has no download
    fetched_before = ours and spec.downloadable and (paths.DOWNLOADS / MARKER).is_file()
    missing = spec.missing(prepare)
    if not missing and not fetched_before:
        checked = ", ".join(sorted({Path(path).as_posix() for _, path in spec.needs(prepare)}))
        note = (
            f"prepare.dataset = {prepare.dataset!r}: in place, nothing to download (checked: {checked}).\n"
            "Keep your data in git (small files) or track it with `dvc add data/<folder>`, so queued and "
            "--temp experiments find it.\n"
        )
        write_text(note, NOTE)
        log.info("%s", note.splitlines()[0])
        return
    if not (ours and spec.downloadable):
        raise DatasetError(_missing_message(spec, prepare, missing, target))
    NOTE.unlink(missing_ok=True)
    if missing:
        log.info("%s is missing: downloading %s into %s", missing[0][1], prepare.dataset, target)
    download_dataset(prepare.dataset, paths.DOWNLOADS, progress=False, log=log.info)
    still = spec.missing(prepare)
    if still:
        raise DatasetError(
            f"{prepare.dataset} was downloaded into {target} but {still[0][1]} is not there: check "
            f"prepare.splits ({list(prepare.splits)}) against the dataset's splits"
        )


if __name__ == "__main__":
    run(main, "download")
