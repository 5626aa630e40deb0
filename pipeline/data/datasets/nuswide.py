"""NUS-WIDE (`prepare.dataset: nuswide`) from its official label files and a folder of images.

`prepare.root` holds the official files (NUS-WIDE has no official image download; the lists and
labels come from the NUS-WIDE page, the images from a copy you obtain):

    Concepts81.txt                                  the 81 concepts, one per line (label order)
    ImageList/TrainImagelist.txt, TestImagelist.txt one image per line, e.g. actor\\0001_2124494179.jpg
    TrainTestLabels/Labels_<concept>_Train.txt      one 0/1 per line, aligned with TrainImagelist.txt
    TrainTestLabels/Labels_<concept>_Test.txt       the same for TestImagelist.txt

Images are read from `prepare.image_root` (default `<root>/Flickr`) joined with the list entry
(backslashes become '/'). Split `train` is TrainImagelist, `test` TestImagelist. Every listed image
is kept, those with no concept too (the paper's counts, 161,789 train and 107,859 test, are the
full lists). Public copies lack some images: those are left out of the manifest, counted in a
warning and listed in `missing_<split>.parquet` (`image_id`, `path`); the run goes on.
Concepts become labels with synonyms from `nuswide_labels.txt` beside this module.
image_id is the list entry without its extension ("actor/0001_2124494179").
"""

from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np
import polars as pl

from pipeline.data.datasets.specs import NUSWIDE_SPLITS
from pipeline.data.labels import LabelSet, read_label_file
from pipeline.data.manifest import DatasetError, manifest_frame

log = logging.getLogger(__name__)

NUSWIDE_COUNTS = {"train": 161_789, "test": 107_859}
LABEL_TABLE = Path(__file__).with_name("nuswide_labels.txt")
MISSING_SCHEMA = {"image_id": pl.Utf8, "path": pl.Utf8}


def missing_nuswide_message(root: Path, what: str) -> str:
    return (
        f"NUS-WIDE not found: {what} is missing (prepare.root = {str(root)!r}). NUS-WIDE has no official image "
        "download: get Concepts81.txt, ImageList/ and TrainTestLabels/ from the NUS-WIDE page "
        "(https://lms.comp.nus.edu.sg/wp-content/uploads/2019/research/nuswide/NUS-WIDE.html), put them in "
        "prepare.root, and the images (a copy of the Flickr folder) under prepare.image_root (default <root>/Flickr)"
    )


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]


def read_concepts(root: Path) -> list[str]:
    path = root / "Concepts81.txt"
    if not path.is_file():
        raise DatasetError(missing_nuswide_message(root, f"the concept list {path}"))
    concepts = _lines(path)
    if not concepts:
        raise DatasetError(f"{path}: no concepts; replace it from the NUS-WIDE download")
    return concepts


def read_concept_column(path: Path, n_images: int, root: Path) -> np.ndarray:
    """One concept's 0/1 column for a split, checked against the image list's length."""
    if not path.is_file():
        raise DatasetError(missing_nuswide_message(root, f"the label file {path}"))
    try:
        values = np.array(path.read_text().split(), dtype=np.int64)
    except ValueError as e:
        raise DatasetError(f"{path}: expected one 0 or 1 per line ({e}); replace it from the NUS-WIDE download") from e
    if len(values) != n_images:
        raise DatasetError(
            f"{path}: {len(values)} values but the image list has {n_images} lines; they must align line by line"
        )
    if not np.isin(values, (0, 1)).all():
        raise DatasetError(f"{path}: values other than 0 and 1; replace it from the NUS-WIDE download")
    return values.astype(bool)


def build_nuswide(
    root: str | Path, splits: Sequence[str], image_root: str | Path | None = None
) -> tuple[LabelSet, dict[str, pl.DataFrame], dict[str, pl.DataFrame]]:
    """(label set, {split: manifest}, {split: missing images}) for a NUS-WIDE folder."""
    root = Path(root)
    images = Path(image_root) if image_root else root / "Flickr"
    if not root.is_dir():
        raise DatasetError(missing_nuswide_message(root, f"the folder {root}"))
    if not images.is_dir():
        raise DatasetError(
            f"the NUS-WIDE image folder {images} does not exist: set prepare.image_root to the folder holding the "
            "images (the list entries, e.g. actor/0001_2124494179.jpg, are relative to it)"
        )
    concepts = read_concepts(root)
    table = read_label_file(LABEL_TABLE)
    synonyms = {n: list(s) for n, s in zip(table.names, table.synonyms)}
    unknown_concepts = [c for c in concepts if c not in synonyms]
    if unknown_concepts:
        log.info("concepts %s are not in %s: labels without synonyms", unknown_concepts, LABEL_TABLE.name)
    label_set = LabelSet.from_names(concepts, synonyms)

    manifests: dict[str, pl.DataFrame] = {}
    missing: dict[str, pl.DataFrame] = {}
    for split in splits:
        list_name, suffix = NUSWIDE_SPLITS[split]
        list_path = root / "ImageList" / list_name
        if not list_path.is_file():
            raise DatasetError(missing_nuswide_message(root, f"the image list {list_path}"))
        entries = [PurePosixPath(line.replace("\\", "/")) for line in _lines(list_path)]
        columns = [
            read_concept_column(root / "TrainTestLabels" / f"Labels_{c}_{suffix}.txt", len(entries), root)
            for c in concepts
        ]
        matrix = np.stack(columns, axis=1) if columns else np.zeros((len(entries), 0), bool)
        ids = [str(e.with_suffix("")) for e in entries]
        paths = [(images / e).as_posix() for e in entries]
        present = np.array([os.path.isfile(p) for p in paths], dtype=bool)
        n_missing = int((~present).sum())
        keep = np.flatnonzero(present)
        labels = [[concepts[j] for j in np.flatnonzero(matrix[i])] for i in keep]
        manifests[split] = manifest_frame(
            [ids[i] for i in keep], [paths[i] for i in keep], labels, None, label_set, str(list_path)
        )
        missing[split] = pl.DataFrame(
            {
                "image_id": [ids[i] for i in np.flatnonzero(~present)],
                "path": [paths[i] for i in np.flatnonzero(~present)],
            },
            schema=MISSING_SCHEMA,
        )
        n_no_concept = int((~matrix[keep].any(axis=1)).sum()) if len(keep) else 0
        log.info(
            "%s: %d images listed (the paper's full list: %d), %d with no concept (kept)",
            split,
            len(entries),
            NUSWIDE_COUNTS[split],
            n_no_concept,
        )
        if n_missing:
            log.warning(
                "%s: %d of %d listed images are not under %s, e.g. %s: left out, listed in missing_%s.parquet",
                split,
                n_missing,
                len(entries),
                images,
                [paths[i] for i in np.flatnonzero(~present)[:3]],
                split,
            )
    return label_set, manifests, missing
