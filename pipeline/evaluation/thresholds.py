"""Per-label decision thresholds chosen on labelled images, and precision / recall / F1 at given thresholds.

A probability of 0.5 is a good threshold only when the adapter's sigmoid is calibrated, and it is not: it
learns from texts, and an image's score for a label it shows can sit well below 0.5 (the modality gap).
Where labelled images exist that the adapter did not train on (few-shot support images or known entries of
the partial-label split held out of training, `train.threshold_holdout`, or a labelled folder, `tai
thresholds`), each label's threshold is the one maximising that label's F1 on them: a user who keeps the
labels at or above it gets, on images like those, the best balance of missed and wrong labels.
Labels with no positive (or no known entry) among those images keep `DEFAULT_THRESHOLD`.
"""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 0.5  # a label's threshold when no labelled image chose one (and `tai predict`'s default)

ZERO_SHOT_MESSAGE = (
    "thresholds: 0.5 for every label, chosen on no image (no labelled image was held out of training). "
    "To choose them on data: train.threshold_holdout > 0 with few-shot support images (fewshot.shots) or "
    "partial labels (partial.known_proportion), or `tai thresholds MODEL FOLDER --labels labels.csv` on a "
    "small labelled folder of your own; `tai predict --threshold` / `--thresholds-file` override them"
)


def best_f1_threshold(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """The threshold maximising F1 of `score >= threshold` for one label, halfway between the lowest kept
    score and the next lower one (so it generalises rather than sitting on one image's score); None when
    there is no positive. Ties in F1 go to the higher threshold (fewer labels predicted)."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive) > 0
    n_pos = int(positive.sum())
    if n_pos == 0 or len(scores) == 0:
        return None
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], positive[order]
    true_pos = np.cumsum(hits)
    last_of_tie = np.r_[np.diff(ranked) != 0, True]  # a threshold keeps every image of a tied score
    cut = np.flatnonzero(last_of_tie)
    kept = cut + 1
    f1 = 2 * true_pos[cut] / (kept + n_pos)
    best = int(cut[np.argmax(f1)])  # argmax: the first (highest-threshold) best
    below = ranked[best + 1] if best + 1 < len(ranked) else ranked[best] - 1e-6
    return float((ranked[best] + below) / 2)


def choose_thresholds(
    scores: np.ndarray, targets: np.ndarray, known: np.ndarray | None = None, default: float = DEFAULT_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, chosen): per label, the F1-best threshold over its known entries (`known` 1 where a
    label's value is known; all known when None), `default` where the label has no known positive."""
    scores, targets = np.asarray(scores, np.float64), np.asarray(targets) > 0
    known = np.ones_like(targets, dtype=bool) if known is None else np.asarray(known) > 0
    thresholds = np.full(scores.shape[1], float(default))
    chosen = np.zeros(scores.shape[1], dtype=bool)
    for c in range(scores.shape[1]):
        rows = known[:, c]
        best = best_f1_threshold(scores[rows, c], targets[rows, c])
        if best is not None:
            thresholds[c], chosen[c] = min(max(best, 0.0), 1.0), True
    return thresholds, chosen


def _ratio(numerator, denominator):
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def thresholded_metrics(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray) -> tuple[dict, dict]:
    """(summary, per_class) of `score >= threshold`: precision, recall and F1, micro (pooled over every
    image and label) and macro (mean over labels with a positive); per_class holds arrays per label
    (0 where undefined, e.g. precision of a label never predicted)."""
    predicted = np.asarray(scores) >= np.asarray(thresholds)[None, :]
    truth = np.asarray(targets) > 0
    tp = (predicted & truth).sum(axis=0)
    fp = (predicted & ~truth).sum(axis=0)
    fn = (~predicted & truth).sum(axis=0)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    micro_p, micro_r = float(_ratio(tp.sum(), tp.sum() + fp.sum())), float(_ratio(tp.sum(), tp.sum() + fn.sum()))
    micro_f1 = float(_ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum()))
    scored = truth.sum(axis=0) > 0
    macro = lambda x: float(x[scored].mean()) if scored.any() else 0.0
    summary = {
        "precision_micro": micro_p,
        "recall_micro": micro_r,
        "f1_micro": micro_f1,
        "precision_macro": macro(precision),
        "recall_macro": macro(recall),
        "f1_macro": macro(f1),
    }
    return summary, {"precision": precision, "recall": recall, "f1": f1}


def holdout_rows(n: int, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of the rows held out of training (at least one when fraction > 0 and n > 1, never all)."""
    held = np.zeros(n, dtype=bool)
    if fraction <= 0 or n < 2:
        return held
    k = min(n - 1, max(1, round(n * fraction)))
    held[np.random.default_rng(seed).permutation(n)[:k]] = True
    return held
