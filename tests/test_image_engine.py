"""Image runtimes (`pipeline.encoding.image_runtime`): every fp32 runtime within 1e-5 of plain fp32 torch at each
resolution, falling back to plain torch where a runtime cannot be used; bf16 kept apart in the cache and
the adapter bundle; precisions a machine cannot run refused in one line."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.encoding import image_runtime as image_engine
from pipeline.encoding import precision
from pipeline.encoding.embeddings import EmbeddingCache, content_key
from pipeline.encoding.image_runtime import (
    EXACT_ATOL,
    ImageEncoder,
    ImageEngine,
    build_engine,
    choose_runtime,
    installed,
)
from pipeline.encoding.openai_clip import ClipEncoder, ClipError
from pipeline.encoding.precision import precision_problem
from pipeline.errors import UserError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
GRAPH_RUNTIMES = ("torchscript", "onnxruntime")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rn50_scale(tiny_clip) -> ClipEncoder:
    """The tiny CLIP with its image projection scaled so embeddings reach RN50's size (|values| up to ~4),
    so an absolute bound of 1e-5 means what it means for RN50."""
    encoder = ClipEncoder(str(tiny_clip), "cpu", runtime="torch")
    with torch.no_grad():
        projection = encoder.model.visual.attnpool.c_proj
        projection.weight.mul_(20)
        projection.bias.mul_(20)
    return encoder


def plain(visual, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return visual(pixels)


def pixels(n: int, resolution: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("runtime", GRAPH_RUNTIMES)
def test_each_runtime_is_within_1e_5_of_plain_torch_at_224_and_448(request, runtime, one_thread):
    if not installed(runtime):
        pytest.skip(f"{runtime} is not installed")
    rn50_scale = request.getfixturevalue("rn50_scale")
    visual = rn50_scale.model.visual
    for resolution in (224, 448):
        rn50_scale.set_resolution(resolution)
        engine = ImageEngine(visual, resolution, runtime)
        assert engine.runtime == runtime  # built and checked, not fallen back
        for n in (1, 5):  # batch sizes other than the probe's
            x = pixels(n, resolution, seed=n)
            expected = plain(visual, x)
            assert 2 < float(expected.abs().max()) < 10  # RN50-sized values, not near-zero ones
            assert float((engine(x) - expected).abs().max()) <= EXACT_ATOL
    rn50_scale.set_resolution(rn50_scale.native_resolution)


def test_the_encoder_builds_one_graph_per_resolution_and_each_stays_exact(tiny_clip, one_thread):
    encoder = ImageEncoder(ClipEncoder(str(tiny_clip), "cpu", runtime="torchscript"))
    reference = ImageEncoder(ClipEncoder(str(tiny_clip), "cpu", runtime="torch"))
    built = []
    for resolution in (64, 224, 64, 448, 224):  # back to resolutions whose graphs were built before
        x = pixels(3, resolution)
        ours, theirs = encoder(x, resolution), reference(x, resolution)
        assert np.abs(ours - theirs).max() <= EXACT_ATOL
        built.append(id(encoder.engines[resolution]))
    assert built[0] == built[2] and built[1] == built[4]  # each graph built once, reused when its resolution returns
    assert sorted(encoder.engines) == [64, 224, 448]
    assert {e.runtime for e in encoder.engines.values()} == {"torchscript"}


def test_auto_takes_the_first_installed_runtime_and_plain_torch_on_a_gpu(monkeypatch):
    monkeypatch.setattr(image_engine, "installed", lambda runtime: runtime in {"onnxruntime", "torchscript"})
    assert choose_runtime("auto", "fp32", CPU) == "onnxruntime"
    monkeypatch.setattr(image_engine, "installed", lambda runtime: runtime == "torchscript")
    assert choose_runtime("auto", "fp32", CPU) == "torchscript"
    assert choose_runtime("auto", "fp32", CUDA) == "torch"  # GPU runtimes are unmeasured: eager
    assert choose_runtime("onnxruntime", "fp32", CPU) == "onnxruntime"
    assert choose_runtime("auto", "bf16", CPU) == "torchscript"  # a graph traced under autocast
    assert choose_runtime("onnxruntime", "bf16", CPU) == "torch"  # fp32-only runtimes: eager autocast
    assert choose_runtime("auto", "fp16", CUDA) == "torch"  # the GPU analogue: eager fp16 autocast
    with pytest.raises(UserError, match=r"encode.runtime = 'tensorrt': use one of"):
        choose_runtime("tensorrt", "fp32", CPU)


def test_a_runtime_that_is_not_installed_falls_back_to_plain_torch_with_a_log_line(tiny_clip, monkeypatch, caplog):
    encoder = ClipEncoder(str(tiny_clip), "cpu", runtime="torch")
    monkeypatch.setattr(image_engine, "installed", lambda runtime: runtime not in ("onnxruntime",))
    with caplog.at_level(logging.WARNING, "pipeline.encoding.image_runtime"):
        _, used = build_engine(encoder.model.visual, 64, "onnxruntime")
    assert used == "torch"
    assert "onnxruntime is not installed (pip install onnx onnxruntime); using eager torch" in caplog.text


class FrozenBatch(torch.nn.Module):
    """Traces into a graph that only takes the trace's batch size (a Python int from a shape)."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 4)

    def forward(self, x):
        return self.linear(x.mean(dim=(2, 3))).reshape(int(x.shape[0]), 4)


