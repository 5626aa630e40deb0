"""Embedding shards (Arrow IPC) and the content-addressed embedding cache.

A shard folder holds `part-00000.arrow`, `part-00001.arrow`, ...: columns `id`
(Utf8) and `embedding` (FixedSizeList<float32>[d]); the schema metadata records
the CLIP model, the input kind and resolution, and whether vectors are
L2-normalised (they are stored raw: normalising is a training choice).

The cache maps sha256(model, kind, resolution, resize mode, content) to a vector, so an input
table that changed in 10% of its rows is encoded again only for those rows, and a
killed encode resumes where it stopped. It lives outside DVC's outs, which DVC
deletes before a stage runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from pipeline.io import atomic_dir, atomic_path, temp_owner, this_host

STALE_AFTER_S = 3600  # a cache temporary this old, of a writer on another host, is a killed writer's

# <embeddings root>/skipped.parquet of every image encode stage: the images that could not be read.
SKIPPED_SCHEMA = {"split": pl.Utf8, "resolution": pl.Int32, "image_id": pl.Utf8, "path": pl.Utf8, "error": pl.Utf8}


@dataclass
class Embeddings:
    ids: list[str]
    vectors: np.ndarray  # (n, d) float32
    metadata: dict[str, str]

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, ids: Iterable[str]) -> np.ndarray:
        """Rows for `ids`, in that order; a KeyError names the first missing id."""
        position = {i: n for n, i in enumerate(self.ids)}
        rows = []
        for i in ids:
            if i not in position:
                raise KeyError(f"no embedding for id {i!r} (metadata {self.metadata})")
            rows.append(position[i])
        return self.vectors[rows]


def _table(ids: list[str], vectors: np.ndarray, metadata: dict[str, str] | None = None) -> pa.Table:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
    table = pa.table({"id": pa.array(ids, pa.string()), "embedding": column})
    return table.replace_schema_metadata({k: str(v) for k, v in (metadata or {}).items()})


def _write_ipc(table: pa.Table, path: Path, unique: bool = False) -> None:
    with atomic_path(path, unique=unique) as tmp:
        with ipc.new_file(tmp, table.schema) as writer:
            writer.write_table(table)


def _read_ipc(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return ipc.open_file(source).read_all()


def _vectors(table: pa.Table) -> np.ndarray:
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    return column.values.to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)


def write_shards(
    out_dir: str | Path, ids: list[str], vectors: np.ndarray, metadata: dict[str, str], shard_rows: int = 100_000
) -> Path:
    """Write a shard folder atomically (the old folder is swapped out only once the new one is complete)."""
    out_dir = Path(out_dir)
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids but {len(vectors)} vectors")
    n_shards = max(1, -(-len(ids) // shard_rows))
    metadata = {
        **metadata,
        "dim": str(vectors.shape[1] if len(vectors) else metadata.get("dim", 0)),
        "rows": str(len(ids)),
    }
    with atomic_dir(out_dir) as tmp:
        for s in range(n_shards):
            part = slice(s * shard_rows, (s + 1) * shard_rows)
            _write_ipc(_table(ids[part], vectors[part], metadata), tmp / f"part-{s:05d}.arrow")
    return out_dir


def read_shards(path: str | Path) -> Embeddings:
    """Read a shard folder (or one .arrow file) into memory."""
    path = Path(path)
    files = sorted(path.glob("*.arrow")) if path.is_dir() else [path]
    if not files or not files[0].exists():
        raise FileNotFoundError(f"{path}: no embedding shards (*.arrow) there; run the encode stage first")
    tables = [_read_ipc(f) for f in files]
    metadata = {k.decode(): v.decode() for k, v in (tables[0].schema.metadata or {}).items()}
    ids = [i for t in tables for i in t.column("id").to_pylist()]
    vectors = np.concatenate([_vectors(t) for t in tables]) if tables else np.zeros((0, 0), np.float32)
    return Embeddings(ids, vectors, metadata)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The schema metadata of a shard folder (its first shard), without reading the vectors."""
    files = sorted(Path(path).glob("*.arrow"))
    if not files:
        raise FileNotFoundError(f"{path}: no embedding shards (*.arrow) there; run the encode stage first")
    with pa.memory_map(str(files[0])) as source:
        metadata = ipc.open_file(source).schema.metadata or {}
    return {k.decode(): v.decode() for k, v in metadata.items()}


