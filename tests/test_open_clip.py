"""open_clip backbones behind ClipEncoder: names, identity, preprocessing, exact trimmed text, resolution.

Tiny architectures are registered as a user registers one ($TAI_OPEN_CLIP_CONFIGS, see conftest) and
their random weights load through open_clip.create_model_and_transforms(arch, pretrained=file)."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config import ParamsError, load_params
from pipeline.encoding.embeddings import EmbeddingCache
from pipeline.encoding.encode import encode_texts
from pipeline.encoding.encode_images import encode_images
from pipeline.encoding.image_runtime import ImageEncoder
from pipeline.encoding.load import load_clip
from pipeline.encoding.open_clip_backbones import OpenClipEncoder, OpenClipName, open_clip_identity
from pipeline.encoding.openai_clip import ClipError, image_transform

TEXTS = ["a cat", "a photo of a dog and a cat on a red mat in the afternoon sun", "there is a car in the photo."]


@pytest.fixture(scope="module")
def vit(tiny_open_clip):
    return load_clip(tiny_open_clip, "cpu")


@pytest.fixture(scope="module")
def bidir(tiny_open_clip_bidir):
    return load_clip(tiny_open_clip_bidir, "cpu")


def test_names_split_into_architecture_and_weights():
    assert OpenClipName.parse("open_clip:ViT-B-16/laion2b_s34b_b88k") == OpenClipName("ViT-B-16", "laion2b_s34b_b88k")
    assert OpenClipName.parse("open_clip:ViT-B-16//data/w.pt") == OpenClipName("ViT-B-16", "/data/w.pt")
    assert OpenClipName.parse("open_clip:hf-hub:timm/ViT-B-16-SigLIP") == OpenClipName(
        "hf-hub:timm/ViT-B-16-SigLIP", None
    )
    with pytest.raises(ClipError, match="names no weights"):
        OpenClipName.parse("open_clip:ViT-B-16")


def test_a_hub_tag_is_its_own_identity_without_a_download():
    assert open_clip_identity("open_clip:ViT-B-16/laion2b_s34b_b88k") == "open_clip:ViT-B-16/laion2b_s34b_b88k"
    assert open_clip_identity("open_clip:ViT-B-16-SigLIP/webli") == "open_clip:ViT-B-16-SigLIP/webli"


def test_unknown_architectures_and_tags_are_refused_with_the_fix():
    with pytest.raises(ClipError, match=r"no architecture 'ViT-B-61'.*did you mean.*ViT-B-16"):
        load_clip("open_clip:ViT-B-61/laion2b_s34b_b88k", "cpu")
    with pytest.raises(ClipError, match=r"neither a pretrained tag of ViT-B-16 \[.*laion2b_s34b_b88k"):
        load_clip("open_clip:ViT-B-16/laion9b", "cpu")


def test_weights_that_do_not_fit_the_architecture_are_one_clear_error(tmp_path, tiny_clip):
    with pytest.raises(ClipError, match="could not be loaded") as error:
        load_clip(f"open_clip:tai-tiny-vit/{tiny_clip}", "cpu")  # OpenAI RN weights, a ViT config
    assert "\n" not in str(error.value)


def test_identity_follows_the_weights_and_the_architecture(tmp_path, tiny_open_clip, vit):
    weights = tiny_open_clip.split("/", 1)[1]
    copy = shutil.copy(weights, tmp_path / "renamed.pt")
    assert vit.identity.startswith("open_clip:tai-tiny-vit/file:")
    assert "+cfg:" in vit.identity  # a registered architecture: its config is part of the identity
    assert open_clip_identity(f"open_clip:tai-tiny-vit/{copy}") == vit.identity  # same bytes, same identity
    from conftest import save_tiny_open_clip

    other = save_tiny_open_clip("tai-tiny-vit", tmp_path / "seed1.pt", seed=1)
    assert open_clip_identity(other) != vit.identity


def test_two_backbones_never_share_cache_entries(tmp_path, vit, bidir, tiny_clip):
    cache = EmbeddingCache(tmp_path / "cache")
    results = [encode_texts(encoder, TEXTS, cache) for encoder in (vit, bidir, load_clip(str(tiny_clip), "cpu"))]
    assert [r.n_encoded for r in results] == [3, 3, 3] and len(cache) == 9
    assert not np.allclose(results[0].vectors, results[1].vectors[:, :32])


def test_causal_text_is_trimmed_and_exact(vit):
    assert isinstance(vit, OpenClipEncoder) and vit.trims_text
    tokens = vit.tokenize(TEXTS)
    assert tokens.shape == (3, 77)
    lengths = vit.token_lengths(tokens)
    assert lengths == [int(i) + 1 for i in tokens.argmax(dim=-1)] and max(lengths) < 20
    seen = []
    hook = vit.model.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(args[0].shape[1]), with_kwargs=True
    )
    try:
        trimmed = vit.encode_tokens(tokens)
    finally:
        hook.remove()
    assert seen == [max(lengths)]  # the text tower ran on the longest text's tokens, not 77
    with torch.no_grad():
        full = vit.model.encode_text(tokens).numpy()
    np.testing.assert_allclose(trimmed, full, atol=1e-5)
    assert vit.model.positional_embedding.shape[0] == 77 and vit.model.attn_mask.shape == (77, 77)  # restored


def test_a_bidirectional_text_tower_gets_its_padded_rows(bidir):
    assert not bidir.trims_text
    tokens = bidir.tokenize(TEXTS)
    assert tokens.shape == (3, 64) and bidir.token_lengths(tokens) == [64, 64, 64]
    with torch.no_grad():
        padded = bidir.model.encode_text(tokens).numpy()
        n = int(tokens.argmax(dim=-1).max()) + 1
        cut = bidir.model.encode_text(tokens[:, :n]).numpy()  # what trimming would have given
    np.testing.assert_allclose(bidir.encode_tokens(tokens), padded, atol=1e-5)
    assert np.abs(cut - padded).max() > 1e-3  # so padding matters here, and is kept


def test_preprocessing_is_the_models_under_the_projects_resize_rule(tmp_path, tiny_open_clip):
    from conftest import TINY_OPEN_CLIP

    folder = tmp_path / "local"
    folder.mkdir()
    shutil.copy(tiny_open_clip.split("/", 1)[1], folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text(
        json.dumps(
            {
                "model_cfg": TINY_OPEN_CLIP["tai-tiny-vit"],
                "preprocess_cfg": {
                    "mean": [0.5, 0.5, 0.5],
                    "std": [0.25, 0.25, 0.25],
                    "interpolation": "bilinear",
                    "resize_mode": "squash",
                },
            }
        )
    )
    encoder = load_clip(f"open_clip:local-dir:{folder}", "cpu")
    assert encoder.identity.startswith("open_clip:local-dir:")
    assert (encoder.mean, encoder.std, encoder.interpolation) == ((0.5,) * 3, (0.25,) * 3, "bilinear")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    for resize in ("square", "center_crop"):
        pixels = encoder.transform(64, resize)(image)
        assert pixels.shape == (3, 64, 64)
        raw = image_transform(64, resize, (0.0,) * 3, (1.0,) * 3, "bilinear")(image)  # same geometry, no normalising
        torch.testing.assert_close(pixels, (raw - 0.5) / 0.25)
    square, crop = encoder.transform(64, "square")(image), encoder.transform(64, "center_crop")(image)
    assert not torch.allclose(square, crop)  # the project's rule, not the model's own "squash", decides


def test_a_vit_encodes_at_twice_its_resolution_and_back(vit):
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    images = ImageEncoder(vit)
    native = images(pixels, 64)
    large = images(torch.nn.functional.interpolate(pixels, size=128), 128)
    assert large.shape == (2, 32) and np.isfinite(large).all()
    assert vit.model.visual.positional_embedding.shape[0] == 8 * 8 + 1
    np.testing.assert_array_equal(images(pixels, 64), native)  # back to the native grid exactly
    with pytest.raises(ClipError, match="not a multiple of .* patch size 16"):
        vit.set_resolution(72)


def register(tmp_path, name: str, vision: dict) -> str:
    """A tiny architecture with the given image tower registered in this process; its random weights' name."""
    import open_clip

    config = {
        "embed_dim": 32,
        "vision_cfg": vision,
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (tmp_path / f"{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / f"{name}.json")
    torch.manual_seed(0)
    torch.save(open_clip.create_model(name).state_dict(), tmp_path / "w.pt")
    return f"open_clip:{name}/{tmp_path / 'w.pt'}"


def test_a_resnet_tower_encodes_at_twice_its_resolution(tmp_path):
    encoder = load_clip(
        register(tmp_path, "tai-tiny-rn", {"layers": [1, 1, 1, 1], "width": 8, "image_size": 64}), "cpu"
    )
    pixels = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    assert ImageEncoder(encoder)(pixels, 128).shape == (2, 32)
    assert encoder.model.visual.attnpool.positional_embedding.shape[0] == 4 * 4 + 1  # 2 x 2 grid at 64 px -> 4 x 4
    with pytest.raises(ClipError, match="not a multiple of .* patch size 32"):
        encoder.set_resolution(80)


def test_a_timm_tower_refuses_another_resolution_with_the_reason(tmp_path):
    name = register(
        tmp_path,
        "tai-tiny-timm",
        {
            "timm_model_name": "vit_tiny_patch16_224",
            "timm_model_pretrained": False,
            "timm_pool": "token",
            "timm_proj": "linear",
            "image_size": 224,
        },
    )
    encoder = load_clip(name, "cpu")
    images = ImageEncoder(encoder)
    assert images(torch.zeros(1, 3, 224, 224), 224).shape == (1, 32)
    with pytest.raises(ClipError, match=r"encodes at 224 px only .*set the resolution to 224, not 448"):
        images(torch.zeros(1, 3, 448, 448), 448)


def test_images_are_encoded_and_cached_under_the_backbone(tmp_path, vit):
    paths = []
    for i in range(3):
        Image.new("RGB", (40 + i, 30), (50 * i, 100, 200)).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    cache = EmbeddingCache(tmp_path / "cache")
    first = encode_images(vit, paths, 64, cache, batch_size=2)
    again = encode_images(vit, paths, 64, cache, batch_size=2)
    assert first.n_encoded == 3 and again.n_cached == 3
    pixels = torch.stack([vit.transform(64, "square")(Image.open(p).convert("RGB")) for p in paths])
    np.testing.assert_allclose(first.vectors, ImageEncoder(vit)(pixels, 64), atol=1e-5)
    with pytest.raises(ClipError, match="patch size 16"):  # before any image is hashed or encoded
        encode_images(vit, paths, 72, cache)


def test_params_accept_open_clip_names_and_their_resolutions(tmp_path, monkeypatch):
    import importlib.util

    import yaml

    from conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["encode"].update(model="open_clip:ViT-L-14-336/openai", image_resolution=336, partial_resolution=672)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    assert load_params(path).encode.image_resolution == 336
    params["encode"]["model"] = "RN50"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match="multiple of 32"):
        load_params(path)
    params["encode"]["model"] = "open_clip:ViT-B-16/laion2b_s34b_b88k"
    path.write_text(yaml.safe_dump(params))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "open_clip" else real(name, *a))
    with pytest.raises(ParamsError, match=r"open_clip is not installed: pip install -e '\.\[open_clip\]'"):
        load_params(path)


