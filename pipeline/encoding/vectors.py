"""The one L2 normaliser every reader of CLIP vectors shares (adapter, training, noise, zero-shot, peers).

It lives apart from the adapter so that code which only normalises (the CLIP baseline, the peers'
training) does not depend on the adapter's file: an adapter edit reruns `train`, not `zeroshot` or `prompt`."""

from __future__ import annotations

import torch


def normalize(x: torch.Tensor) -> torch.Tensor:
    """`x` scaled to unit L2 norm along its last dimension (a zero row stays zero, never NaN)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
