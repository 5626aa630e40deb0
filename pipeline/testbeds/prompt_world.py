"""A synthetic world with a learnable answer for the prompt methods (tests/test_prompt_methods.py,
benchmarks/peer_defaults.py).

Each label c has a direction u_c (orthonormal in the tiny CLIP's 64-d joint space; the tiny random
CLIP's text encoder can turn a class-specific context into a feature within cos ~0.85 of any
direction). An image with labels C has dense features over a 2 x 2 grid where, for each label of C,
one location holds u_c (plus a little noise) and every other location is a random unit vector; its
global feature is the sum of its labels' directions plus noise. A text with labels C has token-level
features where one token per label holds u_c; its end-token feature is the sum. Prompts that learn
the directions score the images well; untrained ones do not.

The tiny random CLIP embeds label names as nearly the same feature (cosine 0.99 between labels with a
shared context), unlike real CLIP, so the methods are trained here with class-specific contexts.
"""

from __future__ import annotations

import numpy as np
import torch

NAMES = ["cat", "dog", "car", "tree", "boat", "bird"]
DIM, LOCATIONS = 64, 4


def tiny_clip_model(seed: int = 0):
    from clip.model import CLIP

    torch.manual_seed(seed)
    return CLIP(64, 64, (1, 1, 1, 1), 8, None, 77, 49408, 64, 1, 1)


class PromptWorld:
    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.directions = torch.linalg.qr(torch.randn(DIM, len(NAMES), generator=self.generator))[0].T

    def _label_sets(self, n: int) -> np.ndarray:
        targets = np.zeros((n, len(NAMES)), np.float32)
        for row in targets:
            row[self.rng.choice(len(NAMES), self.rng.integers(1, 3), replace=False)] = 1
        return targets

    def images(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(dense (n, 4, 64), global (n, 64), targets (n, labels))."""
        targets = self._label_sets(n)
        dense = torch.nn.functional.normalize(torch.randn(n, LOCATIONS, DIM, generator=self.generator), dim=-1)
        for i, row in enumerate(targets):
            labels = np.flatnonzero(row)
            for c, where in zip(labels, self.rng.choice(LOCATIONS, len(labels), replace=False)):
                dense[i, where] = self.directions[c] + 0.05 * torch.randn(DIM, generator=self.generator)
        targets = torch.from_numpy(targets)
        global_ = targets @ self.directions + 0.1 * torch.randn(n, DIM, generator=self.generator)
        return dense, global_, targets

    def texts(self, n: int, length: int = 6) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """(end-token features (n, 64), token features [(length, 64)] * n, targets (n, labels))."""
        targets = self._label_sets(n)
        rows = []
        for row in targets:
            tokens = torch.nn.functional.normalize(torch.randn(length, DIM, generator=self.generator), dim=-1)
            labels = np.flatnonzero(row)
            for c, where in zip(labels, self.rng.choice(np.arange(1, length - 1), len(labels), replace=False)):
                tokens[where] = self.directions[c]
            rows.append(tokens)
        targets = torch.from_numpy(targets)
        return targets @ self.directions + 0.1 * torch.randn(n, DIM, generator=self.generator), rows, targets

    def known(self, targets: torch.Tensor, proportion: float) -> torch.Tensor:
        return torch.from_numpy((self.rng.random(tuple(targets.shape)) < proportion).astype(np.float32))

    def single_label_texts(
        self, per_label: int, length: int = 6
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Template-like texts: `per_label` texts of each label alone (one token holds u_c), as TaI-DPT's
        template sentences are single-label texts of one class."""
        rows, targets = [], np.zeros((per_label * len(NAMES), len(NAMES)), np.float32)
        for i in range(len(targets)):
            c = i // per_label
            targets[i, c] = 1
            tokens = torch.nn.functional.normalize(torch.randn(length, DIM, generator=self.generator), dim=-1)
            tokens[int(self.rng.integers(1, length - 1))] = self.directions[c]
            rows.append(tokens)
        targets = torch.from_numpy(targets)
        return targets @ self.directions + 0.1 * torch.randn(len(rows), DIM, generator=self.generator), rows, targets
