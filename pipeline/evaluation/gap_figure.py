"""The modality gap the adapter bridges, as a picture (reports/modality_gap.png, written by evaluate).

For a few labels (the most frequent in the evaluation split), CLIP text embeddings of texts about that label
alone and image embeddings of images showing it, projected together onto two principal components; left the
texts as trained on before perturbation, right after (train.radius, train.noise: the noise that lets texts
stand in for images). Texts and images of one label sit apart (the gap); the noise should spread the texts
over where the images are. The caption states the projection, its explained variance and the sample.
The PNG's text chunk holds the same facts (`pipeline.evaluation.figures.figure_content`), so a test reads what is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.method.perturb import perturb

from .figures import _pyplot, _save, placeholder_figure

MAX_LABELS = 4
PER_LABEL = 40  # texts and images drawn per label


@dataclass
class GapSample:
    labels: list[str]
    texts: list[np.ndarray]  # per label: (k x d) embeddings of texts about that label alone (or, failing that, with it)
    images: list[np.ndarray]  # per label: (m x d) embeddings of images showing it (alone where there are enough)


def _pick(rows: np.ndarray, alone: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Up to PER_LABEL rows, those where the label is alone first."""
    first, rest = rows[alone[rows]], rows[~alone[rows]]
    ordered = np.r_[rng.permutation(first), rng.permutation(rest)].astype(np.int64)
    return ordered[:PER_LABEL]


def gap_sample(
    names: tuple[str, ...],
    text_x: np.ndarray,
    text_targets: np.ndarray,
    image_x: np.ndarray,
    image_targets: np.ndarray,
    seed: int,
) -> GapSample:
    """The MAX_LABELS labels with most evaluation images that also have a text, and a seeded sample of each."""
    rng = np.random.default_rng(seed)
    text_targets, image_targets = np.asarray(text_targets) > 0, np.asarray(image_targets) > 0
    frequent = [
        c
        for c in np.argsort(-image_targets.sum(0), kind="stable")
        if image_targets[:, c].any() and text_targets[:, c].any()
    ][:MAX_LABELS]
    text_alone, image_alone = text_targets.sum(1) == 1, image_targets.sum(1) == 1
    sample = GapSample([], [], [])
    for c in frequent:
        sample.labels.append(names[c])
        sample.texts.append(text_x[_pick(np.flatnonzero(text_targets[:, c]), text_alone, rng)])
        sample.images.append(image_x[_pick(np.flatnonzero(image_targets[:, c]), image_alone, rng)])
    return sample


def _pca(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, 2 x d components, explained variance ratio of each)."""
    mean = points.mean(0)
    _, s, vt = np.linalg.svd(points - mean, full_matrices=False)
    variance = s**2
    return mean, vt[:2], variance[:2] / max(variance.sum(), 1e-12)


def gap_figure(
    path: str | Path, sample: GapSample, radius: float, noise: str, normalize: bool, seed: int, split: str
) -> Path:
    """Two panels (before / after perturbation) sharing one PCA fitted on every point drawn."""
    if not sample.labels:
        return placeholder_figure(path, "no label has both a text and an evaluation image: no modality-gap picture")
    generator = torch.Generator().manual_seed(seed)
    prepare = (lambda x: x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)) if normalize else (lambda x: x)
    texts = [prepare(t.astype(np.float64)) for t in sample.texts]
    images = [prepare(i.astype(np.float64)) for i in sample.images]
    noised = [perturb(torch.from_numpy(t), radius, noise, generator=generator).numpy() for t in texts]
    mean, axes, explained = _pca(np.concatenate([*texts, *noised, *images]))
    project = lambda x: (x - mean) @ axes.T
    plt = _pyplot()
    fig, panels = plt.subplots(1, 2, figsize=(9, 4.6), dpi=90, sharex=True, sharey=True)
    colours = plt.get_cmap("tab10")
    try:
        for ax, (title, shown) in zip(
            panels, (("texts before perturbation", texts), (f"after perturbation ({noise}, radius {radius:g})", noised))
        ):
            for k, label in enumerate(sample.labels):
                t, i = project(shown[k]), project(images[k])
                ax.scatter(
                    i[:, 0],
                    i[:, 1],
                    s=14,
                    color=colours(k),
                    alpha=0.55,
                    marker="o",
                    label=f"{label}: images",
                    gid=f"images {k}",
                )
                ax.scatter(
                    t[:, 0], t[:, 1], s=22, color=colours(k), marker="x", label=f"{label}: texts", gid=f"texts {k}"
                )
            ax.set_title(title, fontsize=10)
            ax.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)")
            ax.grid(True, alpha=0.3)
        panels[0].set_ylabel(f"PC2 ({explained[1]:.0%} of variance)")
        panels[1].legend(fontsize=7, loc="best")
        counts = ", ".join(f"{label} {len(t)}/{len(i)}" for label, t, i in zip(sample.labels, texts, images))
        caption = (
            f"CLIP text (x) and image (o) embeddings{' (L2-normalised)' if normalize else ''}, projected by "
            f"PCA fitted on every point shown (both panels). Sample (texts/images per label, seed {seed}): "
            f"{counts}; images from split '{split}', texts about the label alone where there are enough."
        )
        fig.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize=7, wrap=True)
        fig.suptitle("The modality gap: texts the adapter trains on vs the images it scores", fontsize=11)
        fig.tight_layout(rect=(0, 0.08, 1, 0.95))
        content = {
            "labels": sample.labels,
            "texts": [len(t) for t in texts],
            "images": [len(i) for i in images],
            "projection": "PCA",
            "explained_variance": [float(e) for e in explained],
            "radius": radius,
            "noise": noise,
            "caption": caption,
        }
        return _save(fig, path, content)
    finally:
        plt.close(fig)
