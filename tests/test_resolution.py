"""The attention-pool positional embedding resized for other input resolutions (RN50 at 448 px
needs a 14 x 14 grid instead of 7 x 7), tested on the resize function and on the tiny CLIP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.encoding.image_runtime import ImageEncoder
from pipeline.encoding.load import load_clip
from pipeline.encoding.openai_clip import ClipEncoder, ClipError, resize_positional_embedding

RESOLUTIONS = (64, 96, 128, 224, 448)  # multiples of 32; the tiny CLIP is native at 64 px (2 x 2 grid)


def _embedding(grid: int, channels: int, values: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    cls_token = torch.randn(1, channels, generator=g)
    spatial = torch.randn(grid * grid, channels, generator=g) if values is None else values
    return torch.cat([cls_token, spatial])


def _ramp(grid: int, channels: int = 3) -> torch.Tensor:
    """A linear ramp over the grid, a different slope per channel: (grid*grid, channels), row-major."""
    yy, xx = torch.meshgrid(torch.arange(grid).float(), torch.arange(grid).float(), indexing="ij")
    return torch.stack([(c + 1) * xx + (2 - c) * yy for c in range(channels)], dim=-1).reshape(grid * grid, channels)


@pytest.mark.parametrize("grid", [1, 2, 3, 7, 14, 19])
def test_shape_and_class_token(grid: int) -> None:
    embedding = _embedding(7, 16)
    out = resize_positional_embedding(embedding, grid)
    assert out.shape == (1 + grid * grid, 16)
    assert torch.equal(out[0], embedding[0]), "the class token's position must not be interpolated"
    assert torch.isfinite(out).all()


def test_native_grid_is_the_identity() -> None:
    embedding = _embedding(7, 16)
    assert torch.equal(resize_positional_embedding(embedding, 7), embedding)


def test_non_square_grid_is_an_error() -> None:
    with pytest.raises(ClipError, match="square"):
        resize_positional_embedding(torch.zeros(1 + 12, 4), 4)


def test_constant_grid_stays_constant() -> None:
    embedding = _embedding(7, 4, values=torch.full((49, 4), 0.37))
    out = resize_positional_embedding(embedding, 14)
    assert torch.allclose(out[1:], torch.full((196, 4), 0.37), atol=1e-5)


def test_bicubic_values_are_sensible_on_a_ramp() -> None:
    embedding = _embedding(7, 3, values=_ramp(7))
    out = resize_positional_embedding(embedding, 14)[1:].reshape(14, 14, 3)
    # the same bicubic interpolation torch documents (align_corners=False), channel by channel
    expected = F.interpolate(
        _ramp(7).reshape(1, 7, 7, 3).permute(0, 3, 1, 2), size=(14, 14), mode="bicubic", align_corners=False
    ).permute(0, 2, 3, 1)[0]
    assert torch.allclose(out, expected, atol=1e-5)
    # a ramp stays a ramp: increasing along x in channel 2 (slope 3 in x, 0 in y) away from the borders
    assert (out[2:-2, 3:-2, 2] - out[2:-2, 2:-3, 2] > 0).all()
    # and close to the ramp sampled at the new cell centres: old coordinate = (i + 0.5) * 7/14 - 0.5
    centre = (torch.arange(14).float() + 0.5) * 7 / 14 - 0.5
    yy, xx = torch.meshgrid(centre, centre, indexing="ij")
    truth = torch.stack([(c + 1) * xx + (2 - c) * yy for c in range(3)], dim=-1)
    span = truth.amax() - truth.amin()
    assert (out[3:-3, 3:-3] - truth[3:-3, 3:-3]).abs().max() < 0.03 * span
    # values do not run away from the input's range (bicubic may overshoot a little at the borders)
    assert out.amin() > _ramp(7).amin() - 0.1 * span and out.amax() < _ramp(7).amax() + 0.1 * span


def test_upsampling_then_pooling_returns_close_to_the_original() -> None:
    g = torch.Generator().manual_seed(1)
    smooth = F.interpolate(torch.randn(1, 8, 3, 3, generator=g), size=(7, 7), mode="bilinear", align_corners=True)
    spatial = smooth.permute(0, 2, 3, 1).reshape(49, 8)
    out = resize_positional_embedding(_embedding(7, 8, values=spatial), 14)[1:]
    pooled = F.avg_pool2d(out.reshape(1, 14, 14, 8).permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1).reshape(49, 8)
    assert (pooled - spatial).abs().max() < 0.1 * spatial.abs().max()


def test_dtype_is_kept() -> None:
    embedding = _embedding(7, 8).half()
    out = resize_positional_embedding(embedding, 14)
    assert out.dtype == torch.float16 and torch.equal(out[0], embedding[0])


# --------------------------------------------------------------------------------------------- tiny CLIP


@pytest.fixture(scope="module")
def encoder(tiny_clip) -> ClipEncoder:
    return load_clip(str(tiny_clip), "cpu")


def test_tiny_clip_native_resolution(encoder: ClipEncoder) -> None:
    assert encoder.native_resolution == 64
    assert encoder.model.visual.attnpool.positional_embedding.shape[0] == 1 + 2 * 2


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_set_resolution_resizes_the_attention_pool(encoder: ClipEncoder, resolution: int) -> None:
    native = encoder._native_pos.clone()
    encoder.set_resolution(resolution)
    grid = resolution // 32
    pos = encoder.model.visual.attnpool.positional_embedding
    assert pos.shape == (1 + grid * grid, native.shape[1])
    assert torch.equal(pos[0], native[0])
    assert encoder.model.visual.input_resolution == resolution
    if resolution == encoder.native_resolution:
        assert torch.equal(pos.data, native)
    assert torch.equal(encoder._native_pos, native), "resizing must always start from the native embedding"
    encoder.set_resolution(encoder.native_resolution)


def test_set_resolution_rejects_a_non_multiple_of_32(encoder: ClipEncoder) -> None:
    with pytest.raises(ClipError, match="multiple"):
        encoder.set_resolution(100)


@pytest.mark.parametrize("resolution", [224, 448])
def test_encoding_runs_at_224_and_448(encoder: ClipEncoder, resolution: int) -> None:
    pixels = torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(resolution))
    vectors = ImageEncoder(encoder)(pixels, resolution)
    assert vectors.shape == (2, encoder.embed_dim) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    assert encoder.model.visual.input_resolution == resolution
    assert encoder.model.visual.attnpool.positional_embedding.shape[0] == 1 + (resolution // 32) ** 2
    encoder.set_resolution(encoder.native_resolution)


def test_going_back_to_native_gives_the_native_outputs(encoder: ClipEncoder) -> None:
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    images = ImageEncoder(encoder)
    before = images(pixels, 64)
    images(torch.randn(1, 3, 448, 448), 448)
    after = images(pixels, 64)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)


def test_resolutions_other_than_native_change_the_embedding(encoder: ClipEncoder) -> None:
    """The same picture at 64 and 128 px goes through different grids: different embeddings, not a copy."""
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    images = ImageEncoder(encoder)
    small = images(image, 64)
    large = images(F.interpolate(image, size=(128, 128), mode="bilinear", align_corners=False), 128)
    encoder.set_resolution(encoder.native_resolution)
    assert np.isfinite(large).all() and not np.allclose(small, large)
