"""Your own images (`prepare.dataset: folder`): a folder of images plus a labels file.

`prepare.labels_file` is a CSV or Parquet (`.csv`, `.parquet`, `.pq`) with columns

- `path`: the image file, relative to `prepare.root` (POSIX separators);
- `labels`: the image's positive labels: a '|'-separated string in CSV ("cat|dog"; empty = none),
  a list of strings (or such a string) in Parquet;
- `split`: the split the image belongs to (rows of splits not in `prepare.splits` are left out, with a warning);
- `image_id` (optional): unique name of the image; default: `path` without its extension.

The label set is `prepare.label_names` (a text file, one label per line, synonyms after ':'; see
`pipeline.data.labels.read_label_file`) when given, else the sorted union of the labels in the file.
Manifests have the columns described in `pipeline.data.datasets`; `difficult` is always empty here.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Sequence

import polars as pl

from pipeline.data.labels import LabelError, LabelSet, read_label_file
from pipeline.data.manifest import DatasetError, manifest_frame

log = logging.getLogger(__name__)

REQUIRED = ("path", "labels", "split")
SUFFIXES = (".csv", ".parquet", ".pq")


def read_labels_file(labels_file: str | Path) -> pl.DataFrame:
    """The labels file as a frame with Utf8 `path`, `split`, `image_id` (nulls = default) and
    List[Utf8] `labels` (stripped, empty entries dropped). Raises DatasetError naming the file."""
    path = Path(labels_file)
    if not path.is_file():
        raise DatasetError(
            f"prepare.labels_file = {str(path)!r} does not exist: point it at a CSV or Parquet with columns "
            "path, labels ('a|b'), split"
        )
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DatasetError(f"{path}: unknown labels-file type {suffix!r}; use a .csv or .parquet file")
    try:
        if suffix == ".csv":
            frame = pl.read_csv(path, infer_schema_length=0)  # every column as text
        else:
            frame = pl.read_parquet(path)
    except Exception as e:  # polars raises several kinds for malformed files
        raise DatasetError(f"{path}: cannot read it as {suffix[1:].upper()} ({e})") from e
    stripped = [c.strip() for c in frame.columns]
    repeated = sorted({c for c in stripped if stripped.count(c) > 1})
    if repeated:
        raise DatasetError(
            f"{path}: column(s) {repeated} appear more than once (spaces around names do not count); keep one of each"
        )
    frame = frame.rename(dict(zip(frame.columns, stripped)))
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {missing} (found {frame.columns}); the labels file needs columns "
            "path, labels ('a|b' in CSV, a list in Parquet) and split, optionally image_id"
        )
    for column in ("path", "split", "image_id"):
        if column in frame.columns and frame.schema[column] != pl.Utf8:
            if frame.schema[column].is_nested():
                raise DatasetError(f"{path}: column {column!r} should hold text, not {frame.schema[column]}")
            frame = frame.with_columns(pl.col(column).cast(pl.Utf8))
    if "image_id" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias("image_id"))

    dtype = frame.schema["labels"]
    if dtype == pl.Utf8 or dtype == pl.Null:
        labels = pl.col("labels").cast(pl.Utf8).fill_null("").str.split("|")
    elif isinstance(dtype, pl.List) and dtype.inner in (pl.Utf8, pl.Null):
        labels = pl.col("labels").cast(pl.List(pl.Utf8)).fill_null([])
    else:
        raise DatasetError(f"{path}: column 'labels' has type {dtype}; use a list of strings or a '|'-separated string")
    labels = labels.list.eval(pl.element().str.strip_chars().filter(pl.element().is_not_null() & (pl.element() != "")))
    return frame.select("path", "split", "image_id", labels.alias("labels"))


def _row_name(labels_file: Path, row: int) -> str:
    # row is 0-based among data rows; in a CSV the header is line 1
    return f"line {row + 2}" if labels_file.suffix.lower() == ".csv" else f"row {row + 1}"


def build_folder(
    root: str | Path,
    labels_file: str | Path,
    splits: Sequence[str],
    label_names: str | Path | None = None,
) -> tuple[LabelSet, dict[str, pl.DataFrame]]:
    """Label set and {split: manifest} for a folder of images described by `labels_file`.

    Raises DatasetError (missing file/column/split/image, null cell, duplicate image_id) or LabelError
    (a label not in `label_names`), each naming the file, the row and the fix.
    """
    root, labels_file = Path(root), Path(labels_file)
    if not root.is_dir():
        raise DatasetError(f"prepare.root = {str(root)!r} is not a folder: point it at the folder of your images")
    frame = read_labels_file(labels_file)
    if frame.height == 0:
        raise DatasetError(f"{labels_file}: no rows; add one row per image (path, labels, split)")

    for column in ("path", "split"):
        nulls = frame.with_row_index("row").filter(pl.col(column).is_null() | (pl.col(column).str.strip_chars() == ""))
        if nulls.height:
            row = int(nulls["row"][0])
            raise DatasetError(
                f"{labels_file}, {_row_name(labels_file, row)}: empty {column!r}"
                f"{f' (and {nulls.height - 1} more rows)' if nulls.height > 1 else ''}; fill it in or drop the row"
            )
    frame = frame.with_columns(
        pl.col("path").str.strip_chars(),
        pl.col("split").str.strip_chars(),
        pl.col("image_id").str.strip_chars(),
    )
    image_ids = [
        given if given else str(PurePosixPath(p).with_suffix(""))
        for given, p in zip(frame["image_id"].to_list(), frame["path"].to_list())
    ]
    frame = frame.with_columns(pl.Series("image_id", image_ids, dtype=pl.Utf8))

    counts = frame.group_by("image_id").len().filter(pl.col("len") > 1)
    if counts.height:
        dupes = sorted(counts["image_id"].to_list())
        raise DatasetError(
            f"{labels_file}: duplicate image_id(s) {dupes[:10]}{' ...' if len(dupes) > 10 else ''} "
            "(image_id defaults to the path without its extension); each image must appear once: remove the "
            "repeated rows, or add an image_id column with distinct values"
        )

    if label_names:
        if not Path(label_names).is_file():
            raise LabelError(
                f"prepare.label_names = {str(label_names)!r} does not exist: write a text file with one label per "
                "line (synonyms after ':'), or set it to null to use the labels found in the labels file"
            )
        label_set = read_label_file(label_names)
        known = set(label_set.names)
        for row, (image_id, labels) in enumerate(zip(frame["image_id"], frame["labels"].to_list())):
            unknown = [label for label in labels if label not in known]
            if unknown:
                raise LabelError(
                    f"{labels_file}, {_row_name(labels_file, row)} (image {image_id!r}): label {unknown[0]!r} is not "
                    f"in prepare.label_names ({label_names})"
                    f"{f'; other unknown labels in this row: {unknown[1:]}' if len(unknown) > 1 else ''}. "
                    f"Fix its spelling in {labels_file} or add it to {label_names}"
                )
    else:
        names = sorted({label for labels in frame["labels"].to_list() for label in labels})
        if not names:
            raise DatasetError(f"{labels_file}: no labels in column 'labels'; give each image its labels ('a|b')")
        label_set = LabelSet.from_names(names)

    found = frame["split"].unique(maintain_order=True).to_list()
    for split in splits:
        if split not in found:
            raise DatasetError(
                f"{labels_file}: split {split!r} (listed in prepare.splits) has no rows; splits found there: "
                f"{found}. Set prepare.splits to the splits you have, or add rows for {split!r}"
            )

    unused = [split for split in found if split not in splits]
    if unused:
        n_rows = frame.filter(pl.col("split").is_in(unused)).height
        log.warning(
            "%s: %d row(s) of split(s) %s are left out: they are not in prepare.splits %s (add them there to "
            "use them; their labels still count)",
            labels_file,
            n_rows,
            unused,
            list(splits),
        )
    manifests: dict[str, pl.DataFrame] = {}
    for split in splits:
        part = frame.filter(pl.col("split") == split)
        paths = [(root / p).as_posix() for p in part["path"].to_list()]
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise DatasetError(
                f"{labels_file}: {len(missing)} image(s) of split {split!r} not found, e.g. {missing[:3]}; "
                f"paths are relative to prepare.root ({root}): fix the paths or prepare.root"
            )
        manifests[split] = manifest_frame(
            part["image_id"].to_list(), paths, part["labels"].to_list(), None, label_set, str(labels_file)
        )
    return label_set, manifests
