"""The manifest: the contract between `prepare` and every stage after it (columns: `pipeline.datasets`).

Kept apart from the dataset readers so that a stage reading manifests does not depend on how
VOC or COCO is parsed (an edit to a reader reruns `prepare`, not `train`)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from .errors import UserError

MANIFEST_SCHEMA = {
    "image_id": pl.Utf8,
    "path": pl.Utf8,
    "labels": pl.List(pl.Utf8),
    "difficult": pl.List(pl.Utf8),
}


class DatasetError(UserError, ValueError):
    """A dataset source is missing, incomplete or malformed (the message says where and how to fix it)."""


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
