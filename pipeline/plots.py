"""Pictures written by stages (matplotlib, Agg backend: no display needed).

`tsne_figure` draws the paper's Fig. 7 picture: image embeddings coloured by label (an
image's first known positive label; images with none are grey), the visual centroid of
each label, and the text centroid of each combination before and after the shift, all
embedded together by t-SNE (scikit-learn). `placeholder_figure` writes a small image
saying why there is no picture (DVC needs a declared plot to exist).
"""

from __future__ import annotations

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


def tsne_figure(
    path: str | Path,
    image_vectors: np.ndarray,
    image_label: list[str | None],
    label_names: list[str],
    visual_centroids: np.ndarray,
    visual_names: list[str],
    text_centroids: np.ndarray,
    shifted_text_centroids: np.ndarray,
    seed: int = 0,
    max_images: int = 1500,
    max_combinations: int = 300,
    title: str = "t-SNE of CLIP embeddings",
) -> Path:
    """Embed images, visual centroids and (shifted) text centroids jointly with t-SNE and plot them.

    `image_label` gives each image's colour label (None: grey); images and combinations beyond
    `max_images` / `max_combinations` are subsampled (seeded) to keep t-SNE fast.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    image_vectors = np.asarray(image_vectors, dtype=np.float32)
    if len(image_vectors) > max_images:
        keep = np.sort(rng.choice(len(image_vectors), max_images, replace=False))
        image_vectors, image_label = image_vectors[keep], [image_label[i] for i in keep]
    text_centroids = np.asarray(text_centroids, dtype=np.float32)
    shifted_text_centroids = np.asarray(shifted_text_centroids, dtype=np.float32)
    if len(text_centroids) > max_combinations:
        keep = np.sort(rng.choice(len(text_centroids), max_combinations, replace=False))
        text_centroids, shifted_text_centroids = text_centroids[keep], shifted_text_centroids[keep]
    visual_centroids = np.asarray(visual_centroids, dtype=np.float32)
    parts = [image_vectors, visual_centroids, text_centroids, shifted_text_centroids]
    sizes = [len(p) for p in parts]
    points = np.concatenate([p.reshape(len(p), -1) for p in parts if len(p)]) if sum(sizes) else np.zeros((0, 2))
    if len(points) < 3:
        return placeholder_figure(path, f"too few points for t-SNE ({len(points)})")
    perplexity = float(min(30.0, max(1.0, (len(points) - 1) / 3)))
    # one OpenMP thread: t-SNE's threads spin-wait, and on a CPU shared with another busy process a
    # 100-point fit took 42 s instead of 0.2 s; a few thousand points take seconds on one thread
    with threadpool_limits(limits=1):
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)
    bounds = np.cumsum([0, *sizes])
    images_xy, visual_xy, text_xy, shifted_xy = (xy[bounds[i] : bounds[i + 1]] for i in range(4))

    plt = _pyplot()
    cmap = plt.get_cmap("tab20", max(len(label_names), 1))
    colour = {name: cmap(i % cmap.N) for i, name in enumerate(label_names)}
    fig, ax = plt.subplots(figsize=(8, 7), dpi=100)
    try:
        grey = [i for i, l in enumerate(image_label) if l is None]
        if grey:
            ax.scatter(images_xy[grey, 0], images_xy[grey, 1], s=4, c="lightgrey", label="image (no known label)")
        for name in label_names:
            rows = [i for i, l in enumerate(image_label) if l == name]
            if rows:
                ax.scatter(images_xy[rows, 0], images_xy[rows, 1], s=6, color=colour[name], alpha=0.6)
        if len(text_xy):
            ax.scatter(text_xy[:, 0], text_xy[:, 1], s=14, marker="x", c="black", alpha=0.5, label="text centroid")
            ax.scatter(shifted_xy[:, 0], shifted_xy[:, 1], s=16, marker="^", c="tab:red", alpha=0.6,
                       label="shifted text centroid")
        for (x, y), name in zip(visual_xy, visual_names):
            ax.scatter([x], [y], s=160, marker="*", color=colour.get(name, "black"), edgecolors="black", linewidths=0.8)
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.scatter([], [], s=120, marker="*", c="white", edgecolors="black", label="visual centroid")
        ax.legend(loc="best", fontsize=7)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
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