def content_key(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


class EmbeddingCache:
    """Content-addressed vectors in append-only Arrow chunks under `root`, shared by every process.

    Queued experiments (`-j N`), other clones and `tai predict` read and write one cache at once, with
    no lock. What makes that safe:

    - an entry reaches the cache only inside a whole chunk file, written beside it and renamed into place
      (`put`): a reader never sees half a chunk, and a writer killed mid-write leaves only a temporary;
    - compaction writes the merged file before it removes the chunks it merged, and removes only chunks it
      has read: an entry is in some chunk file at every moment;
    - a reader that finds a chunk gone (compacted by another process after it listed the folder) lists the
      folder again: the merged file that holds the chunk's entries is there by then;
    - a temporary is removed only once its writer is gone (`_stale`): dead on this host, or an hour old.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._index: dict[str, np.ndarray] | None = None

    def _read_chunks(self) -> tuple[dict[str, np.ndarray], list[Path]]:
        """Every entry on disk now, and the chunk files read; chunks that vanish mid-way are found again
        in the file that merged them."""
        entries: dict[str, np.ndarray] = {}
        read: dict[str, Path] = {}
        while True:
            vanished = False
            for chunk in sorted(self.root.glob("*.arrow")):
                if chunk.name in read:
                    continue
                try:
                    table = _read_ipc(chunk)
                except FileNotFoundError:
                    vanished = True
                    continue
                read[chunk.name] = chunk
                entries.update(zip(table.column("id").to_pylist(), _vectors(table)))
            if not vanished:
                return entries, list(read.values())

    def _load(self) -> dict[str, np.ndarray]:
        if self._index is None:
            self._index, _ = self._read_chunks()
        return self._index

    def __contains__(self, key: str) -> bool:
        return key in self._load()

    def __len__(self) -> int:
        return len(self._load())

    def get(self, key: str) -> np.ndarray:
        return self._load()[key]

    def compact(self, max_chunks: int = 8) -> None:
        """Merge the per-batch chunks into one file per embedding width once there are more than `max_chunks`
        (every encode run and `tai predict` call it at their end; backbones of different widths share the cache
        folder, never a key), and remove the temporaries of writers that are gone (`_stale`)."""
        for temporary in self.root.glob(".*.tmp"):
            if _stale(temporary):
                temporary.unlink(missing_ok=True)
        if len(list(self.root.glob("*.arrow"))) <= max_chunks:
            return
        merged, chunks = self._read_chunks()
        by_width: dict[int, list[str]] = {}
        for key, vector in merged.items():
            by_width.setdefault(len(vector), []).append(key)
        for keys in by_width.values():
            _write_ipc(
                _table(keys, np.stack([merged[k] for k in keys])),
                self.root / f"chunk-{uuid.uuid4().hex}.arrow",
                unique=True,
            )
        for chunk in chunks:  # only those read, and only once the merged files are in place: nothing is lost
            chunk.unlink(missing_ok=True)

    def put(self, keys: list[str], vectors: np.ndarray) -> None:
        """Persist a batch at once (one atomic chunk file), so a kill loses at most the batch in flight."""
        if not keys:
            return
        _write_ipc(_table(list(keys), vectors), self.root / f"chunk-{uuid.uuid4().hex}.arrow", unique=True)
        index = self._load()
        for key, vector in zip(keys, np.asarray(vectors, dtype=np.float32)):
            index[key] = vector


def _stale(temporary: Path) -> bool:
    """A cache temporary whose writer is gone: its process (named in the file name, `pipeline.io`) no longer
    runs on this host, or it is `STALE_AFTER_S` old (a writer on another host sharing the folder)."""
    owner = temp_owner(temporary)
    if owner is not None and owner[0] == this_host():
        return not _alive(owner[1])
    with contextlib.suppress(FileNotFoundError):
        return temporary.stat().st_mtime < time.time() - STALE_AFTER_S
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
