"""Scoring a split and writing the three evaluation artifacts.

- metrics (reports/<stage>.json, kept by git): `map` (mean of per-class AP over classes with a positive),
  counts (`n_images` scored, `n_images_skipped`: test images in the manifest that could not be read).
- per_class.parquet: `label` (Utf8), `ap` (Float64, null where a class has no positive), `n_positive` (Int64).
- scores.parquet: `image_id` (Utf8) then one Float32 column per label, named by the label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from .io import write_json, write_parquet
from .labels import LabelSet
from .metrics import integrate, mean_ap, per_class_ap


def scores_frame(ids: list[str], scores: np.ndarray, labels: LabelSet) -> pl.DataFrame:
    columns = {"image_id": pl.Series(ids, dtype=pl.Utf8)}
    columns.update({name: pl.Series(scores[:, i], dtype=pl.Float32) for i, name in enumerate(labels.names)})
    return pl.DataFrame(columns)


def read_scores(path: str | Path, ids: list[str], labels: LabelSet) -> np.ndarray:
    """Another method's scores aligned to `ids`; names the file and what is missing when they do not fit."""
    frame = pl.read_parquet(path)
    missing_columns = [c for c in ("image_id", *labels.names) if c not in frame.columns]
    if missing_columns:
        raise ValueError(f"{path}: missing column(s) {missing_columns[:10]}; it needs image_id and one column per label")
    aligned = pl.DataFrame({"image_id": ids}).join(frame, on="image_id", how="left", maintain_order="left")
    lacking = aligned.filter(pl.col(labels.names[0]).is_null())["image_id"].to_list()
    if lacking:
        raise ValueError(f"{path}: no scores for {len(lacking)} image(s), e.g. {lacking[:3]}; it must cover the split")
    return aligned.select(labels.names).to_numpy().astype(np.float64)


def evaluate_scores(scores: np.ndarray, targets: np.ndarray, labels: LabelSet) -> tuple[dict, pl.DataFrame]:
    aps = per_class_ap(scores, targets)
    per_class = pl.DataFrame(
        {
            "label": list(labels.names),
            "ap": [None if np.isnan(a) else float(a) for a in aps],
            "n_positive": targets.sum(axis=0).astype(np.int64),
        },
        schema={"label": pl.Utf8, "ap": pl.Float64, "n_positive": pl.Int64},
    )
    metrics = {"map": mean_ap(scores, targets), "n_images": int(len(scores)), "n_classes_scored": int(np.isfinite(aps).sum())}
    return metrics, per_class


def write_evaluation(
    out_dir: str | Path,
    metrics_path: str | Path,
    ids: list[str],
    scores: np.ndarray,
    targets: np.ndarray,
    labels: LabelSet,
    extra: dict | None = None,
    integrate_with: str | None = None,
    integrate_scaling: str = "global",
    integrate_weight: float = 0.5,
) -> dict:
    out_dir = Path(out_dir)
    metrics, per_class = evaluate_scores(scores, targets, labels)
    if integrate_with:
        other = read_scores(integrate_with, ids, labels)
        metrics["other_map"] = mean_ap(other, targets)
        metrics["integrated_map"] = mean_ap(integrate(scores, other, integrate_scaling, integrate_weight), targets)
    metrics.update(extra or {})
    write_parquet(per_class, out_dir / "per_class.parquet")
    write_parquet(scores_frame(ids, scores, labels), out_dir / "scores.parquet")
    write_json(metrics, metrics_path)
    return metrics


def write_empty_evaluation(out_dir: str | Path, metrics_path: str | Path, labels: LabelSet) -> dict:
    """The three artifacts with no image to score (a labels-only project): every label with a null AP."""
    out_dir = Path(out_dir)
    per_class = pl.DataFrame(
        {"label": list(labels.names), "ap": [None] * len(labels), "n_positive": [0] * len(labels)},
        schema={"label": pl.Utf8, "ap": pl.Float64, "n_positive": pl.Int64},
    )
    metrics = {"n_images": 0, "n_classes_scored": 0}
    write_parquet(per_class, out_dir / "per_class.parquet")
    write_parquet(scores_frame([], np.zeros((0, len(labels)), np.float32), labels), out_dir / "scores.parquet")
    write_json(metrics, metrics_path)
    return metrics
