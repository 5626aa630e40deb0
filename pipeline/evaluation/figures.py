"""Pictures written by stages (matplotlib, Agg backend: no display needed).

`centroids_figure` draws the paper's Fig. 7 / Fig. 10: for the most frequent label
combinations, the embeddings of their images, the centroid estimated from the partial
labels (eq. 9's target: the mean of the combination's labels' visual centroids from KNOWN
positives) and the same centroid computed from the full labels, embedded together by t-SNE
(scikit-learn); one panel per run (e.g. per known proportion). `combination_panel` builds
one panel's data from a run's arrays. `placeholder_figure` writes a small image saying why
there is no picture (DVC needs a declared plot to exist). Each PNG says what it shows in a text chunk,
counted from the drawn points (`figure_content`), so a test or a reader checks the picture's content,
not only that it is a PNG.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.io import atomic_path
from pipeline.method.centroids import centroid_matrix, combination_key, visual_centroids


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path, content: dict | None = None) -> Path:
    """`content` (what the figure shows, as JSON) goes into the PNG's text chunk CONTENT_KEY."""
    import json

    metadata = {CONTENT_KEY: json.dumps(content)} if content is not None else None
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi, metadata=metadata)
    return Path(path)


def placeholder_figure(path: str | Path, message: str) -> Path:
    """A small PNG with `message` centred on it (its content: {"placeholder": message})."""
    plt = _pyplot()
    fig = plt.figure(figsize=(4, 1.5), dpi=80)
    fig.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=9)
    try:
        return _save(fig, path, {"placeholder": message})
    finally:
        plt.close(fig)


@dataclass
class CentroidPanel:
    """One panel: the top label combinations of one run (k combinations, d dims)."""

    title: str
    combinations: list[tuple[str, ...]]
    images: list[np.ndarray]  # per combination: (n_i x d) embeddings of images with exactly those labels
    estimated: np.ndarray  # (k x d) centroids from the known (partial) labels; NaN rows: not estimable
    full: np.ndarray | None = None  # (k x d) centroids from the full labels; None where they are unknown


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


CONTENT_KEY = "tai:content"  # the PNG text chunk that says what a figure shows (`figure_content`)


def centroids_figure(
    path: str | Path,
    panels: list[CentroidPanel],
    seed: int = 0,
    title: str = "Label combinations: images, estimated and full-label centroids (t-SNE)",
) -> Path:
    """One t-SNE panel per run: dots are images (one colour per combination), a triangle the centroid
    estimated from the known labels, a star the centroid from the full labels. The PNG carries what it
    shows, counted from the drawn points (`figure_content`)."""
    plt = _pyplot()
    drawable = [p for p in panels if sum(len(i) for i in p.images) + len(p.combinations) >= 3]
    if not drawable:
        return placeholder_figure(path, "too few images of any label combination to draw")
    fig = draw_centroids(drawable, seed, title)
    try:
        return _save(fig, path, {"panels": drawn_content(fig)})
    finally:
        plt.close(fig)


def draw_centroids(panels: list[CentroidPanel], seed: int = 0, title: str = ""):
    """The figure of `centroids_figure` (matplotlib; the caller closes it). Every point set is a scatter
    whose gid says what it is: `images <c>` (combination c's images), `estimated`, `full`."""
    plt = _pyplot()
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 5.5 * rows), dpi=100, squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    for ax, panel in zip(axes.ravel(), panels):
        k = len(panel.combinations)
        estimated_ok = ~np.isnan(panel.estimated).any(axis=1)
        full_ok = np.zeros(k, bool) if panel.full is None else ~np.isnan(panel.full).any(axis=1)
        parts = [*panel.images, panel.estimated[estimated_ok]]
        if panel.full is not None:
            parts.append(panel.full[full_ok])
        xy = _tsne(np.concatenate([np.asarray(p, np.float32).reshape(len(p), -1) for p in parts if len(p)]), seed)
        bounds = np.cumsum([0, *[len(p) for p in parts]])
        for c in range(k):
            pts = xy[bounds[c] : bounds[c + 1]]
            ax.scatter(
                pts[:, 0],
                pts[:, 1],
                s=6,
                color=cmap(c % cmap.N),
                alpha=0.45,
                label=" + ".join(panel.combinations[c]),
                gid=f"images {c}",
            )
        estimated_xy = xy[bounds[k] : bounds[k + 1]]
        full_xy = xy[bounds[k + 1] : bounds[k + 2]] if panel.full is not None else np.zeros((0, 2))
        colours = [cmap(c % cmap.N) for c in range(k)]
        ax.scatter(
            estimated_xy[:, 0],
            estimated_xy[:, 1],
            s=140,
            marker="^",
            gid="estimated",
            linewidths=0.9,
            color=[colours[c] for c in np.flatnonzero(estimated_ok)],
            edgecolors="black",
        )
        ax.scatter(
            full_xy[:, 0],
            full_xy[:, 1],
            s=200,
            marker="*",
            gid="full",
            linewidths=0.9,
            color=[colours[c] for c in np.flatnonzero(full_ok)],
            edgecolors="black",
        )
        ax.scatter([], [], s=100, marker="^", c="white", edgecolors="black", label="estimated centroid")
        if panel.full is not None:
            ax.scatter([], [], s=140, marker="*", c="white", edgecolors="black", label="centroid from full labels")
        ax.legend(loc="best", fontsize=7)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def drawn_content(fig) -> list[dict]:
    """Per panel of a `draw_centroids` figure, read from its drawn points: title, the combinations in the
    legend, points per combination, estimated and full-label centroids drawn."""
    content = []
    for ax in fig.axes:
        drawn = {c.get_gid(): len(c.get_offsets()) for c in ax.collections if c.get_gid()}
        if not drawn:
            continue
        k = sum(gid.startswith("images ") for gid in drawn)
        legend = [t.get_text() for t in ax.get_legend().get_texts()][:k]
        content.append(
            {
                "title": ax.get_title(),
                "combinations": legend,
                "images": [drawn[f"images {c}"] for c in range(k)],
                "estimated": drawn.get("estimated", 0),
                "full": drawn.get("full", 0),
            }
        )
    return content


def figure_content(path: str | Path) -> dict:
    """What a figure written here shows, from its PNG text chunk: {"panels": [...]} for the centroids
    figure (`drawn_content`), {"placeholder": message} for a placeholder."""
    import json

    from PIL import Image

    with Image.open(path) as image:
        return json.loads(image.text[CONTENT_KEY])


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