class FrozenValues(torch.nn.Module):
    """Traces into a graph that returns the trace's output whatever the input (a detour through numpy)."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 4)

    def forward(self, x):
        return self.linear(torch.from_numpy(x.mean(dim=(2, 3)).numpy().copy()))


@pytest.mark.parametrize("tower", [FrozenBatch, FrozenValues])
@pytest.mark.parametrize("runtime", GRAPH_RUNTIMES)
def test_a_tower_a_runtime_converts_wrongly_runs_as_plain_torch(request, tower, runtime, caplog):
    if not installed(runtime):
        pytest.skip(f"{runtime} is not installed")
    torch.manual_seed(0)
    tower = tower().eval()
    with caplog.at_level(logging.WARNING, "pipeline.encoding.image_runtime"):
        engine, used = build_engine(tower, 32, runtime)
    assert used == "torch"
    assert "using eager torch" in caplog.text and len(caplog.records) == 1
    x = pixels(5, 32)
    assert torch.equal(engine(x), plain(tower, x))


def test_auto_takes_the_next_installed_runtime_where_one_cannot_convert(tiny_clip, monkeypatch, caplog):
    if not (installed("onnxruntime") and installed("torchscript")):
        pytest.skip("needs two graph runtimes")
    encoder = ClipEncoder(str(tiny_clip), "cpu", runtime="torch")

    def unconvertible(visual, example):
        raise RuntimeError("no ONNX form for this operator")

    monkeypatch.setitem(image_engine.GRAPH_BUILDERS, "onnxruntime", unconvertible)
    with caplog.at_level(logging.INFO, "pipeline.encoding.image_runtime"):
        engine, used = build_engine(encoder.model.visual, 64, "auto")
    assert used == "torchscript" and "onnxruntime could not convert this image tower" in caplog.text
    with caplog.at_level(logging.INFO, "pipeline.encoding.image_runtime"):  # named, it is the only one tried
        _, named = build_engine(encoder.model.visual, 64, "onnxruntime")
    assert named == "torch"
    x = pixels(2, 64)
    assert (engine(x) - plain(encoder.model.visual, x)).abs().max() <= image_engine.EXACT_ATOL


def test_a_graph_whose_probe_strays_is_not_used(tiny_clip, monkeypatch, caplog):
    encoder = ClipEncoder(str(tiny_clip), "cpu", runtime="torch")
    wrong = lambda visual, example: lambda x: visual(x) + 1e-3  # noqa: E731 - a subtly broken graph
    monkeypatch.setitem(image_engine.GRAPH_BUILDERS, "torchscript", wrong)
    with caplog.at_level(logging.WARNING, "pipeline.encoding.image_runtime"):
        engine, used = build_engine(encoder.model.visual, 64, "torchscript")
    assert used == "torch" and "differs from eager torch by 1.00e-03" in caplog.text
    x = pixels(2, 64)
    assert torch.equal(engine(x), plain(encoder.model.visual, x))


def test_bf16_keeps_cosine_to_fp32_and_fp32_stays_the_default(tiny_clip, one_thread):
    if precision_problem("bf16", CPU):
        pytest.skip("this CPU has no bf16 instructions")
    fp32 = ClipEncoder(str(tiny_clip), "cpu", runtime="torch")
    bf16 = ClipEncoder(str(tiny_clip), "cpu", "bf16")
    x = pixels(4, 224)
    low = ImageEncoder(bf16)
    a, b = torch.from_numpy(ImageEncoder(fp32)(x, 224)), torch.from_numpy(low(x, 224))
    assert low.engines[224].runtime == "torchscript-bf16"
    assert float(torch.nn.functional.cosine_similarity(a, b).min()) >= 0.999
    assert not torch.equal(a, b)  # it does compute in bf16
    texts = ["a dog on a sofa", "there are a car and a person in the photo."]
    t32, t16 = torch.from_numpy(fp32.encode_texts(texts)), torch.from_numpy(bf16.encode_texts(texts))
    assert float(torch.nn.functional.cosine_similarity(t32, t16).min()) >= 0.99
    assert b.dtype == t16.dtype == torch.float32  # stored as float32 like every embedding


def test_bf16_with_an_fp32_only_runtime_runs_eagerly_under_autocast(tiny_clip, one_thread, caplog):
    if precision_problem("bf16", CPU):
        pytest.skip("this CPU has no bf16 instructions")
    visual = ClipEncoder(str(tiny_clip), "cpu", runtime="torch").model.visual
    x = pixels(3, 64)
    with caplog.at_level(logging.INFO, "pipeline.encoding.image_runtime"):
        engine = ImageEngine(visual, 64, "onnxruntime", "bf16")
    assert engine.runtime == "torch-bf16" and "runs fp32 only" in caplog.text
    out, exact = engine(x), plain(visual, x)
    assert out.dtype == torch.float32 and not torch.equal(out, exact)
    assert float(torch.nn.functional.cosine_similarity(out, exact).min()) >= 0.999


def test_a_precision_the_machine_cannot_run_is_refused_in_one_line(tiny_clip, monkeypatch):
    with pytest.raises(ClipError) as error:
        ClipEncoder(str(tiny_clip), "cpu", "fp16")
    assert str(error.value) == (
        "encode.precision = 'fp16' needs a CUDA GPU (none is used here): use bf16 on a CPU with "
        "bf16 instructions, or fp32"
    )
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    with pytest.raises(
        ClipError, match=r"^encode.precision = 'bf16' but this CPU has no bf16 instructions .*: use fp32$"
    ):
        ClipEncoder(str(tiny_clip), "cpu", "bf16")
    assert precision_problem("fp16", CUDA) is None and precision_problem("fp32", CPU) is None


def _jpeg(path, colour) -> str:
    Image.new("RGB", (40, 30), colour).save(path)
    return str(path)


def test_the_runtime_shares_cache_entries_and_the_precision_does_not(tmp_path, tiny_clip, monkeypatch):
    from pipeline.encoding.encode import encode_texts
    from pipeline.encoding.encode_images import encode_images

    paths = [_jpeg(tmp_path / f"{i}.jpg", (40 * i, 10, 200)) for i in range(3)]
    cache_dir = tmp_path / "cache"
    first = encode_images(ClipEncoder(str(tiny_clip), "cpu", runtime="torch"), paths, 64, EmbeddingCache(cache_dir))
    # the fp32 key is what it was before encode.precision existed: old caches stay valid
    from pipeline.encoding.decode import DECODING

    encoder = ClipEncoder(str(tiny_clip), "cpu", runtime="torchscript")
    old_key = content_key(encoder.identity, "image", "64", "square", DECODING, open(paths[0], "rb").read())
    assert old_key in EmbeddingCache(cache_dir)
    again = encode_images(encoder, paths, 64, EmbeddingCache(cache_dir))
    assert again.n_encoded == 0 and again.n_cached == 3  # another runtime: the same embeddings, from the cache
    np.testing.assert_array_equal(again.vectors, first.vectors)
    if precision_problem("bf16", CPU):
        return
    bf16 = ClipEncoder(str(tiny_clip), "cpu", "bf16")
    low = encode_images(bf16, paths, 64, EmbeddingCache(cache_dir))
    assert low.n_encoded == 3 and low.n_cached == 0  # bf16 never reads fp32 entries...
    assert encode_texts(bf16, ["a cat"], EmbeddingCache(cache_dir)).n_encoded == 1
    fp32_texts = encode_texts(encoder, ["a cat"], EmbeddingCache(cache_dir))
    assert fp32_texts.n_encoded == 1  # ...and fp32 never reads bf16 ones
    assert np.abs(low.vectors - first.vectors).max() > 0


def test_the_adapter_bundle_carries_the_precision_and_predict_encodes_in_it(tmp_path, tiny_clip):
    from pipeline.method.adapter import Adapter, AdapterBundle, AdapterConfig
    from pipeline.shipping.predict import predict_folder

    if precision_problem("bf16", CPU):
        pytest.skip("this CPU has no bf16 instructions")
    torch.manual_seed(0)
    model = Adapter(AdapterConfig(embed_dim=64, n_labels=2, hidden_dim=8, dropout=0.0))
    AdapterBundle(model, ("cat", "dog"), False, str(tiny_clip), 64, "square", precision="bf16").save(tmp_path / "a.pt")
    bundle = AdapterBundle.load(tmp_path / "a.pt")
    assert bundle.precision == "bf16"
    payload = torch.load(tmp_path / "a.pt", weights_only=True)
    del payload["precision"]  # a bundle saved before encode.precision existed was fp32
    torch.save(payload, tmp_path / "old.pt")
    assert AdapterBundle.load(tmp_path / "old.pt").precision == "fp32"
    from pipeline.shipping.classifier import Classifier, threshold_vector
    from pipeline.shipping.export import export_config, write_export
    from pipeline.shipping.export_format import read_export

    exported = Classifier(bundle, ClipEncoder(str(tiny_clip), "cpu", "bf16"), threshold_vector(bundle.labels, 0.5))
    folder = write_export(tmp_path / "export", exported, export_config(bundle, exported.encoder, {}, {}), "# card\n")
    assert read_export(folder)[0].precision == "bf16"  # an exported classifier encodes in its precision too

    folder = tmp_path / "images"
    folder.mkdir()
    paths = [_jpeg(folder / f"{i}.jpg", (90 * i, 30, 60)) for i in range(2)]
    frame, _ = predict_folder(tmp_path / "a.pt", folder, device="cpu", cache_dir=tmp_path / "cache")
    from pipeline.encoding.encode_images import encode_images

    expected = encode_images(ClipEncoder(str(tiny_clip), "cpu", "bf16"), paths, 64, EmbeddingCache(tmp_path / "other"))
    scores = bundle.scores(torch.from_numpy(expected.vectors)).numpy()
    np.testing.assert_allclose(frame.select(["cat", "dog"]).to_numpy(), scores, rtol=0, atol=1e-12)


def test_the_removed_openvino_runtime_is_refused_naming_onnxruntime(tmp_path):
    from pipeline.config import ParamsError, load_params
    from test_config import write_params

    with pytest.raises(ParamsError, match=r"encode\.runtime = 'openvino': .*use onnxruntime"):
        load_params(write_params(tmp_path, **{"encode.runtime": "openvino"}))