def test_an_open_clip_tower_runs_through_the_image_runtimes_with_its_embeddings(tiny_open_clip, capfd):
    """encode.runtime auto on an open_clip ViT: its fused attention is exported in its unfused form
    (`image_engine.export_onnx`), so it runs as the first installed graph runtime, quietly, and the
    embeddings stay eager torch's."""
    from pipeline.encoding.image_runtime import AUTO_ORDER, EXACT_ATOL, installed

    pixels = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    images = ImageEncoder(load_clip(tiny_open_clip, "cpu"))
    encoder = images.encoder
    vectors = images(pixels, 64)
    with torch.no_grad():
        eager = encoder.model.encode_image(pixels).numpy()
    np.testing.assert_allclose(vectors, eager, rtol=0, atol=EXACT_ATOL)
    assert images.engine(64).runtime == next(r for r in AUTO_ORDER if installed(r))
    printed = capfd.readouterr()
    assert "Torch IR graph" not in printed.out + printed.err  # the exporter's dump of the whole graph
    named = ImageEncoder(load_clip(tiny_open_clip, "cpu", runtime="torch"))
    np.testing.assert_allclose(named(pixels, 64), eager, rtol=0, atol=EXACT_ATOL)
    assert named.engine(64).runtime == "torch"


def test_a_refused_resolution_hashes_no_image(tmp_path, vit, monkeypatch):
    import pipeline.encoding.encode_images as encode

    paths = []
    for i in range(3):
        Image.new("RGB", (40, 30), (50 * i, 100, 200)).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    hashed = []
    real = encode._file_key
    monkeypatch.setattr(encode, "_file_key", lambda *args, **kwargs: hashed.append(args[2]) or real(*args, **kwargs))
    with pytest.raises(ClipError, match="patch size 16"):
        encode_images(vit, paths, 72, EmbeddingCache(tmp_path / "cache"))
    assert hashed == []  # refused before the first file is read
    encode_images(vit, paths, 64, EmbeddingCache(tmp_path / "cache"))
    assert hashed == paths  # (the counter counts what a taken resolution hashes)


def test_the_encode_stage_exits_2_on_a_refused_resolution_having_written_nothing(tmp_path, tiny_open_clip, monkeypatch):
    from small_project import run_stages, small_project, stage

    cache = tmp_path / "cache"
    monkeypatch.setenv("TAI_CACHE_DIR", str(cache))
    project = small_project(tmp_path, tiny_open_clip, **{"encode.image_resolution": 72})
    run_stages(project, "prepare")
    result = stage(project, "encode_images eval")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "patch size 16" in result.stderr.strip().splitlines()[-1]
    assert not list((project / "artifacts").rglob("*.arrow")) and not list(cache.rglob("*.arrow"))
