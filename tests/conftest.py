"""Shared fixtures: a tiny randomly initialised CLIP (`pipeline.testbeds.random_clip`) saved to disk and loaded through
clip.load(path), the same path real weights take; tiny open_clip architectures registered the way a
user registers one ($TAI_OPEN_CLIP_CONFIGS), their random weights saved and loaded through
open_clip.create_model_and_transforms(arch, pretrained=file), as a named model's are. It tests
plumbing, never accuracy."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# The embedding cache of every test (and of the stages they start) is a throwaway folder, never ~/.cache.
os.environ["TAI_CACHE_DIR"] = tempfile.mkdtemp(prefix="tai-test-cache-")

_TINY_TOWER = {"image_size": 64, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16}
# open_clip architectures of the tests: a ViT with a causal text tower (CLIP, LAION, DataComp, MetaCLIP), and a
# ViT with a bidirectional text tower read at its last, padded position (SigLIP's; SimpleTokenizer so no download)
TINY_OPEN_CLIP = {
    "tai-tiny-vit": {
        "embed_dim": 32,
        "vision_cfg": _TINY_TOWER,
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    },
    "tai-tiny-bidir": {
        "embed_dim": 32,
        "custom_text": True,
        "init_logit_bias": -10,
        "vision_cfg": _TINY_TOWER,
        "text_cfg": {
            "context_length": 64,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 1,
            "no_causal_mask": True,
            "pool_type": "last",
            "proj_bias": True,
        },
    },
}
_open_clip_configs = Path(tempfile.mkdtemp(prefix="tai-test-open-clip-"))
for _name, _config in TINY_OPEN_CLIP.items():
    (_open_clip_configs / f"{_name}.json").write_text(json.dumps(_config))
os.environ["TAI_OPEN_CLIP_CONFIGS"] = str(_open_clip_configs)  # stages started by dvc see them too


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """embed 64, image 64 px (a 2 x 2 attention-pool grid), ResNet layers (1,1,1,1) of width 8, text width 64."""
    from pipeline.testbeds.random_clip import save_random_clip

    return save_random_clip(tmp_path_factory.mktemp("clip") / "tiny-clip.pt", "tiny")


def save_tiny_open_clip(architecture: str, path: Path, seed: int = 0) -> str:
    """Random weights of a registered tiny architecture saved to `path`; returns its encode.model name."""
    import open_clip
    import torch

    from pipeline.encoding.open_clip_backbones import register_configs

    register_configs()
    torch.manual_seed(seed)
    torch.save(open_clip.create_model(architecture).state_dict(), path)
    return f"open_clip:{architecture}/{path}"


@pytest.fixture(scope="session")
def tiny_open_clip(tmp_path_factory) -> str:
    """encode.model of a tiny open_clip ViT with a causal text tower."""
    return save_tiny_open_clip("tai-tiny-vit", tmp_path_factory.mktemp("open_clip") / "tiny-vit.pt")


@pytest.fixture(scope="session")
def tiny_open_clip_bidir(tmp_path_factory) -> str:
    """encode.model of a tiny open_clip ViT with a bidirectional, padded text tower (SigLIP-style)."""
    return save_tiny_open_clip("tai-tiny-bidir", tmp_path_factory.mktemp("open_clip") / "tiny-bidir.pt")


@pytest.fixture
def one_thread():
    """Tiny matrices: one thread is as fast, and does not collapse when other processes share the CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
