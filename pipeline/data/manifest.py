"""The manifest: the contract between `prepare` and every stage after it (columns: `pipeline.data.datasets`).

`manifest_frame` builds one (the dataset readers call it), `read_split` reads the one `prepare`
wrote. Kept apart from the dataset readers so that a stage reading manifests does not depend on how
VOC or COCO is parsed (an edit to a reader reruns `prepare`, not `train`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import polars as pl

from pipeline.errors import DatasetError
from pipeline.paths import manifest_path

if TYPE_CHECKING:
    from .labels import LabelSet

MANIFEST_SCHEMA = {
    "image_id": pl.Utf8,
    "path": pl.Utf8,
    "labels": pl.List(pl.Utf8),
    "difficult": pl.List(pl.Utf8),
}


@dataclass
class Prepared:
    """What `prepare` writes: the label table, one manifest per split, and extra tables beside them
    ({path under artifacts/data/<dataset>/ (from pipeline.paths): frame}, e.g. NUS-WIDE's missing images)."""

    labels: "LabelSet"
    manifests: dict[str, pl.DataFrame]
    extras: dict[Path, pl.DataFrame] = field(default_factory=dict)


def read_manifest(path: str | Path) -> pl.DataFrame:
    """Read a manifest written by `prepare`, checking its columns (DatasetError names the file and the fix)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found; run the prepare stage (`dvc repro prepare`) first")
    frame = pl.read_parquet(path)
    missing = [c for c in MANIFEST_SCHEMA if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: not a manifest, missing column(s) {missing}; rerun the prepare stage")
    return frame.select(list(MANIFEST_SCHEMA)).cast(MANIFEST_SCHEMA)


def read_split(dataset: str, split: str) -> pl.DataFrame:
    """The manifest `prepare` wrote for `split` of `dataset` (prepare.dataset), columns checked."""
    path = manifest_path(dataset, split)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no manifest for split {split!r}; add it to prepare.splits and run `dvc repro prepare`"
        )
    return read_manifest(path)


def manifest_frame(
    image_ids: Sequence[str],
    paths: Sequence[str],
    labels: Sequence[Iterable[str]],
    difficult: Sequence[Iterable[str]] | None,
    label_set: "LabelSet",
    where: str,
) -> pl.DataFrame:
    """Build a manifest with MANIFEST_SCHEMA: label lists put in label-table order (deduplicated),
    a label that is both positive and difficult kept only as positive. `where` names the source in errors."""
    if difficult is None:
        difficult = [()] * len(image_ids)
    if not len(image_ids) == len(paths) == len(labels) == len(difficult):
        raise ValueError("image_ids, paths, labels and difficult differ in length")
    if not len(image_ids):
        raise DatasetError(
            f"{where}: this split has no images, and an empty split cannot be encoded or scored; "
            "list its images there, or drop the split from prepare.splits"
        )
    _check_unique(image_ids, where)
    order = label_set.index
    positives, hard = [], []
    for pos, diff in zip(labels, difficult):
        pos = set(pos)
        label_set.check_known(pos | set(diff), where)
        positives.append(sorted(pos, key=order.__getitem__))
        hard.append(sorted(set(diff) - pos, key=order.__getitem__))
    return pl.DataFrame(
        {"image_id": list(image_ids), "path": list(paths), "labels": positives, "difficult": hard},
        schema=MANIFEST_SCHEMA,
    )


def _check_unique(image_ids: Sequence[str], where: str) -> None:
    seen: set[str] = set()
    dupes: list[str] = []
    for image_id in image_ids:
        if image_id in seen and image_id not in dupes:
            dupes.append(image_id)
        seen.add(image_id)
    if dupes:
        raise DatasetError(
            f"{where}: duplicate image_id(s) {dupes[:10]}{' ...' if len(dupes) > 10 else ''}; "
            "every image must appear once: remove the repeated rows or give them distinct image_id values"
        )
