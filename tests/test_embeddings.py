import os

import numpy as np
import pytest
from PIL import Image

from pipeline.encoding.embeddings import EmbeddingCache, read_shards, write_shards


def test_shards_round_trip_with_metadata(tmp_path):
    ids = [f"id{i}" for i in range(25)]
    vectors = np.random.default_rng(0).normal(size=(25, 8)).astype(np.float32)
    write_shards(tmp_path / "emb", ids, vectors, {"model": "m", "kind": "text"}, shard_rows=10)
    assert sorted(p.name for p in (tmp_path / "emb").iterdir()) == [
        "part-00000.arrow",
        "part-00001.arrow",
        "part-00002.arrow",
    ]
    back = read_shards(tmp_path / "emb")
    assert back.ids == ids and back.metadata["model"] == "m" and back.metadata["dim"] == "8"
    np.testing.assert_array_equal(back.vectors, vectors)
    np.testing.assert_array_equal(back.select(["id3", "id0"]), vectors[[3, 0]])
    with pytest.raises(KeyError, match="id99"):
        back.select(["id99"])


def test_shards_are_arrow_ipc_with_a_fixed_size_list_column(tmp_path):
    import pyarrow as pa
    import pyarrow.ipc as ipc

    write_shards(tmp_path / "emb", ["a"], np.ones((1, 4), np.float32), {})
    table = ipc.open_file(str(tmp_path / "emb" / "part-00000.arrow")).read_all()
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 4)
    assert table.schema.field("id").type == pa.string()


def test_rewrite_replaces_old_shards(tmp_path):
    write_shards(tmp_path / "emb", [str(i) for i in range(30)], np.zeros((30, 2), np.float32), {}, shard_rows=10)
    write_shards(tmp_path / "emb", ["x"], np.zeros((1, 2), np.float32), {}, shard_rows=10)
    assert read_shards(tmp_path / "emb").ids == ["x"]
    assert not list(tmp_path.glob(".*"))  # no temporary folders left behind


