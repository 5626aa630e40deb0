"""Synthetic CLIP-like worlds whose modality gap is known, and one way to train and score on them.

For claims about the method that real embeddings cannot settle (which shift estimate recovers the
gap, which noise helps): the method tests (tests/test_partial.py, tests/test_fewshot.py,
tests/test_centroids.py) and benchmarks/ablations.py run the same worlds, so a claim in the docs and
the test that guards it run the same code. Not used by any stage.

A text about labels C is

    mean(a_l, l in C) + m + noise

and an image with labels C is

    mean(a_l + o_l, l in C) + m + g + o_C + noise

with unit label prototypes a_l, a common centre m (`centre`: CLIP embeddings of either modality sit
far from the origin, so a shift towards the images does not move the training data away from a
centred origin, which would make the adapter's optimisation harder for a reason CLIP does not have),
a common gap g (`gap`), per-label gaps o_l (`label_gap`) that add up, and a gap o_C per combination
(`combination_gap`) that does not decompose into labels. Each part is a random direction scaled to
the given norm, so how far each shift estimate (`pipeline.method.centroids`) lands from the images is known:

- global gap only (WORLDS' first): the global and the per-label estimate are exact (a label's visual
  and text centroids average the prototypes over the same combinations, which cancel). Eq. 9
  (`partial.shift: combination`) is biased even here: a label's visual centroid averages the images
  of every combination that contains it, while the text centroid it is compared with is one
  combination's.
- per-label gaps that add up: no estimate is exact. The per-label one comes closest, but a label's
  gap estimate mixes in the gaps of the labels it co-occurs with; eq. 9 adds its prototype bias.
- a gap per combination: no estimate sees o_C.

(Measured on 20,000 texts and images per world, noise 0.05: the mean distance between a combination's
shifted text centroid and its image centroid is 0.02 for global and label in the first world, 0.33
for eq. 9; 0.50 / 0.58 / 0.82 for label / eq. 9 / global in the second; about 1.4 for all in the
third; no shift leaves about 3.)
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.config import TrainParams
from pipeline.data.labels import LabelSet
from pipeline.data.partial_labels import mask_arrays, sample_mask
from pipeline.evaluation.metrics import mean_ap
from pipeline.method.centroids import shift_offsets
from pipeline.method.train import TrainingSet, train_adapter


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (synthetic prototypes and gap directions)."""
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class World:
    """Texts and images of random label combinations (1..max_labels of n_labels) across a known gap."""

    def __init__(
        self,
        seed: int,
        n_labels: int = 6,
        dim: int = 32,
        gap: float = 3.0,
        label_gap: float = 1.5,
        combination_gap: float = 0.0,
        noise: float = 0.3,
        max_labels: int = 3,
        centre: float = 0.0,
    ):
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.labels = LabelSet.from_names([f"l{i}" for i in range(n_labels)])
        self.dim = dim
        self.a = unit_rows(self.rng.normal(size=(n_labels, dim)))
        self.g = gap * unit_rows(self.rng.normal(size=dim))
        self.o = label_gap * unit_rows(self.rng.normal(size=(n_labels, dim)))
        self.combination_gap = combination_gap
        self.m = centre * unit_rows(np.random.default_rng([seed, 104729]).normal(size=dim))
        self.noise = noise
        self.max_labels = max_labels
        self._combination_gaps: dict[tuple[int, ...], np.ndarray] = {}

    def _combinations(self, n: int) -> list[list[int]]:
        n_labels = len(self.labels)
        return [
            sorted(self.rng.choice(n_labels, self.rng.integers(1, self.max_labels + 1), replace=False).tolist())
            for _ in range(n)
        ]

    def _gap_of(self, c: list[int]) -> np.ndarray:
        key = tuple(c)
        if key not in self._combination_gaps:  # seeded by the combination: the same in every draw
            rng = np.random.default_rng([self.seed, 7919, *key])
            self._combination_gaps[key] = self.combination_gap * unit_rows(rng.normal(size=self.dim))
        return self._combination_gaps[key]

    def _names(self, cs: list[list[int]]) -> list[list[str]]:
        return [[self.labels.names[i] for i in c] for c in cs]

    def texts(self, n: int) -> tuple[np.ndarray, list[list[str]]]:
        cs = self._combinations(n)
        x = np.stack([self.a[c].mean(0) for c in cs]) + self.m + self.rng.normal(scale=self.noise, size=(n, self.dim))
        return x.astype(np.float32), self._names(cs)

    def images(self, n: int) -> tuple[np.ndarray, list[list[str]]]:
        cs = self._combinations(n)
        x = np.stack([(self.a[c] + self.o[c]).mean(0) + self.m + self.g + self._gap_of(c) for c in cs])
        x = x + self.rng.normal(scale=self.noise, size=x.shape)
        return x.astype(np.float32), self._names(cs)


# The three worlds of benchmarks/ablations.py and the method tests: which part of the gap dominates.
WORLDS = {
    "global gap only": dict(gap=3.0, label_gap=0.0, combination_gap=0.0),
    "per-label gaps (add up)": dict(gap=3.0, label_gap=1.5, combination_gap=0.0),
    "per-combination gaps": dict(gap=3.0, label_gap=0.0, combination_gap=1.5),
}


def train_params(**changes) -> TrainParams:
    base = dict(
        seed=0,
        epochs=6,
        batch_size=64,
        max_lr=3e-3,
        weight_decay=0.01,
        hidden_dim=64,
        dropout=0.1,
        radius=1.0,
        noise="surface",
        normalize=False,
        device="cpu",
    )
    return TrainParams(**{**base, **changes})


def score(model, x: np.ndarray, label_lists, labels: LabelSet) -> float:
    """Test mAP of an adapter on image embeddings."""
    with torch.no_grad():
        scores = torch.sigmoid(model(torch.from_numpy(np.asarray(x, dtype=np.float32)))).numpy()
    return mean_ap(scores, labels.multi_hot(label_lists))


def known_positives(world: World, image_labels, p: float, seed: int) -> np.ndarray:
    """The pipeline's seeded mask at known proportion p, as a 0/1 (images x labels) array of known positives."""
    import polars as pl

    manifest = pl.DataFrame({"image_id": [f"i{j}" for j in range(len(image_labels))], "labels": image_labels})
    known_positive, _ = mask_arrays(
        sample_mask(manifest, world.labels, p, seed), world.labels, manifest["image_id"].to_list()
    )
    return known_positive


def partial_label_map(
    world: World,
    shift: str,
    seed: int,
    p: float = 0.5,
    n_texts: int = 1500,
    n_images: int = 500,
    n_test: int = 600,
    **train_changes,
) -> float:
    """Test mAP of the partial-label method with `shift` (texts only, partial.image_weight 0): offsets
    estimated from a mask at known proportion p through pipeline.method.centroids, then shifted perturbation."""
    text_x, text_labels = world.texts(n_texts)
    image_x, image_labels = world.images(n_images)
    test_x, test_labels = world.images(n_test)
    known = known_positives(world, image_labels, p, seed)
    offsets = shift_offsets(shift, text_x, text_labels, image_x, known, world.labels)
    data = TrainingSet(
        torch.from_numpy(text_x),
        torch.from_numpy(world.labels.multi_hot(text_labels)),
        train_changes.get("radius", 1.0),
        text_offsets=torch.from_numpy(offsets),
    )
    model, _ = train_adapter(data, train_params(seed=seed, **train_changes))
    return score(model, test_x, test_labels, world.labels)
