"""Pictures written by stages (matplotlib, Agg backend: no display needed).

`centroids_figure` draws the paper's Fig. 7 / Fig. 10: for the most frequent label
combinations, the embeddings of their images, the centroid estimated from the partial
labels (eq. 9's target: the mean of the combination's labels' visual centroids from KNOWN
positives) and the same centroid computed from the full labels, embedded together by t-SNE
(scikit-learn); one panel per run (e.g. per known proportion). `combination_panel` builds
one panel's data from a run's arrays. `placeholder_figure` writes a small image saying why
there is no picture (DVC needs a declared plot to exist).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi)
    return Path(path)


def placeholder_figure(path: str | Path, message: str) -> Path:
    """A small PNG with `message` centred on it."""
    plt = _pyplot()
    fig = plt.figure(figsize=(4, 1.5), dpi=80)
    fig.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=9)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


@dataclass
class CentroidPanel:
    """One panel: the top label combinations of one run (k combinations, d dims)."""

    title: str
    combinations: list[tuple[str, ...]]
    images: list[np.ndarray]          # per combination: (n_i x d) embeddings of images with exactly those labels
    estimated: np.ndarray             # (k x d) centroids from the known (partial) labels; NaN rows: not estimable
    full: np.ndarray | None = None    # (k x d) centroids from the full labels; None where they are unknown


def combination_panel(
    title: str,
    image_vectors: np.ndarray,
    image_labels: list,
    known_positive: np.ndarray,
    labels,
    full_positive: np.ndarray | None = None,
    top: int = 6,
    max_images: int = 120,
    seed: int = 0,
) -> CentroidPanel:
    """The `top` most frequent label combinations among `image_labels` (the images' label lists), their
    images (at most `max_images` each, seeded), and each combination's centroid = mean of its labels'
    visual centroids, estimated from `known_positive` and, when given, from `full_positive`."""
    from collections import Counter

    from .centroids import centroid_matrix, combination_key, visual_centroids

    image_vectors = np.asarray(image_vectors, dtype=np.float32)
    keys = [combination_key(ls, labels) for ls in image_labels]
    counts = Counter(k for k in keys if k)
    chosen = [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], [labels.index[l] for l in kv[0]]))[:top]]
    rng = np.random.default_rng(seed)
    images = []
    for key in chosen:
        rows = np.array([i for i, k in enumerate(keys) if k == key])
        if len(rows) > max_images:
            rows = np.sort(rng.choice(rows, max_images, replace=False))
        images.append(image_vectors[rows])
    dim = image_vectors.shape[1]

    def centroids(positive):
        matrix, has = centroid_matrix(visual_centroids(image_vectors, positive, labels), labels, dim)
        out = np.full((len(chosen), dim), np.nan)
        for row, key in enumerate(chosen):
            used = [labels.index[l] for l in key if has[labels.index[l]]]
            if used:
                out[row] = matrix[used].mean(axis=0)
        return out

    full = None if full_positive is None else centroids(full_positive)
    return CentroidPanel(title, chosen, images, centroids(known_positive), full)


def _tsne(points: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = float(min(30.0, max(1.0, (len(points) - 1) / 3)))
    # one OpenMP thread: t-SNE's threads spin-wait, and on a CPU shared with another busy process a
    # 100-point fit took 42 s instead of 0.2 s; a few thousand points take seconds on one thread
    with threadpool_limits(limits=1):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)


def centroids_figure(path: str | Path, panels: list[CentroidPanel], seed: int = 0,
                     title: str = "Label combinations: images, estimated and full-label centroids (t-SNE)") -> Path:
    """One t-SNE panel per run: dots are images (one colour per combination), a triangle the centroid
    estimated from the known labels, a star the centroid from the full labels."""
    plt = _pyplot()
    drawable = [p for p in panels if sum(len(i) for i in p.images) + len(p.combinations) >= 3]
    if not drawable:
        return placeholder_figure(path, "too few images of any label combination to draw")
    cols = min(3, len(drawable))
    rows = -(-len(drawable) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 5.5 * rows), dpi=100, squeeze=False)
    cmap = plt.get_cmap("tab10")
    try:
        for ax in axes.ravel()[len(drawable):]:
            ax.axis("off")
        for ax, panel in zip(axes.ravel(), drawable):
            k = len(panel.combinations)
            estimated_ok = ~np.isnan(panel.estimated).any(axis=1)
            full_ok = np.zeros(k, bool) if panel.full is None else ~np.isnan(panel.full).any(axis=1)
            parts = [*panel.images, panel.estimated[estimated_ok]]
            if panel.full is not None:
                parts.append(panel.full[full_ok])
            xy = _tsne(np.concatenate([np.asarray(p, np.float32).reshape(len(p), -1) for p in parts if len(p)]), seed)
            bounds = np.cumsum([0, *[len(p) for p in parts]])
            for c in range(k):
                colour = cmap(c % cmap.N)
                pts = xy[bounds[c] : bounds[c + 1]]
                ax.scatter(pts[:, 0], pts[:, 1], s=6, color=colour, alpha=0.45, label=" + ".join(panel.combinations[c]))
            estimated_xy = xy[bounds[k] : bounds[k + 1]]
            full_xy = xy[bounds[k + 1] : bounds[k + 2]] if panel.full is not None else np.zeros((0, 2))
            for (x, y), c in zip(estimated_xy, np.flatnonzero(estimated_ok)):
                ax.scatter([x], [y], s=140, marker="^", color=cmap(c % cmap.N), edgecolors="black", linewidths=0.9)
            for (x, y), c in zip(full_xy, np.flatnonzero(full_ok)):
                ax.scatter([x], [y], s=200, marker="*", color=cmap(c % cmap.N), edgecolors="black", linewidths=0.9)
            ax.scatter([], [], s=100, marker="^", c="white", edgecolors="black", label="estimated centroid")
            if panel.full is not None:
                ax.scatter([], [], s=140, marker="*", c="white", edgecolors="black", label="centroid from full labels")
            ax.legend(loc="best", fontsize=7)
            ax.set_title(panel.title, fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(title, fontsize=11)
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)


def sweep_figure(
    path: str | Path,
    lines: dict[str, list[tuple]],
    x_label: str,
    y_label: str,
    title: str = "",
) -> Path:
    """One line per entry of `lines` ({label: [(x, mean, std or None), ...]}) with std error bars.

    Numeric x values are sorted along a numeric axis; any other x values share one categorical axis
    in order of first appearance.
    """
    plt = _pyplot()
    points = [p for series in lines.values() for p in series]
    numeric = all(isinstance(p[0], (int, float)) and not isinstance(p[0], bool) for p in points)
    categories: dict[str, int] = {}
    if not numeric:
        for p in points:
            categories.setdefault(str(p[0]), len(categories))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    try:
        for label, series in lines.items():
            series = sorted(series, key=lambda p: p[0]) if numeric else series
            xs = [p[0] if numeric else categories[str(p[0])] for p in series]
            ys = [p[1] for p in series]
            errors = [0.0 if p[2] is None or p[2] != p[2] else p[2] for p in series]
            ax.errorbar(xs, ys, yerr=errors, marker="o", markersize=4, capsize=3, label=label)
        if not numeric:
            ax.set_xticks(list(categories.values()), list(categories))
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        if title:
            ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)
