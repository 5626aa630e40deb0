"""Plot data `evaluate` writes into reports/ (kept by git), so `dvc plots show` / `dvc plots diff` draw per-class
results and compare experiments class by class.

- reports/per_class.csv: one row per label: `label`, `n_positive`, then the AP of each method (`adapter`,
  `zeroshot` (the CLIP baseline), `prompt` (the peer, prompt.method), `integrated` (evaluate.integrate_with);
  empty where a method did not run or the label has no positive), then the adapter's `threshold` and its
  `precision`, `recall`, `f1` at that threshold.
- reports/per_class_ap.csv: the same APs long, one row per (label, method that ran) with a defined AP: `label`,
  `method`, `ap`, and `bar` ("cat · adapter", the bar's name: DVC's bar template takes one value field).
- reports/pr_<method>.csv: the micro-averaged precision-recall curve of each method (every image and label
  pooled): `recall`, `precision`, `threshold`, at most MAX_CURVE_POINTS rows, each an exact point of the curve
  (decimated by keeping evenly spaced points, the first and last included; none is interpolated). A method
  that did not run gets the header only, so the declared plot always exists.

dvc.yaml's top-level `plots:` draws them: bars per label (template bar_horizontal), curves (linear).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from pipeline.io import write_text

from .metrics import per_class_ap

METHODS = ("adapter", "zeroshot", "prompt", "integrated")
MAX_CURVE_POINTS = 200
AP_BARS_FILE = "per_class_ap.csv"  # beside per_class.csv


def micro_pr_curve(scores: np.ndarray, targets: np.ndarray) -> pl.DataFrame:
    """Every (recall, precision, threshold) point of `score >= threshold` over all images and labels pooled,
    one per distinct score, highest threshold first (the curve average precision sums over)."""
    flat, hits = np.asarray(scores, np.float64).ravel(), (np.asarray(targets) > 0).ravel()
    n_pos = int(hits.sum())
    if n_pos == 0:
        return pl.DataFrame(schema={"recall": pl.Float64, "precision": pl.Float64, "threshold": pl.Float64})
    order = np.argsort(-flat, kind="mergesort")
    ranked, true_pos = flat[order], np.cumsum(hits[order])
    last_of_tie = np.r_[np.diff(ranked) != 0, True]
    cut = np.flatnonzero(last_of_tie)
    return pl.DataFrame(
        {"recall": true_pos[cut] / n_pos, "precision": true_pos[cut] / (cut + 1), "threshold": ranked[cut]}
    )


def decimate(frame: pl.DataFrame, max_points: int = MAX_CURVE_POINTS) -> pl.DataFrame:
    """At most `max_points` rows of `frame`, evenly spaced by position, the first and last kept; rows are
    taken, never interpolated, so every kept point lies exactly on the curve."""
    if frame.height <= max_points:
        return frame
    rows = np.unique(np.round(np.linspace(0, frame.height - 1, max_points)).astype(np.int64))
    return frame[rows.tolist()]


def per_class_table(
    labels: tuple[str, ...],
    targets: np.ndarray,
    method_scores: dict[str, np.ndarray | None],
    thresholds: np.ndarray,
    thresholded: dict[str, np.ndarray],
) -> pl.DataFrame:
    """One row per label: AP of each method in METHODS (null where it did not run or is undefined), the
    adapter's threshold and its precision, recall and F1 there."""
    columns = {"label": list(labels), "n_positive": np.asarray(targets).sum(axis=0).astype(np.int64)}
    for method in METHODS:
        scores = method_scores.get(method)
        aps = per_class_ap(scores, targets) if scores is not None else np.full(len(labels), np.nan)
        columns[method] = [None if np.isnan(a) else float(a) for a in aps]
    columns["threshold"] = np.asarray(thresholds, np.float64)
    columns.update({k: np.asarray(thresholded[k], np.float64) for k in ("precision", "recall", "f1")})
    schema = {
        "label": pl.Utf8,
        "n_positive": pl.Int64,
        **{m: pl.Float64 for m in METHODS},
        **{k: pl.Float64 for k in ("threshold", "precision", "recall", "f1")},
    }
    return pl.DataFrame(columns, schema=schema)


def ap_bars(per_class: pl.DataFrame) -> pl.DataFrame:
    """`per_class_table`'s APs as one row per (label, method) with a number, labels in order, methods in METHODS order."""
    long = per_class.select("label", *METHODS).unpivot(index="label", variable_name="method", value_name="ap")
    order = {name: i for i, name in enumerate(per_class["label"])}
    return (
        long.drop_nulls("ap")
        .with_columns(
            pl.col("label").replace_strict(order, return_dtype=pl.Int64).alias("_label"),
            pl.col("method")
            .replace_strict({m: i for i, m in enumerate(METHODS)}, return_dtype=pl.Int64)
            .alias("_method"),
            pl.concat_str("label", pl.lit(" · "), "method").alias("bar"),
        )
        .sort("_label", "_method")
        .drop("_label", "_method")
    )


def curve_path(per_class_path: str | Path, method: str) -> Path:
    """reports/pr_<method>.csv, beside per_class.csv (reports/ stays flat: tools list it file by file)."""
    return Path(per_class_path).with_name(f"pr_{method}.csv")


def write_result_plots(
    per_class_path: str | Path,
    labels: tuple[str, ...],
    targets: np.ndarray,
    method_scores: dict[str, np.ndarray | None],
    thresholds: np.ndarray,
    thresholded: dict[str, np.ndarray],
) -> None:
    """reports/per_class.csv, and beside it per_class_ap.csv and pr_<method>.csv (see the module docstring)."""
    per_class_path = Path(per_class_path)
    per_class = per_class_table(labels, targets, method_scores, thresholds, thresholded)
    write_text(per_class.write_csv(), per_class_path)
    write_text(ap_bars(per_class).write_csv(), per_class_path.with_name(AP_BARS_FILE))
    for method in METHODS:
        scores = method_scores.get(method)
        curve = (
            micro_pr_curve(scores, targets)
            if scores is not None and len(scores)
            else micro_pr_curve(np.zeros((0, 1)), np.zeros((0, 1)))
        )
        write_text(decimate(curve).write_csv(float_precision=6), curve_path(per_class_path, method))
