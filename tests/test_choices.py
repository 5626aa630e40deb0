"""Allowed values have one home: the tuples of pipeline/config.py, checked there only (before any work), or a
torch-free module beside the code that gives them meaning (noise kinds beside pipeline/method/perturb.py), which config
imports and checks them from.

The code that uses a value trusts it, with no check of its own. So every value config allows must
have its own behaviour where it is used (one added to config without its code would silently run
another value's branch), and no other module reads the tuples to check them again."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline import config
from pipeline.config import BACKENDS, INTEGRATE_SCALINGS, NOISE_KINDS, RESIZE_MODES, SHIFT_MODES, GenerateParams
from pipeline.data.labels import LabelSet
from pipeline.encoding.openai_clip import image_transform
from pipeline.evaluation.metrics import integrate
from pipeline.method.centroids import shift_offsets
from pipeline.method.perturb import sphere_noise

ROOT = Path(__file__).resolve().parents[1]
CHOICES = (
    "RESIZE_MODES",
    "ENGINES",
    "DEVICES",
    "BACKENDS",
    "SHOT_COUNTS",
    "NOISE_KINDS",
    "LABEL_RULES",
    "SHIFT_MODES",
    "INTEGRATE_SCALINGS",
)
HOMES = {
    "NOISE_KINDS": "pipeline/method/noise_kinds.py"
}  # a tuple config imports from beside its code; the rest are config's


def all_different(outputs: dict) -> list[tuple]:
    """Pairs of choices whose outputs are equal (there should be none)."""
    return [
        (a, b)
        for (a, x), (b, y) in itertools.combinations(outputs.items(), 2)
        if np.shape(x) == np.shape(y) and np.allclose(x, y)
    ]


def test_the_tuples_are_config_s_and_read_by_no_other_module():
    assert all(isinstance(getattr(config, name), tuple) for name in CHOICES)
    readers = {}
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        if path.relative_to(ROOT).as_posix() in ("pipeline/config.py", *HOMES.values()):
            continue
        nodes = list(ast.walk(ast.parse(path.read_text())))
        names = {n.id for n in nodes if isinstance(n, ast.Name)} | {
            n.attr for n in nodes if isinstance(n, ast.Attribute)
        }
        names |= {a.name for n in nodes if isinstance(n, ast.ImportFrom) for a in n.names}
        if names & set(CHOICES):
            readers[path.relative_to(ROOT).as_posix()] = sorted(names & set(CHOICES))
    assert readers == {}


def test_every_noise_kind_draws_its_own_noise():
    noise = {kind: sphere_noise((2000, 8), 2.0, kind, torch.Generator().manual_seed(0)).numpy() for kind in NOISE_KINDS}
    assert all_different(noise) == []


def test_every_integration_scaling_averages_differently():
    rng = np.random.default_rng(0)
    probabilities, other = rng.random((20, 3)) * 0.5, rng.normal(size=(20, 3)) * 4
    assert all_different({s: integrate(probabilities, other, s) for s in INTEGRATE_SCALINGS}) == []


def test_every_resize_mode_preprocesses_differently():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 100, 3), dtype=np.uint8))
    assert all_different({mode: image_transform(32, mode)(image).numpy() for mode in RESIZE_MODES}) == []


def test_every_shift_mode_shifts_differently():
    rng = np.random.default_rng(0)
    labels = LabelSet.from_names(["a", "b", "c"])
    combos = [["a"], ["b"], ["a", "b"], ["c"], ["b", "c"]]
    text_labels = [combos[i % len(combos)] for i in range(40)]
    image_labels = [combos[i % len(combos)] for i in range(30)]
    texts = rng.normal(size=(40, 4)).astype(np.float32)
    images = (rng.normal(size=(30, 4)) + 3).astype(np.float32)
    known = labels.multi_hot(image_labels)
    shifts = {mode: shift_offsets(mode, texts, text_labels, images, known, labels) for mode in SHIFT_MODES}
    assert all_different(shifts) == []


def test_every_backend_builds_its_own_client():
    from pipeline.generate.backends import make_backend

    backends = [make_backend(GenerateParams(backend=name, model="smollm2", n_threads=1)) for name in BACKENDS]
    try:
        assert len({type(b) for b in backends}) == len(BACKENDS)
    finally:
        for backend in backends:
            backend.close()
