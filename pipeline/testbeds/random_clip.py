"""CLIP checkpoints with random weights and a real architecture's shapes, for runs that need no
accuracy: timing and memory without downloading weights (benchmarks/, sizing a machine) and
plumbing checks of a new project.

The checkpoint is a state dict, loaded through `clip.load(path)` as a user's own checkpoint is, so
`encode.model: <path>` runs every stage with it. Its embeddings mean nothing.

    python -c "from pipeline.testbeds.random_clip import save_random_clip; save_random_clip('rn50-random.pt')"
"""

from __future__ import annotations

from pathlib import Path

# clip.model.CLIP's arguments: embed_dim, image_resolution, vision_layers, vision_width,
# vision_patch_size, context_length, vocab_size, transformer_width, transformer_heads, transformer_layers
ARCHITECTURES = {
    "RN50": (1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12),  # the released RN50's shapes: its compute
    "tiny": (64, 64, (1, 1, 1, 1), 8, None, 77, 49408, 64, 1, 1),  # embed 64, a 2 x 2 attention-pool grid: seconds
}


def save_random_clip(path: str | Path, architecture: str = "RN50", seed: int = 0) -> Path:
    """Write a randomly initialised CLIP of `architecture` (a key of ARCHITECTURES) to `path`; returns the path."""
    import torch
    from clip.model import CLIP

    torch.manual_seed(seed)
    model = CLIP(*ARCHITECTURES[architecture])
    path = Path(path)
    torch.save(model.state_dict(), path)
    return path
