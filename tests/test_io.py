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
    (tmp_path / ".out.k1ll3d.tmp").mkdir()                      # a shard folder half written
    (tmp_path / ".out.k1ll3d.tmp" / "part-00000.arrow").write_bytes(b"x" * 100)
    (tmp_path / ".report.json.k1ll3d.tmp").write_text("{")      # a file half written
    (tmp_path / ".outer.k1ll3d.tmp").write_text("another destination's")   # not ours to touch
    with atomic_dir(tmp_path / "out") as tmp:
        write_text("new", tmp / "a.txt")
    write_text("{}", tmp_path / "report.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".outer.k1ll3d.tmp", "out", "report.json"]
    assert (tmp_path / "out" / "a.txt").read_text() == "new"
