"""Atomic writes: a reader (or a killed run) never sees half a file.

Everything is written to a temporary file in the destination's folder, then
renamed over the destination, which POSIX makes atomic on one filesystem. A run
killed mid-write leaves its temporary (".name.XXXX.tmp") behind; the next write of
the same destination removes it, so a killed encode leaves no gigabyte of half-written
shards, and no stray file ends up inside a DVC output folder. A destination has one
writer at a time (a stage in its own workspace); names that are new each time (the
embedding cache's chunks) skip the look (`unique`).

Written files and folders take the mode `open()` and `mkdir()` would give them (0666 / 0777 less the
umask), not mkstemp's private 0600 / 0700: a group sharing a cache folder, or a CI user reading another
user's artifacts, can read them.

A write that fails because the disk is full (ENOSPC, or a quota) removes its temporary and raises
DiskFullError, a user error: the stage says "disk full" in one line with the path and exits 2.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import io
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import polars as pl

from .errors import UserError

# How writers report a full disk: OSError's errno, or the OS's words inside another library's message
# (polars: "No space left on device (os error 28)").
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_WORDS = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")


class DiskFullError(UserError, OSError):
    """A write failed for want of space; its temporary was removed, so nothing half-written is left."""


def is_disk_full(error: BaseException) -> bool:
    """True when `error`, or an error it came from, says the disk (or a quota) is full."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            return True
        if any(words in str(error) for words in DISK_FULL_WORDS):
            return True
        error = error.__cause__ or error.__context__
    return False


def disk_full(path: str | Path) -> DiskFullError:
    """The one line a stage prints when `path` could not be written for want of space."""
    path = Path(path)
    folder = next((p for p in (path.parent, *path.parents) if p.exists()), Path("."))
    free = shutil.disk_usage(folder).free / 2**20
    return DiskFullError(
        f"disk full: could not write {path} ({free:.0f} MiB left on its disk); nothing half-written was kept. "
        "Free some space (`dvc gc` drops cached outputs no commit or experiment uses) and run again"
    )


def read_checkpoint(path: str | Path) -> dict | None:
    """A training checkpoint (`write_torch`) of tensors and plain data only (weights_only: a tampered file
    cannot run code); None where there is none, or it cannot be read that way (training starts afresh)."""
    import torch

    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for foreign or truncated files
        logging.getLogger(__name__).warning(
            "ignoring checkpoint %s: not a plain checkpoint of tensors (%s); training from scratch",
            path,
            type(e).__name__,
        )
        return None


@contextlib.contextmanager
def _disk_full_named(path: Path, outer: bool = False) -> Iterator[None]:
    """Turn a full disk met inside the block into DiskFullError naming `path`; `outer`: also one raised for a
    file inside it (a shard in a folder's temporary twin), so the user reads the folder's real name."""
    try:
        yield
    except DiskFullError as e:
        if outer:
            raise disk_full(path) from e
        raise
    except Exception as e:
        if is_disk_full(e):
            raise disk_full(path) from e
        raise


def current_umask() -> int:
    """The process's umask, read without changing it (Linux: /proc; elsewhere set and restored at once)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _as_open_would(path: Path, directory: bool = False) -> None:
    """Give a mkstemp/mkdtemp result the mode a plain open() (mkdir()) would have: 0666 (0777) less the umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def this_host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def _owned_prefix(path: Path) -> str:
    """A temporary's name says who writes it (host and process), so a shared folder's reader can tell a
    killed writer's leftovers from a live writer's file: `.<name>.<host>~<pid>-<random>.tmp`."""
    return f"{_temp_prefix(path)}{this_host()}~{os.getpid()}-"


def temp_owner(temporary: Path) -> tuple[str, int] | None:
    """(host, pid) of the writer of a temporary made by `atomic_path`, or None for other names."""
    match = re.search(r"\.([A-Za-z0-9_]+)~(\d+)-[^.]*\.tmp$", temporary.name)
    return (match.group(1), int(match.group(2))) if match else None


def remove_stale_temps(path: Path) -> None:
    """The temporaries a killed writer of `path` left beside it."""
    for stale in path.parent.glob(f"{glob.escape(_temp_prefix(path))}*.tmp"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, unique: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.
    `unique`: `path` is a new name, so no earlier writer's temporaries can be there to remove."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not unique:
        remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_owned_prefix(path), suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        _as_open_would(tmp)
        with _disk_full_named(path):
            yield tmp
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(frame: pl.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)
    return Path(path)


def write_json(obj: Any, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    return Path(path)


def write_text(text: str, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_torch(obj: Any, path: str | Path) -> Path:
    """torch.save, atomically. Serialised in memory first: torch reports a full disk as a bare
    RuntimeError ("unexpected pos"), a plain file write as the OSError it is."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; swap it in for `path` if the block succeeds, else remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp"))
    try:
        _as_open_would(tmp, directory=True)
        with _disk_full_named(path, outer=True):
            yield tmp
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


KEEP_UNUSED_S = 7 * 24 * 3600  # how long resume state of other settings stays after it was last written


def prune_unused(folder: Path, keep: Path, what: str, older_than_s: float = KEEP_UNUSED_S) -> list[str]:
    """Delete the entries of a per-user resume folder other than `keep` that nobody has written for
    `older_than_s`: another setting's state stays while a parallel run may use it, and switching a param back
    within that time still finds it. Returns the names removed."""
    removed = []
    now = time.time()
    for entry in folder.iterdir() if folder.is_dir() else ():
        if entry == keep or now - _last_written(entry) < older_than_s:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    if removed:
        logging.getLogger(__name__).info(
            "%s: removed %d entr%s of other settings, unused for %.0f days: %s",
            what,
            len(removed),
            "y" if len(removed) == 1 else "ies",
            older_than_s / 86400,
            removed,
        )
    return removed


def _last_written(entry: Path) -> float:
    """The newest modification time in `entry` (a file, or a folder and its files); 0 if it vanished."""
    try:
        times = [entry.stat().st_mtime] + ([p.stat().st_mtime for p in entry.iterdir()] if entry.is_dir() else [])
    except FileNotFoundError:
        return 0.0
    return max(times)
