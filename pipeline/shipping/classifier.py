"""A trained classifier ready to use: its CLIP, its adapter and its thresholds, from an exported folder
(`tai export`, no pickle) or the workspace's adapter bundle.

    from pipeline import load_classifier
    classifier = load_classifier("exported/")           # or "artifacts/model/adapter.pt"
    classifier.predict(["a.jpg", "b.jpg"], top_k=3)     # [["dog", "person"], ["car"]]
    classifier.scores(classifier.transform(image)[None])  # (1, n_labels) probabilities

The CLIP it loads must be the one the adapter was trained on: its identity (`ClipEncoder.identity`) is
checked against the one recorded at training, so a changed checkpoint file is refused, not used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.encoding.decode import as_rgb, decode_image
from pipeline.encoding.image_runtime import image_encoder
from pipeline.encoding.load import load_clip
from pipeline.encoding.openai_clip import ClipEncoder, ClipError
from pipeline.errors import UserError
from pipeline.evaluation.thresholds import (
    DEFAULT_THRESHOLD,  # a label's threshold when nothing (a file, --threshold, the model) names one
)
from pipeline.method.adapter import AdapterBundle

from .export_format import read_export


class ClassifierError(UserError, ValueError):
    """A classifier, CLIP or threshold file that does not fit together."""


def read_thresholds(path: str | Path, labels: tuple[str, ...]) -> dict[str, float]:
    """Per-label thresholds from JSON ({"cat": 0.3, ...}) or CSV/TSV (columns label, threshold)."""
    path = Path(path)
    if not path.is_file():
        raise ClassifierError(
            f"{path}: no threshold file there (JSON {{label: threshold}}, or CSV with columns label,threshold)"
        )
    try:
        if path.suffix.lower() == ".json":
            table = json.loads(path.read_text())
            if not isinstance(table, dict):
                raise ValueError("not an object of label: threshold")
        else:
            import polars as pl

            frame = pl.read_csv(path, separator="\t" if path.suffix.lower() == ".tsv" else ",")
            table = dict(zip(frame["label"].cast(str).to_list(), frame["threshold"].to_list()))
        thresholds = {str(k): float(v) for k, v in table.items()}
    except Exception as e:  # noqa: BLE001 - JSON, CSV and type errors all mean the same to the user
        raise ClassifierError(
            f"{path}: cannot read thresholds ({type(e).__name__}: {e}); write JSON "
            '{"label": 0.3} or a CSV with columns label,threshold'
        ) from None
    unknown = sorted(set(thresholds) - set(labels))
    if unknown:
        raise ClassifierError(
            f"{path}: unknown label(s) {unknown[:10]}; the classifier's labels are {list(labels)[:30]}"
        )
    bad = {k: v for k, v in thresholds.items() if not 0 <= v <= 1}
    if bad:
        raise ClassifierError(f"{path}: thresholds must lie in [0, 1], got {bad}")
    return thresholds


def threshold_vector(labels: tuple[str, ...], default: float, per_label: dict[str, float] | None = None) -> np.ndarray:
    """One threshold per label: `per_label` where it names the label, else `default`."""
    per_label = per_label or {}
    return np.array([per_label.get(name, default) for name in labels], dtype=np.float64)


def select_labels(
    probabilities: np.ndarray, labels: tuple[str, ...], thresholds: np.ndarray, top_k: int | None = None
) -> list[list[str]]:
    """Per row: the labels at or above their threshold, most likely first, at most `top_k` of them."""
    names = np.array(labels, dtype=object)
    chosen = []
    for row in np.atleast_2d(probabilities):
        order = np.argsort(-row, kind="stable")
        kept = order[row[order] >= thresholds[order]]
        chosen.append(names[kept[:top_k] if top_k is not None else kept].tolist())
    return chosen


@dataclass
class Classifier:
    """CLIP image encoder + adapter + thresholds; `scores` takes preprocessed pixels, `predict` images."""

    bundle: AdapterBundle
    encoder: ClipEncoder
    thresholds: np.ndarray  # one per label

    @property
    def labels(self) -> tuple[str, ...]:
        return self.bundle.labels

    @property
    def transform(self):
        """PIL image -> the pixels `scores` takes (the resolution, resize rule and normalisation of training)."""
        return self.encoder.transform(self.bundle.image_resolution, self.bundle.resize)

    def scores(self, pixels: torch.Tensor) -> np.ndarray:
        """(n, 3, r, r) preprocessed pixels -> (n, n_labels) probabilities (float64)."""
        embeddings = image_encoder(self.encoder)(pixels, self.bundle.image_resolution)
        return self.bundle.scores(torch.from_numpy(embeddings)).numpy()

    def predict(
        self, images, threshold: float | None = None, top_k: int | None = None, batch_size: int = 32
    ) -> list[list[str]]:
        """Labels of each image (a path or a PIL image): those at or above their threshold (`threshold`
        for all labels when given, else the classifier's own), most likely first, at most `top_k`."""
        thresholds = self.thresholds if threshold is None else threshold_vector(self.labels, threshold)
        transform, chosen = self.transform, []
        for start in range(0, len(images), batch_size):
            pixels = torch.stack([_pixels(image, transform) for image in images[start : start + batch_size]])
            chosen += select_labels(self.scores(pixels), self.labels, thresholds, top_k)
        return chosen


def _pixels(image, transform) -> torch.Tensor:
    """A PIL image or an image file, decoded as the encode stages decode (`pipeline.encoding.decode`)."""
    if isinstance(image, Image.Image):
        return transform(as_rgb(image))
    pixels, why = decode_image(str(image), transform)
    if pixels is None:
        raise ClassifierError(f"{image}: cannot read it as an image ({why})")
    return pixels


def load_bundle(path: str | Path) -> tuple[AdapterBundle, dict[str, float]]:
    """(adapter, its per-label thresholds) from an exported folder (`pipeline.shipping.export`, no pickle) or an
    adapter bundle file of the workspace (thresholds: those train chose on held-out labelled images, if any)."""
    path = Path(path)
    if path.is_dir():
        return read_export(path)
    bundle = AdapterBundle.load(path)
    return bundle, bundle.threshold_table()


def load_encoder(bundle: AdapterBundle, device: str = "auto", clip_model: str | None = None) -> ClipEncoder:
    """The CLIP the adapter was trained on (`clip_model` overrides where to find it), identity checked, in the
    precision its embeddings were encoded in."""
    try:
        encoder = load_clip(clip_model or bundle.clip_model, device, bundle.precision)
    except ClipError as e:
        if clip_model:
            raise
        raise ClassifierError(
            f"{e}; if this classifier's CLIP ({bundle.clip_identity or bundle.clip_model}) is "
            "elsewhere on this machine, point --clip-model (load_classifier's clip_model) at it"
        ) from None
    if bundle.clip_identity is not None and encoder.identity != bundle.clip_identity:
        raise ClassifierError(
            f"the CLIP at {clip_model or bundle.clip_model!r} is {encoder.identity}, but the adapter was trained on "
            f"{bundle.clip_identity}: point --clip-model at the checkpoint it was trained with"
        )
    return encoder


def load_classifier(
    path: str | Path, device: str = "auto", clip_model: str | None = None, threshold: float = DEFAULT_THRESHOLD
) -> Classifier:
    """A ready classifier from an exported folder or an adapter bundle; labels without a threshold of
    their own (recorded by `tai export --thresholds`) use `threshold`."""
    bundle, per_label = load_bundle(path)
    return Classifier(
        bundle, load_encoder(bundle, device, clip_model), threshold_vector(bundle.labels, threshold, per_label)
    )
