"""Noise on a hypersphere: the random perturbation that lets text stand in for images.

Three kinds (`train.noise`, `fewshot.noise`, `partial.image_noise`; their names in `pipeline.method.noise_kinds`, which
config checks against):

- surface: norm exactly `radius`, in a uniformly random direction (the paper's text noise).
- interior: norm uniform in [0, radius], in a uniformly random direction (the paper's
  "inside a hypersphere": many samples near the centre, which is why Fig. 6a finds it
  worse than surface noise for texts; the paper's image noise in eq. 6).
- ball: uniform by volume inside the ball (norm radius * u**(1/d)). In high dimension the
  volume sits at the surface: at d = 1024 every sample has norm > 0.99 radius, so it is
  nearly surface noise. Ours, for comparison.

Shifted perturbation (partial labels) first moves each text by its offset.
"""

from __future__ import annotations

import torch

from pipeline.encoding.vectors import normalize


def sphere_noise(
    shape: tuple[int, ...], radius: float, kind: str = "surface", generator=None, device=None
) -> torch.Tensor:
    """Noise of `kind` surface, interior or ball (see above) in the last dimension of `shape`."""
    # drawn on the CPU generator, then moved: the same seed gives the same noise on any device
    direction = torch.randn(shape, generator=generator).to(device)
    direction = normalize(direction)
    if kind == "surface":
        return radius * direction
    u = torch.rand((*shape[:-1], 1), generator=generator).to(device)
    if kind == "interior":
        return radius * u * direction
    return radius * u.pow(1.0 / shape[-1]) * direction  # ball


def perturb(
    x: torch.Tensor, radius: float, kind: str = "surface", generator=None, offset: torch.Tensor | None = None
) -> torch.Tensor:
    """x (+ offset) + noise of the given radius; radius 0 returns x (+ offset) unchanged."""
    if offset is not None:
        x = x + offset
    if radius == 0:
        return x
    return x + sphere_noise(tuple(x.shape), radius, kind, generator=generator, device=x.device)
