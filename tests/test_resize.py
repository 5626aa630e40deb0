"""encode.resize: `square` (the paper's N x N protocol) against `center_crop` (CLIP's own), and the
embedding cache and adapter bundle keyed by it."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pipeline.encoding.embeddings import EmbeddingCache
from pipeline.encoding.encode_images import encode_images
from pipeline.encoding.load import load_clip
from pipeline.encoding.openai_clip import image_transform

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def wide_image(width: int = 144, height: int = 48) -> Image.Image:
    """Left third red, middle green, right third blue: a centre crop loses the red and blue ends."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 3] = (255, 0, 0)
    pixels[:, width // 3 : 2 * width // 3] = (0, 255, 0)
    pixels[:, 2 * width // 3 :] = (0, 0, 255)
    return Image.fromarray(pixels)


def test_square_is_a_plain_resize_then_clip_normalisation_and_differs_from_center_crop() -> None:
    n = 32
    image = wide_image()
    square = image_transform(n, "square")(image)
    crop = image_transform(n, "center_crop")(image)
    assert square.shape == crop.shape == (3, n, n)

    expected = (np.asarray(image.resize((n, n), Image.BICUBIC), np.float32) / 255 - CLIP_MEAN) / CLIP_STD
    assert np.allclose(square.numpy(), expected.transpose(2, 0, 1), atol=1e-6)
    assert not torch.allclose(square, crop, atol=1e-2)
    # the square image keeps both ends; the crop's left column is from the middle (green)
    red = (np.array([1.0, 0, 0], np.float32) - CLIP_MEAN) / CLIP_STD
    assert np.allclose(square[:, n // 2, 0].numpy(), red, atol=0.1)
    assert not np.allclose(crop[:, n // 2, 0].numpy(), red, atol=0.1)


def test_a_square_image_gives_the_same_pixels_either_way() -> None:
    image = wide_image(64, 64)
    assert torch.allclose(image_transform(32, "square")(image), image_transform(32, "center_crop")(image), atol=1e-6)


def test_the_cache_key_includes_the_resize_mode(tmp_path, tiny_clip, one_thread) -> None:
    path = tmp_path / "wide.png"
    wide_image().save(path)
    encoder = load_clip(str(tiny_clip), "cpu")
    cache = EmbeddingCache(tmp_path / "cache")
    square = encode_images(encoder, [str(path)], 64, cache, resize="square")
    again = encode_images(encoder, [str(path)], 64, cache, resize="square")
    crop = encode_images(encoder, [str(path)], 64, cache, resize="center_crop")
    assert (square.n_encoded, again.n_cached, crop.n_encoded) == (1, 1, 1)
    assert len(cache) == 2
    assert not np.allclose(square.vectors, crop.vectors)


def test_the_adapter_bundle_carries_the_resize_mode(tmp_path) -> None:
    from pipeline.method.adapter import Adapter, AdapterBundle, AdapterConfig

    model = Adapter(AdapterConfig(embed_dim=8, n_labels=2, hidden_dim=4, dropout=0.1))
    AdapterBundle(model, ("a", "b"), False, "RN50", 224, "center_crop").save(tmp_path / "a.pt")
    assert AdapterBundle.load(tmp_path / "a.pt").resize == "center_crop"
    AdapterBundle(model, ("a", "b"), False, "RN50", 224).save(tmp_path / "b.pt")
    assert AdapterBundle.load(tmp_path / "b.pt").resize == "square"
    payload = torch.load(tmp_path / "b.pt", weights_only=True)
    del payload["resize"]  # a bundle saved before encode.resize existed was preprocessed with CLIP's crop
    torch.save(payload, tmp_path / "old.pt")
    assert AdapterBundle.load(tmp_path / "old.pt").resize == "center_crop"
