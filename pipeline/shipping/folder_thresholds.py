"""`tai thresholds FOLDER LABELS_FILE`: per-label thresholds chosen on a small labelled folder of the user's own.

The labels file is the folder dataset's (`pipeline.data.datasets.folder`: columns path, labels 'a|b', split; the
split is ignored here), paths relative to FOLDER. The classifier scores every listed image; a seeded share
(`check`) is set aside, thresholds maximising each label's F1 are chosen on the rest (`pipeline.evaluation.thresholds`),
and F1 on the set-aside images at them and at 0.5 is reported, so the user sees whether they help before
shipping them (`tai predict --thresholds FILE`, `tai export --thresholds FILE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.data.datasets.folder import read_labels_file
from pipeline.errors import UserError
from pipeline.evaluation.thresholds import DEFAULT_THRESHOLD, choose_thresholds, holdout_rows, thresholded_metrics

from .predict import predict_folder


@dataclass
class FolderThresholds:
    thresholds: dict[str, float]  # only the labels with a positive among the images they were chosen on
    n_chosen_on: int
    n_checked: int
    f1_checked: float | None  # micro F1 on the set-aside images at the chosen thresholds (None: none set aside)
    f1_checked_at_default: float | None


def choose_on_folder(
    model: Path,
    folder: Path,
    labels_file: Path,
    check: float = 0.5,
    seed: int = 0,
    device: str = "auto",
    clip_model: str | None = None,
) -> FolderThresholds:
    listed = read_labels_file(labels_file).with_columns(
        pl.col("path").map_elements(lambda p: str((folder / p).resolve()), return_dtype=pl.Utf8)
    )
    frame, _ = predict_folder(model, folder, clip_model, 0.5, device)
    frame = frame.with_columns(pl.col("path").map_elements(lambda p: str(Path(p).resolve()), return_dtype=pl.Utf8))
    names = tuple(c for c in frame.columns if c not in ("path", "predicted"))
    joined = listed.join(frame, on="path", how="inner")
    if joined.height < 2:
        raise UserError(
            f"{labels_file}: {joined.height} of its {listed.height} images were found and read under "
            f"{folder}; list at least two (paths relative to {folder})"
        )
    unknown = sorted(set(joined["labels"].explode().drop_nulls()) - set(names))
    if unknown:
        raise UserError(f"{labels_file}: label(s) {unknown[:10]} are not the classifier's ({list(names)[:20]})")
    scores = joined.select(names).to_numpy()
    targets = np.array([[name in row for name in names] for row in joined["labels"].to_list()], dtype=np.int8)
    checked = holdout_rows(len(scores), check, seed)
    thresholds, chosen = choose_thresholds(scores[~checked], targets[~checked])
    result = FolderThresholds(
        {n: float(t) for n, t, c in zip(names, thresholds, chosen) if c},
        int((~checked).sum()),
        int(checked.sum()),
        None,
        None,
    )
    if checked.any():
        result.f1_checked = thresholded_metrics(scores[checked], targets[checked], thresholds)[0]["f1_micro"]
        result.f1_checked_at_default = thresholded_metrics(
            scores[checked], targets[checked], np.full(len(names), DEFAULT_THRESHOLD)
        )[0]["f1_micro"]
    return result
