"""Scoring a split and writing the three evaluation artifacts.

- metrics (reports/<stage>.json, kept by git): `map` (mean of per-class AP over classes with a positive),
  counts (`n_images` scored, `n_images_skipped`: test images in the manifest that could not be read).
- per_class.parquet: `label` (Utf8), `ap` (Float64, null where a class has no positive), `n_positive` (Int64).
- scores.parquet: `image_id` (Utf8) then one Float32 column per label, named by the label.

With `thresholds` (evaluate: the adapter's, chosen on held-out labelled images or 0.5), the metrics also hold
precision, recall and F1 at them (`precision_micro` ... `f1_macro`, `pipeline.evaluation.thresholds`); with `plots`, the
per-class and precision-recall plot data of every method that ran (`pipeline.evaluation.plot_data`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from pipeline.data.labels import LabelSet
from pipeline.io import write_json, write_parquet

from .metrics import integrate, mean_ap, per_class_ap
from .plot_data import write_result_plots
from .thresholds import DEFAULT_THRESHOLD, thresholded_metrics


def scores_frame(ids: list[str], scores: np.ndarray, labels: LabelSet) -> pl.DataFrame:
    columns = {"image_id": pl.Series(ids, dtype=pl.Utf8)}
    columns.update({name: pl.Series(scores[:, i], dtype=pl.Float32) for i, name in enumerate(labels.names)})
    return pl.DataFrame(columns)


def read_scores(path: str | Path, ids: list[str], labels: LabelSet) -> np.ndarray:
    """Another method's scores aligned to `ids`; names the file and what is missing when they do not fit."""
    frame = pl.read_parquet(path)
    missing_columns = [c for c in ("image_id", *labels.names) if c not in frame.columns]
    if missing_columns:
        raise ValueError(
            f"{path}: missing column(s) {missing_columns[:10]}; it needs image_id and one column per label"
        )
    aligned = pl.DataFrame({"image_id": ids}).join(frame, on="image_id", how="left", maintain_order="left")
    lacking = aligned.filter(pl.col(labels.names[0]).is_null())["image_id"].to_list()
    if lacking:
        raise ValueError(f"{path}: no scores for {len(lacking)} image(s), e.g. {lacking[:3]}; it must cover the split")
    return aligned.select(labels.names).to_numpy().astype(np.float64)


def optional_scores(path: str | Path, ids: list[str], labels: LabelSet) -> np.ndarray | None:
    """Another stage's scores aligned to `ids`, or None where it wrote none or scored other images
    (zeroshot.split other than evaluate.split): a plot then leaves that method out."""
    path = Path(path)
    if not path.is_file() or pl.read_parquet_schema(path).get("image_id") is None:
        return None
    try:
        return read_scores(path, ids, labels) if len(ids) else None
    except ValueError:
        return None


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
    metrics = {
        "map": mean_ap(scores, targets),
        "n_images": int(len(scores)),
        "n_classes_scored": int(np.isfinite(aps).sum()),
    }
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
    thresholds: np.ndarray | None = None,
    plots: tuple[Path, dict[str, np.ndarray | None]] | None = None,
) -> dict:
    """`plots`: (per-class CSV, {method: its scores aligned to `ids`, or None}) for
    `write_result_plots`; the adapter's and the integrated scores are added here."""
    out_dir = Path(out_dir)
    metrics, per_class = evaluate_scores(scores, targets, labels)
    integrated = None
    if integrate_with:
        other = read_scores(integrate_with, ids, labels)
        integrated = integrate(scores, other, integrate_scaling, integrate_weight)
        metrics["other_map"] = mean_ap(other, targets)
        metrics["integrated_map"] = mean_ap(integrated, targets)
    if thresholds is not None or plots is not None:
        thresholds = np.full(len(labels), DEFAULT_THRESHOLD) if thresholds is None else np.asarray(thresholds)
        at_thresholds, per_label = thresholded_metrics(scores, targets, thresholds)
        metrics.update(at_thresholds)
        if plots is not None:
            per_class_csv, others = plots
            write_result_plots(
                per_class_csv,
                labels.names,
                targets,
                {"adapter": scores, "integrated": integrated, **others},
                thresholds,
                per_label,
            )
    metrics.update(extra or {})
    write_parquet(per_class, out_dir / "per_class.parquet")
    write_parquet(scores_frame(ids, scores, labels), out_dir / "scores.parquet")
    write_json(metrics, metrics_path)
    return metrics


def write_empty_evaluation(
    out_dir: str | Path, metrics_path: str | Path, labels: LabelSet, plots: Path | None = None
) -> dict:
    """The three artifacts with no image to score (a labels-only project): every label with a null AP; with
    `plots` (the per-class CSV), plot data with no number in it."""
    out_dir = Path(out_dir)
    if plots is not None:
        n = len(labels)
        write_result_plots(
            plots,
            labels.names,
            np.zeros((0, n)),
            {},
            np.full(n, DEFAULT_THRESHOLD),
            {k: np.zeros(n) for k in ("precision", "recall", "f1")},
        )
    per_class = pl.DataFrame(
        {"label": list(labels.names), "ap": [None] * len(labels), "n_positive": [0] * len(labels)},
        schema={"label": pl.Utf8, "ap": pl.Float64, "n_positive": pl.Int64},
    )
    metrics = {"n_images": 0, "n_classes_scored": 0}
    write_parquet(per_class, out_dir / "per_class.parquet")
    write_parquet(scores_frame([], np.zeros((0, len(labels)), np.float32), labels), out_dir / "scores.parquet")
    write_json(metrics, metrics_path)
    return metrics
