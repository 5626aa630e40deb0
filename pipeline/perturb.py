"""Noise on a hypersphere: the random perturbation that lets text stand in for images.

Surface noise has norm exactly `radius` in a uniformly random direction; interior
noise is uniform inside the ball of that radius. Shifted perturbation (partial
labels) first moves each text by its combination's text-to-image offset.
"""

from __future__ import annotations

import torch

NOISE_KINDS = ("surface", "interior")


def sphere_noise(shape: tuple[int, ...], radius: float, kind: str = "surface", generator=None, device=None) -> torch.Tensor:
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise kind {kind!r} is unknown: use one of {list(NOISE_KINDS)}")
    # drawn on the CPU generator, then moved: the same seed gives the same noise on any device
    direction = torch.randn(shape, generator=generator).to(device)
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    if kind == "surface":
        return radius * direction
    dim = shape[-1]
    u = torch.rand((*shape[:-1], 1), generator=generator).to(device)
    return radius * u.pow(1.0 / dim) * direction


def perturb(x: torch.Tensor, radius: float, kind: str = "surface", generator=None, offset: torch.Tensor | None = None) -> torch.Tensor:
    """x (+ offset) + noise of the given radius; radius 0 returns x (+ offset) unchanged."""
    if offset is not None:
        x = x + offset
    if radius == 0:
        return x
    return x + sphere_noise(tuple(x.shape), radius, kind, generator=generator, device=x.device)
