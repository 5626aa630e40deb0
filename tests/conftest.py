"""Shared fixtures: a tiny randomly initialised CLIP (`pipeline.random_clip`) saved to disk and loaded
through clip.load(path), the same path real weights take. It tests plumbing, never accuracy."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """embed 64, image 64 px (a 2 x 2 attention-pool grid), ResNet layers (1,1,1,1) of width 8, text width 64."""
    from pipeline.random_clip import save_random_clip

    return save_random_clip(tmp_path_factory.mktemp("clip") / "tiny-clip.pt", "tiny")


@pytest.fixture
def one_thread():
    """Tiny matrices: one thread is as fast, and does not collapse when other processes share the CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

