"""A full disk: every write that fails with ENOSPC leaves no partial artifact and no half-written cache
entry, and a stage says "disk full" in one line with the path (exit 2).

The full disk is real to the writers: every temporary `pipeline.io` creates is a link to /dev/full,
where the kernel answers each write with ENOSPC (polars, pyarrow, torch and plain files each report it
their own way)."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

import pipeline.io as io_module
from pipeline.encoding.embeddings import EmbeddingCache, write_shards
from pipeline.io import DiskFullError, write_json, write_parquet, write_text, write_torch

pytestmark = pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")


class FullDisk:
    """Stands in for the `tempfile` module inside pipeline.io: temporary files are links to /dev/full."""

    def __init__(self):
        self.injected = 0

    def mkstemp(self, dir, prefix, suffix):
        fd, path = tempfile.mkstemp(dir=dir, prefix=prefix, suffix=suffix)
        os.close(fd)
        os.unlink(path)
        os.symlink("/dev/full", path)
        self.injected += 1
        return os.open(os.devnull, os.O_RDONLY), path

    mkdtemp = staticmethod(tempfile.mkdtemp)


@pytest.fixture
def full_disk(monkeypatch) -> FullDisk:
    disk = FullDisk()
    monkeypatch.setattr(io_module, "tempfile", disk)
    return disk


def listing(folder: Path) -> list[str]:
    """Every file under `folder` (an empty folder made on the way is not an artifact)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())


WRITERS = {
    "parquet": lambda path: write_parquet(pl.DataFrame({"a": list(range(1000))}), path),
    "json": lambda path: write_json({"map": 0.5}, path),
    "text": lambda path: write_text("epoch,loss\n1,0.7\n", path),
    "torch": lambda path: write_torch({"w": torch.zeros(1000)}, path),
    "shards": lambda path: write_shards(path, ["a", "b"], np.ones((2, 4), np.float32), {"model": "m"}),
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_full_disk_leaves_the_old_artifact_and_no_temporary(kind, tmp_path, monkeypatch):
    target = tmp_path / "out" / f"artifact.{kind}"
    WRITERS[kind](target)  # a previous run's artifact
    before = {p: p.read_bytes() for p in target.parent.rglob("*") if p.is_file()}
    disk = FullDisk()
    monkeypatch.setattr(io_module, "tempfile", disk)
    with pytest.raises(DiskFullError) as error:
        WRITERS[kind](target)
    message = str(error.value)
    assert disk.injected >= 1 and "\n" not in message
    assert message.startswith(f"disk full: could not write {target}") and "nothing half-written was kept" in message
    assert {p: p.read_bytes() for p in target.parent.rglob("*") if p.is_file()} == before  # old one intact
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_a_full_disk_writes_no_cache_entry(tmp_path, full_disk):
    cache = EmbeddingCache(tmp_path / "cache")
    with pytest.raises(DiskFullError, match=r"disk full: could not write .*cache/chunk-[0-9a-f]+\.arrow"):
        cache.put(["k1", "k2"], np.ones((2, 4), np.float32))
    assert listing(tmp_path / "cache") == []
    assert len(EmbeddingCache(tmp_path / "cache")) == 0  # another reader sees no entry, not half of one


def test_the_train_stage_says_disk_full_in_one_line_and_exits_2(tmp_path, monkeypatch, caplog):
    from pipeline.stage import run
    from stages.train import main
    from test_train_faults import stage_project

    project = stage_project(tmp_path, {"batch_size": 16})
    monkeypatch.chdir(project)
    monkeypatch.setenv("TAI_CACHE_DIR", str(tmp_path / "cache"))  # where the checkpoint goes (per-user cache)
    before = listing(project / "artifacts")
    monkeypatch.setattr(io_module, "tempfile", FullDisk())
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exit_:
        run(main, "train")
    assert exit_.value.code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert errors[0].startswith(f"disk full: could not write {tmp_path / 'cache' / 'resume' / 'train'}/"), errors
    assert listing(project / "artifacts") == before  # no model, no temporary
    assert listing(tmp_path / "cache" / "resume" / "train") == []  # no checkpoint, no temporary
    assert not (project / "reports").exists()
