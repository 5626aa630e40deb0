"""encode.engine: ray on a local Ray with 2 CPU workers leaves the same cache entries and shards as the local engine."""

import os

import numpy as np
import pytest
from PIL import Image

from pipeline.encoding import encode_ray
from pipeline.encoding.embeddings import EmbeddingCache, read_shards, write_shards
from pipeline.errors import UserError

ray = pytest.importorskip("ray")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (start-up costs seconds); workers import this checkout's pipeline."""
    os.environ["PYTHONPATH"] = os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, logging_level="WARNING")
    yield ray
    ray.shutdown()


def make_images(folder):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(7):
        path = folder / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (40 + 4 * i, 60, 3)).astype(np.uint8)).save(path)
        paths.append(str(path))
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    # an unreadable file, a missing one and a duplicate among good ones
    return paths[:3] + [str(corrupt)] + paths[3:] + [str(folder / "missing.jpg"), paths[0]]


def cache_contents(root):
    cache = EmbeddingCache(root)
    return {key: cache.get(key) for key in cache._load()}


def test_a_cuda_device_on_a_ray_cluster_without_a_gpu_is_a_user_error(monkeypatch):
    class CpuCluster:
        @staticmethod
        def cluster_resources():
            return {"CPU": 2.0}

    class CudaEncoder:
        name, requested_device = "RN50", "cuda"

    monkeypatch.setattr(encode_ray, "connect", lambda address: CpuCluster)
    with pytest.raises(UserError, match="the Ray cluster has no GPU: set encode.device to auto or cpu"):
        next(encode_ray.ray_batches(CudaEncoder(), ["a.jpg"], [0], 64, None, 4, 1, None))


def test_ray_engine_equals_local_engine(tmp_path, tiny_clip, local_ray):
    from pipeline.encoding.encode_images import encode_images
    from pipeline.encoding.load import load_clip

    paths = make_images(tmp_path)
    encoder = load_clip(str(tiny_clip), "cpu")
    results = {}
    for engine in ("local", "ray"):
        results[engine] = encode_images(
            encoder, paths, 64, EmbeddingCache(tmp_path / engine), batch_size=3, num_workers=2, engine=engine
        )
        write_shards(
            tmp_path / f"shards-{engine}",
            [f"id{i}" for i in results[engine].kept],
            results[engine].vectors,
            {"kind": "image"},
            shard_rows=4,
        )
    local, remote = results["local"], results["ray"]
    assert remote.kept == local.kept == [0, 1, 2, 4, 5, 6, 7, 9]
    assert remote.skipped == local.skipped and [p for p, _ in local.skipped] == [3, 8]
    assert remote.n_encoded == local.n_encoded == 7
    local_cache, ray_cache = cache_contents(tmp_path / "local"), cache_contents(tmp_path / "ray")
    assert sorted(ray_cache) == sorted(local_cache) and len(local_cache) == 7
    for key, vector in local_cache.items():
        np.testing.assert_allclose(ray_cache[key], vector, rtol=1e-5, atol=1e-6)
    a, b = read_shards(tmp_path / "shards-local"), read_shards(tmp_path / "shards-ray")
    assert a.ids == b.ids and a.metadata == b.metadata
    np.testing.assert_allclose(b.vectors, a.vectors, rtol=1e-5, atol=1e-6)
    assert (
        sorted(os.listdir(tmp_path / "shards-ray"))
        == sorted(os.listdir(tmp_path / "shards-local"))
        == ["part-00000.arrow", "part-00001.arrow"]
    )


def test_ray_engine_runs_an_open_clip_backbone(tmp_path, tiny_open_clip, local_ray):
    """The actors load the backbone by name (the registered tiny architecture included) and preprocess
    with its own normalisation, as the local engine does."""
    from pipeline.encoding.encode_images import encode_images
    from pipeline.encoding.load import load_clip

    paths = make_images(tmp_path)
    encoder = load_clip(tiny_open_clip, "cpu")
    local, remote = (
        encode_images(
            encoder, paths, 128, EmbeddingCache(tmp_path / engine), batch_size=3, num_workers=2, engine=engine
        )
        for engine in ("local", "ray")
    )
    assert remote.kept == local.kept and remote.n_encoded == local.n_encoded == 7
    np.testing.assert_allclose(remote.vectors, local.vectors, rtol=1e-5, atol=1e-6)
