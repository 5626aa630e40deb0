"""Fetch, verify and unpack public datasets into `data/` (`tai download NAME`).

A downloadable dataset is a `Download`: a list of archives with a URL and an MD5 checksum, held by
the dataset's spec (`pipeline.data.datasets.specs`). For every archive, `download()`:

1. skips it if `data/.tai-downloads.json` records it as unpacked with the same checksum and the
   dataset folder is there;
2. otherwise uses `data/<archive>` if it is already there and its checksum matches (e.g. fetched by
   hand), or downloads it into `data/<archive>.part` (urllib + tqdm progress). An interrupted
   transfer resumes: a dropped connection is picked up again at once (HTTP Range, up to 3 times
   while bytes keep arriving), and a `.part` left by an earlier run is continued, not restarted (a
   server that ignores Range sends the whole file again). The MD5 of the whole file is then checked:
   a mismatch deletes the `.part` and raises DownloadError naming the file and both sums; a match
   renames it into place;
3. unpacks it (tar or zip) into a temporary folder inside its target (no paths outside the folder,
   no device files), moves the entries into the target, merging folders, and records it.

Archives this command downloaded are removed after unpacking unless `keep_archives=True`
(they would otherwise sit inside `data/`, which the prepare stage hashes); archives you placed
there yourself are left alone.

Datasets with no official download (NUS-WIDE) have a `ManualDataset`: `specs.download_dataset` returns their
folder when it is in place and otherwise raises ManualDownloadError with the instructions.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from pipeline import paths
from pipeline.errors import UserError
from pipeline.io import DiskFullError, disk_full, is_disk_full, write_json

MARKER = ".tai-downloads.json"
CHUNK = 1 << 20
RETRIES = 3  # reconnections within one run after a transfer was cut, while bytes keep arriving
TRANSIENT = (OSError, http.client.HTTPException)  # URLError, timeouts, resets, IncompleteRead


class DownloadError(UserError, RuntimeError):
    """A download failed, or its checksum did not match (the message says what to do)."""


class ManualDownloadError(DownloadError):
    """The dataset cannot be downloaded by this command; the message says how to get it."""


@dataclass(frozen=True)
class Archive:
    url: str
    md5: str

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Download:
    name: str
    description: str
    archives: tuple[Archive, ...]
    extracts_to: str  # the dataset folder (relative to dest) once every archive is unpacked
    unpack_to: str = ""  # folder (relative to dest) the archives are unpacked into


@dataclass(frozen=True)
class ManualDataset:
    name: str
    extracts_to: str  # where the instructions put it (relative to dest)
    instructions: str  # {root} is replaced by the folder


def md5sum(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_once(url: str, target: Path, progress: bool, timeout: float, log: Callable[[str], None]) -> None:
    """One request: append to `target` from its current size (Range), or write it anew when the
    server sends the whole file. The file is only created once the server answered."""
    from tqdm import tqdm

    offset = target.stat().st_size if target.exists() else 0
    headers = {"User-Agent": "tai-adapter"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing after `offset`: the .part is complete (the checksum decides)
            return
        raise
    with response:
        resumed = offset > 0 and getattr(response, "status", None) == 206
        if resumed:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                raise DownloadError(
                    f"{url}: asked for the bytes from {offset} but the server answered "
                    f"{response.headers.get('Content-Range')!r}; delete {target} and run the command again"
                )
        elif offset:
            log(f"{url}: the server does not resume transfers, downloading the whole file again")
        length = response.headers.get("Content-Length")
        total = (offset if resumed else 0) + int(length) if length else None
        with (
            open(target, "ab" if resumed else "wb") as out,
            tqdm(
                total=total,
                initial=offset if resumed else 0,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=url.rsplit("/", 1)[-1],
                disable=not progress,
            ) as bar,
        ):
            received = 0
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                received += len(block)
                bar.update(len(block))
    if length and received < int(length):  # http.client ends a short body quietly: make it an error
        raise http.client.IncompleteRead(b"", int(length) - received)


def fetch(
    url: str,
    target: Path,
    progress: bool = True,
    timeout: float = 60.0,
    retries: int = RETRIES,
    log: Callable[[str], None] = print,
) -> str:
    """Download `url` into `target`, continuing after the bytes already there; return the whole file's MD5.

    A transfer cut short is resumed at once (HTTP Range) up to `retries` times, as long as each try
    brought new bytes; otherwise the error propagates and `target` keeps what arrived, for the next run.
    """
    target = Path(target)
    attempt = 0
    while True:
        before = target.stat().st_size if target.exists() else 0
        try:
            _fetch_once(url, target, progress, timeout, log)
            break
        except DownloadError:
            raise
        except TRANSIENT as e:
            after = target.stat().st_size if target.exists() else 0
            if attempt >= retries or after <= before:
                raise
            attempt += 1
            log(f"{url}: transfer cut after {after} bytes ({type(e).__name__}: {e}); resuming ({attempt}/{retries})")
    return md5sum(target)


def part_path(target: Path) -> Path:
    """Where an archive is downloaded to before its checksum is verified."""
    return target.with_name(target.name + ".part")


def fetch_verified(
    archive: Archive, dest: str | Path, progress: bool = True, log: Callable[[str], None] = print
) -> tuple[Path, bool]:
    """Make sure `dest/<archive.filename>` exists with the right MD5. Returns (path, downloaded_now)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / archive.filename
    if target.is_file():
        actual = md5sum(target)
        if actual == archive.md5:
            log(f"{target}: already present, checksum ok")
            return target, False
        log(f"{target}: present but its MD5 is {actual}, not {archive.md5}; downloading it again")
    part = part_path(target)
    if part.is_file() and part.stat().st_size:
        log(f"{part}: resuming after {part.stat().st_size} bytes")
    log(f"downloading {archive.url}")
    try:
        actual = fetch(archive.url, part, progress=progress, log=log)
    except TRANSIENT as e:
        kept = part.is_file() and part.stat().st_size > 0
        if part.is_file() and not kept:
            part.unlink()
        resume = (
            f" {part} keeps the {part.stat().st_size} bytes received: run the command again to resume." if kept else ""
        )
        if is_disk_full(e):
            raise DiskFullError(
                f"disk full: could not write {part} while downloading {archive.url}.{resume} Free some space first"
            ) from e
        raise DownloadError(
            f"could not download {archive.url}: {e}.{resume} Check your connection, or download it yourself, put it "
            f"at {target} and run the command again (it is checked against MD5 {archive.md5})"
        ) from e
    if actual != archive.md5:
        part.unlink()
        raise DownloadError(
            f"checksum mismatch for {archive.filename} ({archive.url}): expected MD5 {archive.md5}, got {actual}; "
            "the file was deleted. The download was probably cut short or the server sent something else: try "
            f"again, or download it yourself to {target}"
        )
    os.replace(part, target)
    return target, True


