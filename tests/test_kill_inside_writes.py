"""SIGKILL a writer in the middle of a write, not between writes: a child process writes once normally, then
again with its write paused half-way (a test hook that writes some of the bytes and waits), and is killed
there. A cache `put`, a shard folder's swap and a checkpoint write each leave what was there before, intact
and readable, and only a temporary, which the next write (or the cache's compaction) removes. The kill tests
of the stages (test_encode_kill.py, test_train_kill.py, ...) kill between writes; a write done in place
instead of beside its destination passes those and fails these."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from e2e_project import stage_env

CHILD = r"""
import os, sys, time
from pathlib import Path
import numpy as np

what, where, marker = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

def pause():
    marker.write_text(str(os.getpid()))
    time.sleep(600)

if what == "cache":
    import pyarrow.ipc as ipc
    from pipeline.encoding.embeddings import EmbeddingCache
    EmbeddingCache(where).put(["a", "b"], np.ones((2, 4), np.float32))
    real = ipc.new_file

    class HalfWritten:   # the batches go out, the footer never does
        def __init__(self, sink, schema):
            self.writer = real(sink, schema)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return False
        def write_table(self, table):
            self.writer.write_table(table)
            pause()

    ipc.new_file = HalfWritten
    EmbeddingCache(where).put(["c", "d"], np.full((2, 4), 2, np.float32))

elif what == "shards":
    import pipeline.encoding.embeddings as embeddings
    embeddings.write_shards(where, ["a", "b", "c", "d"], np.ones((4, 4), np.float32), {"v": "1"}, shard_rows=2)
    real, calls = embeddings._write_ipc, []

    def second_shard_pauses(table, path, unique=False):
        calls.append(path)
        if len(calls) == 2:
            pause()
        real(table, path, unique)

    embeddings._write_ipc = second_shard_pauses
    embeddings.write_shards(where, ["e", "f", "g", "h"], np.full((4, 4), 2, np.float32), {"v": "2"}, shard_rows=2)

elif what == "checkpoint":
    from pipeline.io import write_torch
    write_torch({"epoch": 1, "weights": list(range(1000))}, where)
    real = Path.write_bytes

    def half(self, data):
        real(self, bytes(memoryview(data)[: len(data) // 2]))
        pause()

    Path.write_bytes = half
    write_torch({"epoch": 2, "weights": list(range(1000))}, where)
"""


def kill_inside(tmp_path: Path, what: str, where: Path) -> None:
    """Run the child until its second write pauses half-way, then SIGKILL it."""
    marker = tmp_path / f"{what}.paused"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, what, str(where), str(marker)],
        env=stage_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the {what} writer ended before its write paused: {proc.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, f"the {what} writer never paused inside its write"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


def test_a_kill_inside_a_cache_put_leaves_no_half_chunk(tmp_path):
    from pipeline.encoding.embeddings import EmbeddingCache

    root = tmp_path / "cache"
    kill_inside(tmp_path, "cache", root)
    assert len(list(root.glob("*.arrow"))) == 1, sorted(p.name for p in root.iterdir())  # only the first put's
    cache = EmbeddingCache(root)
    assert len(cache) == 2 and "c" not in cache  # every chunk reads whole; the killed batch is absent
    np.testing.assert_array_equal(cache.get("a"), np.ones(4, np.float32))
    assert len(temporaries(root)) == 1  # what the kill left: a temporary...
    cache.compact()
    assert temporaries(root) == []  # ...gone once its writer is (a dead pid)


def test_a_kill_inside_a_shard_swap_leaves_the_previous_folder(tmp_path):
    from pipeline.encoding.embeddings import read_shards, write_shards

    out = tmp_path / "embeddings" / "test-64"
    kill_inside(tmp_path, "shards", out)
    before = read_shards(out)
    assert before.ids == ["a", "b", "c", "d"] and before.metadata["v"] == "1"
    np.testing.assert_array_equal(before.vectors, np.ones((4, 4), np.float32))
    assert len(temporaries(out.parent)) == 1
    write_shards(out, ["e"], np.zeros((1, 4), np.float32), {"v": "3"})
    assert temporaries(out.parent) == [] and read_shards(out).ids == ["e"]


def test_a_kill_inside_a_checkpoint_write_keeps_the_last_whole_checkpoint(tmp_path):
    from pipeline.io import read_checkpoint, write_torch

    checkpoint = tmp_path / "train" / "checkpoint.pt"
    kill_inside(tmp_path, "checkpoint", checkpoint)
    state = read_checkpoint(checkpoint)
    assert state is not None and state["epoch"] == 1  # the epoch before the kill, whole
    assert len(temporaries(checkpoint.parent)) == 1
    write_torch({"epoch": 3}, checkpoint)
    assert temporaries(checkpoint.parent) == [] and read_checkpoint(checkpoint)["epoch"] == 3
