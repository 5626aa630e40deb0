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


def min_max_scale(scores: np.ndarray) -> np.ndarray:
    """Scale each column to [0, 1] (a constant column becomes 0), so two methods' scores can be averaged."""
    low, high = scores.min(axis=0, keepdims=True), scores.max(axis=0, keepdims=True)
    return (scores - low) / np.where(high > low, high - low, 1.0)


def integrate(scores: np.ndarray, other: np.ndarray, scaling: str = "other") -> np.ndarray:
    """Average the adapter's probabilities with another method's scores (evaluate.integrate_scaling).

    other (the paper's): only the other method's scores are min-max scaled to [0, 1] per class; the
    adapter's sigmoid probabilities already lie there. both (ours): the adapter's are scaled too.
    """
    if scaling == "both":
        scores = min_max_scale(scores)
    return (scores + min_max_scale(other)) / 2
