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
