"""Fetch, verify and unpack public datasets into `data/` (`tai download NAME`).

Each downloadable thing is a list of archives with a URL and an MD5 checksum (`DOWNLOADS`).
For every archive, `download()`:

1. skips it if `data/.tai-downloads.json` records it as unpacked with the same checksum and the
   dataset folder is there;
2. otherwise uses `data/<archive>` if it is already there and its checksum matches (e.g. fetched by
   hand), or downloads it to a temporary file beside it (urllib + tqdm progress), checks
   the MD5 (a mismatch deletes the file and raises DownloadError naming the URL and both sums) and
   renames it into place;
3. unpacks it into a temporary folder inside `data/` (tarfile's "data" filter: no paths outside the
   folder, no device files), then moves the entries into `data/`, merging folders, and records it.

Archives this command downloaded are removed after unpacking unless `keep_archives=True`
(they would otherwise sit inside `data/`, which the prepare stage hashes); archives you placed
there yourself are left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipeline.io import atomic_path

MARKER = ".tai-downloads.json"
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download failed, or its checksum did not match (the message says what to do)."""


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
    extracts_to: str  # folder (relative to dest) the archives unpack into


VOC2007_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2007"
DOWNLOADS: dict[str, Download] = {
    "voc2007": Download(
        name="voc2007",
        description="Pascal VOC 2007 trainval + test (about 900 MB)",
        # URLs and MD5s as in torchvision.datasets.VOCDetection
        archives=(
            Archive(f"{VOC2007_URL}/VOCtrainval_06-Nov-2007.tar", "c52e279531787c972589f7e41ab4ae64"),
            Archive(f"{VOC2007_URL}/VOCtest_06-Nov-2007.tar", "b6e924de25625d8de591ea690078ad9f"),
        ),
        extracts_to="VOCdevkit/VOC2007",
    ),
}


def md5sum(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, target: Path, progress: bool = True, timeout: float = 60.0) -> str:
    """Stream `url` into `target` (overwritten) with a tqdm bar; return the MD5 of what was written."""
    from tqdm import tqdm

    digest = hashlib.md5()
    request = urllib.request.Request(url, headers={"User-Agent": "tai-adapter"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(target, "wb") as out:
        total = response.headers.get("Content-Length")
        with tqdm(
            total=int(total) if total else None, unit="B", unit_scale=True, unit_divisor=1024,
            desc=url.rsplit("/", 1)[-1], disable=not progress,
        ) as bar:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                digest.update(block)
                bar.update(len(block))
    return digest.hexdigest()


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
    with atomic_path(target) as tmp:  # renamed onto target only once the checksum matched
        log(f"downloading {archive.url}")
        try:
            actual = fetch(archive.url, tmp, progress=progress)
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(
                f"could not download {archive.url}: {e}. Check your connection, or download it yourself, put it "
                f"at {target} and run the command again (it is checked against MD5 {archive.md5})"
            ) from e
        if actual != archive.md5:
            raise DownloadError(
                f"checksum mismatch for {archive.url}: expected MD5 {archive.md5}, got {actual}; the file was "
                "deleted. The download was probably cut short or the server sent something else: try again, or "
                f"download it yourself to {target}"
            )
    return target, True


def extract(archive_path: str | Path, dest: str | Path, progress: bool = True) -> None:
    """Unpack a tar archive into `dest`: first into a temporary folder inside `dest`, then move the
    entries over, merging with folders already there (files of the same name are replaced)."""
    from tqdm import tqdm

    archive_path, dest = Path(archive_path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=f".{archive_path.name}.", suffix=".extract"))
    try:
        try:
            with tarfile.open(archive_path, "r:*") as tar:
                for member in tqdm(tar, desc=f"unpacking {archive_path.name}", unit=" files", disable=not progress):
                    _extract_member(tar, member, tmp)
        except (tarfile.TarError, OSError) as e:
            raise DownloadError(f"could not unpack {archive_path}: {e}; delete it and download it again") from e
        _merge_into(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
    from pipeline.io import write_json

    write_json(done, dest / MARKER)


def download(
    name: str,
    dest: str | Path = "data",
    *,
    keep_archives: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Fetch, verify and unpack the archives of `DOWNLOADS[name]` into `dest`; return the dataset folder."""
    if name not in DOWNLOADS:
        raise DownloadError(f"unknown download {name!r}: choose one of {sorted(DOWNLOADS)}")
    spec = DOWNLOADS[name]
    dest = Path(dest)
    folder = dest / spec.extracts_to
    for archive in spec.archives:
        done = _read_marker(dest)
        if done.get(archive.filename) == archive.md5 and folder.is_dir():
            log(f"{archive.filename}: already downloaded and unpacked into {folder}, skipping")
            continue
        path, downloaded_now = fetch_verified(archive, dest, progress=progress, log=log)
        log(f"unpacking {path} into {dest}")
        extract(path, dest, progress=progress)
        done = _read_marker(dest)
        done[archive.filename] = archive.md5
        _write_marker(dest, done)
        if downloaded_now and not keep_archives:
            path.unlink()
    if not folder.is_dir():
        raise DownloadError(f"the archives of {name} were unpacked into {dest} but {folder} is not there")
    log(f"{spec.description}: ready in {folder}")
    return folder