def test_cache_persists_across_instances(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    cache.put(["k1", "k2"], np.array([[1, 2], [3, 4]], np.float32))
    again = EmbeddingCache(tmp_path / "cache")
    assert "k1" in again and "k3" not in again and len(again) == 2
    np.testing.assert_array_equal(again.get("k2"), [3, 4])


class CountingEncoder:
    """Wraps a ClipEncoder to count what actually reaches the model."""

    def __init__(self, inner):
        self.inner, self.texts, self.images = inner, 0, 0  # images: counted by `counting_images`
        self.identity, self.embed_dim, self.precision = inner.identity, inner.embed_dim, inner.precision

    def tokenize(self, texts):
        return self.inner.tokenize(texts)

    def encode_tokens(self, tokens):
        self.texts += len(tokens)
        return self.inner.encode_tokens(tokens)

    def __getattr__(self, name):  # everything else (transform, token_lengths, set_resolution) as the inner one
        return getattr(self.inner, name)


def counting_images(monkeypatch, encoder: CountingEncoder) -> None:
    """Count, on `encoder`, the images the image tower runs on (`pipeline.encoding.image_runtime.ImageEncoder`)."""
    import pipeline.encoding.encode_images as encoding
    from pipeline.encoding.image_runtime import ImageEncoder

    class Counting(ImageEncoder):
        def __call__(self, pixels, resolution):
            encoder.images += len(pixels)
            return super().__call__(pixels, resolution)

    monkeypatch.setattr(encoding, "image_encoder", Counting)


def test_changing_ten_percent_of_texts_encodes_only_those(tmp_path, tiny_clip):
    from pipeline.encoding.encode import encode_texts
    from pipeline.encoding.load import load_clip

    encoder = CountingEncoder(load_clip(str(tiny_clip), "cpu"))
    cache = EmbeddingCache(tmp_path / "cache")
    texts = [f"a photo of thing number {i}" for i in range(100)]
    first = encode_texts(encoder, texts, cache, batch_size=32)
    assert encoder.texts == 100 and first.n_encoded == 100
    changed = texts[:90] + [f"a new caption {i}" for i in range(10)]
    second = encode_texts(encoder, changed, EmbeddingCache(tmp_path / "cache"), batch_size=32)
    assert encoder.texts == 110 and second.n_encoded == 10 and second.n_cached == 90
    np.testing.assert_allclose(second.vectors[:90], first.vectors[:90])
    np.testing.assert_allclose(second.vectors[90:], encoder.inner.encode_texts(changed[90:]), rtol=1e-5, atol=1e-6)


def test_unreadable_images_are_skipped_and_reported(tmp_path, tiny_clip, monkeypatch):
    from pipeline.encoding.encode_images import encode_images
    from pipeline.encoding.load import load_clip

    good = tmp_path / "good.jpg"
    Image.new("RGB", (50, 40), (200, 10, 10)).save(good)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg at all")
    paths = [str(good), str(corrupt), str(tmp_path / "missing.jpg"), str(good)]
    encoder = CountingEncoder(load_clip(str(tiny_clip), "cpu"))
    counting_images(monkeypatch, encoder)
    result = encode_images(encoder, paths, 64, EmbeddingCache(tmp_path / "cache"), batch_size=2)
    assert result.kept == [0, 3]
    assert [p for p, _ in result.skipped] == [1, 2]
    assert "missing.jpg" in result.skipped[1][1] or "No such file" in result.skipped[1][1]
    assert result.vectors.shape == (2, encoder.embed_dim)
    assert encoder.images == 1  # the duplicate image is encoded once (content-addressed)
    again = encode_images(encoder, paths, 64, EmbeddingCache(tmp_path / "cache"), batch_size=2)
    assert encoder.images == 1 and again.n_cached == 2
    np.testing.assert_array_equal(again.vectors, result.vectors)


def test_compaction_merges_chunks_and_keeps_every_vector(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    for i in range(12):
        cache.put([f"k{i}"], np.full((1, 3), i, np.float32))
    assert len(list((tmp_path / "cache").glob("*.arrow"))) == 12
    cache.compact(max_chunks=8)
    assert len(list((tmp_path / "cache").glob("*.arrow"))) == 1
    again = EmbeddingCache(tmp_path / "cache")
    assert len(again) == 12
    np.testing.assert_array_equal(again.get("k7"), [7, 7, 7])


def test_compaction_keeps_backbones_of_different_widths_apart(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")  # one per-user folder: RN50 (1024-d) and a ViT-B (512-d) both write here
    for i in range(6):
        cache.put([f"wide{i}"], np.full((1, 4), i, np.float32))
        cache.put([f"narrow{i}"], np.full((1, 2), -i, np.float32))
    cache.compact(max_chunks=8)
    assert len(list((tmp_path / "cache").glob("*.arrow"))) == 2  # one merged chunk per width
    again = EmbeddingCache(tmp_path / "cache")
    assert len(again) == 12
    np.testing.assert_array_equal(again.get("wide5"), [5] * 4)
    np.testing.assert_array_equal(again.get("narrow5"), [-5] * 2)


def test_compaction_removes_the_temporaries_of_killed_chunk_writes_only_once_stale(tmp_path):
    import os
    import time

    from pipeline.encoding.embeddings import STALE_AFTER_S

    cache = EmbeddingCache(tmp_path / "cache")
    cache.put(["k"], np.ones((1, 3), np.float32))
    killed, writing = tmp_path / "cache" / ".chunk-a.arrow.x.tmp", tmp_path / "cache" / ".chunk-b.arrow.y.tmp"
    killed.write_bytes(b"half")
    writing.write_bytes(b"half")  # another process's batch, being written now
    old = time.time() - STALE_AFTER_S - 60
    os.utime(killed, (old, old))
    cache.compact()
    assert not killed.exists() and writing.exists()
    np.testing.assert_array_equal(EmbeddingCache(tmp_path / "cache").get("k"), [1, 1, 1])


def test_a_dead_writers_temporary_goes_at_once_a_live_ones_stays(tmp_path):
    """Temporaries name their writer (host~pid): one whose process is gone on this host is removed by the next
    compaction, without waiting an hour; a live writer's, or one from another host, stays until stale."""
    import subprocess
    import sys

    from pipeline.io import temp_owner, this_host

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cache = EmbeddingCache(tmp_path / "cache")
    cache.put(["k"], np.ones((1, 3), np.float32))
    folder = tmp_path / "cache"
    names = {
        "dead": f".chunk-a.arrow.{this_host()}~{dead.pid}-x1.tmp",
        "live": f".chunk-b.arrow.{this_host()}~{os.getpid()}-x2.tmp",
        "elsewhere": f".chunk-c.arrow.otherhost~{dead.pid}-x3.tmp",
    }
    for name in names.values():
        (folder / name).write_bytes(b"half")
    assert temp_owner(folder / names["dead"]) == (this_host(), dead.pid)
    cache.compact()
    assert sorted(p.name for p in folder.glob(".*.tmp")) == sorted([names["live"], names["elsewhere"]])


def test_an_encode_run_compacts_the_cache(tmp_path, tiny_clip, monkeypatch):
    """The encode_text stage, in-process: twelve earlier chunks and this run's are merged at its end."""
    import polars as pl
    import yaml

    from pipeline.config import load_params
    from pipeline.io import write_parquet
    from stages.encode_text import main

    cache = tmp_path / "cache"
    monkeypatch.setenv("TAI_CACHE_DIR", str(cache))
    for i in range(12):
        EmbeddingCache(cache).put([f"earlier-{i}"], np.full((1, 64), i, np.float32))
    write_parquet(
        pl.DataFrame({"text_id": ["t0", "t1"], "text": ["a cat.", "a dog on a sofa."]}),
        tmp_path / "artifacts" / "texts.parquet",
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"encode": {"model": str(tiny_clip), "device": "cpu"}}))
    monkeypatch.chdir(tmp_path)
    main(load_params())
    assert len(list(cache.glob("*.arrow"))) == 1
    merged = EmbeddingCache(cache)
    assert len(merged) == 14 and merged.get("earlier-7")[0] == 7
    assert read_shards(tmp_path / "artifacts" / "embeddings" / "text").ids == ["t0", "t1"]
