"""Average precision the way multi-label papers report it.

AP is the non-interpolated area under the precision-recall step curve, with tied
scores forming one threshold (the definition scikit-learn's
`average_precision_score` uses), so numbers agree with it to float precision.
mAP averages AP over classes that have at least one positive.
"""

from __future__ import annotations

import numpy as np


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """AP of one class; NaN when the class has no positive (AP is undefined there)."""
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets) > 0
    n_pos = targets.sum()
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, hits = scores[order], targets[order]
    true_pos = np.cumsum(hits)
    last_of_tie = np.r_[np.diff(sorted_scores) != 0, True]  # one threshold per distinct score
    true_pos = true_pos[last_of_tie]
    predicted = (np.arange(len(scores)) + 1)[last_of_tie]
    precision = true_pos / predicted
    recall = true_pos / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def per_class_ap(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """AP for each column of an (images x classes) score matrix."""
    return np.array([average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])])


def mean_ap(scores: np.ndarray, targets: np.ndarray) -> float:
    aps = per_class_ap(scores, targets)
    return float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan")


def known_mean_ap(scores: np.ndarray, targets: np.ndarray, known: np.ndarray) -> float:
    """mAP over the known entries only (partial labels): each class's AP over the images where it is known."""
    known = np.asarray(known) > 0.5
    aps = np.array([average_precision(scores[known[:, c], c], targets[known[:, c], c]) for c in range(scores.shape[1])])
    return float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan")


def min_max_scale(scores: np.ndarray, axis: int | None = 0) -> np.ndarray:
    """Scale to [0, 1]: each column (axis 0) or the whole matrix (axis None, TaI-DPT's `ensemble_score.py`);
    a constant column or matrix becomes 0."""
    low, high = scores.min(axis=axis, keepdims=True), scores.max(axis=axis, keepdims=True)
    return (scores - low) / np.where(high > low, high - low, 1.0)


def integrate(scores: np.ndarray, other: np.ndarray, scaling: str = "global", weight: float = 0.5) -> np.ndarray:
    """(1 - weight) x the adapter's scores + weight x another method's, after min-max scaling
    (evaluate.integrate_scaling, evaluate.integrate_weight).

    global (the default): each method's whole score matrix is scaled to [0, 1], as TaI-DPT's
    `ensemble_score.py` does, which the paper's supplement names as its ensemble policy ("scale the
    results of CoOp and DualCoOp to the interval from 0 to 1, and then average them"); weight 0.5 is
    "average". per_class (ours): only the other method's scores are scaled, per class; the adapter's
    sigmoid probabilities already lie in [0, 1]. both (ours): both scaled per class.
    """
    if scaling == "global":
        scores, other = min_max_scale(scores, None), min_max_scale(other, None)
    elif scaling == "both":
        scores, other = min_max_scale(scores), min_max_scale(other)
    else:
        other = min_max_scale(other)
    return (1 - weight) * scores + weight * other