def extract(archive_path: str | Path, dest: str | Path, progress: bool = True) -> None:
    """Unpack a tar or zip archive into `dest`: first into a temporary folder inside `dest`, then move
    the entries over, merging with folders already there (files of the same name are replaced)."""
    archive_path, dest = Path(archive_path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=f".{archive_path.name}.", suffix=".extract"))
    try:
        try:
            if zipfile.is_zipfile(archive_path):
                _extract_zip(archive_path, tmp, progress)
            else:
                _extract_tar(archive_path, tmp, progress)
        except (tarfile.TarError, zipfile.BadZipFile, OSError) as e:
            if is_disk_full(e):
                raise disk_full(dest) from e
            raise DownloadError(f"could not unpack {archive_path}: {e}; delete it and download it again") from e
        _merge_into(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract_tar(archive_path: Path, into: Path, progress: bool) -> None:
    from tqdm import tqdm

    with tarfile.open(archive_path, "r:*") as tar:
        for member in tqdm(tar, desc=f"unpacking {archive_path.name}", unit=" files", disable=not progress):
            _extract_member(tar, member, into)


def _extract_zip(archive_path: Path, into: Path, progress: bool) -> None:
    from tqdm import tqdm

    with zipfile.ZipFile(archive_path) as archive:
        members = archive.infolist()
        for member in members:  # zipfile would silently rewrite such names: refuse them instead
            name = PurePosixPath(member.filename.replace("\\", "/"))
            if name.is_absolute() or ".." in name.parts or (into / name).resolve() != into.resolve() / name:
                raise DownloadError(f"refusing to unpack {archive_path}: {member.filename!r} points outside the folder")
        for member in tqdm(members, desc=f"unpacking {archive_path.name}", unit=" files", disable=not progress):
            archive.extract(member, into)


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, into: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.12: refuses absolute paths, '..', devices
        tar.extract(member, into, filter="data")
        return
    target = (into / member.name).resolve()
    if not target.is_relative_to(into.resolve()) or member.isdev():
        raise DownloadError(f"refusing to unpack {member.name!r}: it points outside the target folder")
    tar.extract(member, into)


def _merge_into(src: Path, dest: Path) -> None:
    for entry in src.iterdir():
        target = dest / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir() and not target.is_symlink():
            _merge_into(entry, target)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)


def _read_marker(dest: Path) -> dict[str, str]:
    try:
        return json.loads((dest / MARKER).read_text())
    except (OSError, ValueError):
        return {}


def _write_marker(dest: Path, done: dict[str, str]) -> None:
    write_json(done, dest / MARKER)


def download(
    spec: Download,
    dest: str | Path = paths.DOWNLOADS,
    *,
    keep_archives: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Fetch, verify and unpack the archives of `spec` into `dest`; return the dataset folder."""
    dest = Path(dest)
    folder = dest / spec.extracts_to
    unpack_to = dest / spec.unpack_to
    for archive in spec.archives:
        done = _read_marker(dest)
        if done.get(archive.filename) == archive.md5 and folder.is_dir():
            log(f"{archive.filename}: already downloaded and unpacked into {folder}, skipping")
            continue
        path, downloaded_now = fetch_verified(archive, dest, progress=progress, log=log)
        log(f"unpacking {path} into {unpack_to}")
        extract(path, unpack_to, progress=progress)
        done = _read_marker(dest)
        done[archive.filename] = archive.md5
        _write_marker(dest, done)
        if downloaded_now and not keep_archives:
            path.unlink()
    if not folder.is_dir():
        raise DownloadError(f"the archives of {spec.name} were unpacked into {unpack_to} but {folder} is not there")
    log(f"{spec.description}: ready in {folder}")
    return folder
