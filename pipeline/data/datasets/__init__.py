"""Datasets: turn a source on disk into a label table and one manifest per split (the `prepare` stage).

Outputs, under `artifacts/data/<dataset>/` (see `pipeline.paths`):

- `labels.parquet`: the label table, `LabelSet.to_frame()`: `index` (Int32, logit position),
  `label` (Utf8), `synonyms` (List[Utf8]).
- `<split>.parquet`, one per split in `prepare.splits`: the manifest, one row per image:

  ============  ===========  ==============================================================
  column        dtype        meaning
  ============  ===========  ==============================================================
  `image_id`    Utf8         unique within the dataset (VOC: "000005"; folder, COCO, NUS-WIDE:
                             the file's relative path without its extension)
  `path`        Utf8         the image file: `prepare.root` joined with the file's relative
                             path, POSIX separators; relative to the project root when
                             `prepare.root` is relative
  `labels`      List[Utf8]   positive labels, in label-table order
  `difficult`   List[Utf8]   labels present only as 'difficult' objects (VOC), label-table
                             order, never also in `labels`; empty lists for other sources
  ============  ===========  ==============================================================

  A label in `difficult` counts as a negative (as the paper's peers score VOC 2007).
  Row order follows the source (VOC: ImageSets/Main/<split>.txt; folder: the labels file;
  COCO: the file's images; NUS-WIDE: the image list).

Sources (`prepare.dataset`, one spec each in `pipeline.data.datasets.specs`, one builder each in `pipeline.data.datasets.builders`): `voc2007` (`pipeline.data.datasets.voc`), `folder`
(`pipeline.data.datasets.folder`), `coco2014` and `coco` (`pipeline.data.datasets.coco`), `nuswide`
(`pipeline.data.datasets.nuswide`, which also writes `missing_<split>.parquet`: listed images not on
disk) and `labels` (a label list only: the label table and no manifest). Every check runs before
anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from pipeline import io, paths
from pipeline.data.labels import LabelSet
from pipeline.data.manifest import MANIFEST_SCHEMA, DatasetError, Prepared, manifest_frame, read_manifest

if TYPE_CHECKING:
    from pipeline.config import PrepareParams


def prepare_dataset(params: "PrepareParams") -> Prepared:
    """Read the source named by `params.dataset` (checked by config against its spec, `pipeline.data.datasets.specs`)
    with its builder (`pipeline.data.datasets.builders`).

    Raises DatasetError (missing/malformed source) or LabelError (unknown label) before anything is written.
    """
    from pipeline.data.datasets.builders import BUILDERS  # here, not at the top: config reads the spec table alone

    return BUILDERS[params.dataset](params)


def build_dataset(params: "PrepareParams") -> tuple[LabelSet, dict[str, pl.DataFrame]]:
    """The label set and {split: manifest} of `prepare_dataset` (without its extra tables)."""
    prepared = prepare_dataset(params)
    return prepared.labels, prepared.manifests


def write_dataset(
    dataset: str,
    label_set: LabelSet,
    manifests: dict[str, pl.DataFrame],
    base: str | Path = ".",
    extras: dict[Path, pl.DataFrame] | None = None,
) -> list[Path]:
    """Write labels.parquet, <split>.parquet and the `extras` tables ({path from pipeline.paths
    inside artifacts/data/<dataset>/: frame}) under `base`/artifacts/data/<dataset>/.

    The whole folder is written beside its final place and swapped in at the end, so a killed run
    leaves the previous output intact and splits dropped from params.yaml do not linger.
    Returns the written paths (relative to `base`).
    """
    for split, frame in manifests.items():
        if dict(frame.schema) != MANIFEST_SCHEMA:
            raise ValueError(f"manifest for split {split!r} has schema {frame.schema}, expected {MANIFEST_SCHEMA}")
    base = Path(base)
    out_dir = base / paths.labels_path(dataset).parent
    written = [paths.labels_path(dataset)]
    with io.atomic_dir(out_dir) as tmp:
        io.write_parquet(label_set.to_frame(), tmp / written[0].name)
        for split, frame in manifests.items():
            target = paths.manifest_path(dataset, split)
            if target.parent != written[0].parent:
                raise ValueError(f"split name {split!r} is not a plain file name")
            io.write_parquet(frame, tmp / target.name)
            written.append(target)
        for target, frame in (extras or {}).items():
            target = Path(target)
            if target.parent != written[0].parent or target in written:
                raise ValueError(f"extra table {target} is not a new file in {written[0].parent}")
            io.write_parquet(frame, tmp / target.name)
            written.append(target)
    return written


__all__ = [
    "MANIFEST_SCHEMA",
    "DatasetError",
    "Prepared",
    "build_dataset",
    "prepare_dataset",
    "manifest_frame",
    "read_manifest",
    "write_dataset",
]
