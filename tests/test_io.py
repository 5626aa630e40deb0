import pytest

from pipeline.io import atomic_dir, write_text


def test_atomic_dir_keeps_the_old_folder_when_writing_fails(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        write_text("one", tmp / "a.txt")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            write_text("two", tmp / "a.txt")
            raise RuntimeError("killed half-way")
    assert (target / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left behind


def test_atomic_dir_replaces_the_whole_folder(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        write_text("x", tmp / "old-split.parquet")
    with atomic_dir(target) as tmp:
        write_text("y", tmp / "new-split.parquet")
    assert [p.name for p in target.iterdir()] == ["new-split.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_killed_writers_temporaries_are_removed_by_the_next_write(tmp_path):
    """SIGKILL skips every `finally`: what a killed run leaves beside a destination goes at its next write."""
    (tmp_path / ".out.k1ll3d.tmp").mkdir()  # a shard folder half written
    (tmp_path / ".out.k1ll3d.tmp" / "part-00000.arrow").write_bytes(b"x" * 100)
    (tmp_path / ".report.json.k1ll3d.tmp").write_text("{")  # a file half written
    (tmp_path / ".outer.k1ll3d.tmp").write_text("another destination's")  # not ours to touch
    with atomic_dir(tmp_path / "out") as tmp:
        write_text("new", tmp / "a.txt")
    write_text("{}", tmp_path / "report.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".outer.k1ll3d.tmp", "out", "report.json"]
    assert (tmp_path / "out" / "a.txt").read_text() == "new"


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_written_files_take_the_mode_open_would_give_them(tmp_path, umask):
    """Not mkstemp's private 0600: a group sharing the embedding cache, or a CI user reading another user's
    artifacts and reports, needs the umask's mode, as open() and mkdir() give it."""
    import os
    import stat

    import numpy as np
    import polars as pl

    from pipeline.encoding.embeddings import EmbeddingCache
    from pipeline.io import current_umask, write_json, write_parquet, write_torch

    def mode(path):
        return stat.S_IMODE(path.stat().st_mode)

    old = os.umask(umask)
    try:
        assert current_umask() == umask
        reference = tmp_path / "plain.txt"
        reference.write_text("open() made me")
        (tmp_path / "plain-folder").mkdir()
        written = [
            write_json({"map": 0.5}, tmp_path / "reports" / "eval.json"),
            write_parquet(pl.DataFrame({"a": [1]}), tmp_path / "artifacts" / "t.parquet"),
            write_torch({"w": 1}, tmp_path / "artifacts" / "model.pt"),
            write_text("x", tmp_path / "t.txt"),
        ]
        with atomic_dir(tmp_path / "shards") as tmp:
            written.append(write_text("y", tmp / "part-0.arrow"))
        cache = EmbeddingCache(tmp_path / "cache")
        cache.put(["a cat."], np.ones((1, 4), np.float32))
        chunks = list((tmp_path / "cache").glob("*.arrow"))
        assert chunks
    finally:
        os.umask(old)
    for path in [*written[:-1], tmp_path / "shards" / "part-0.arrow", *chunks]:
        assert mode(path) == mode(reference) == 0o666 & ~umask, (path, oct(mode(path)))
    assert mode(tmp_path / "shards") == mode(tmp_path / "plain-folder") == 0o777 & ~umask
