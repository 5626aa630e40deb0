"""Downloads over real HTTP from a server on 127.0.0.1: resuming a cut transfer (Range into a
.part file), refusing a checksum mismatch, unpacking zips (COCO's archives), NUS-WIDE's instructions."""

from __future__ import annotations

import hashlib
import io
import zipfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from typer.testing import CliRunner

from local_http import LocalHTTPServer
from pipeline.cli import app
from pipeline.data import download as dl
from pipeline.data.datasets import specs
from pipeline.data.datasets.specs import DATASETS
from test_cli import register_download


def make_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # stored: the body is mostly file bytes
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


class Server(LocalHTTPServer):
    """Serves `files` {path: bytes}; honours Range unless `ranges` is False; the first `cut` full
    responses of a path send only half the body (with the full Content-Length) and hang up."""

    def __init__(self, files: dict[str, bytes], cut: int = 0, ranges: bool = True):
        self.files, self.cut, self.ranges = files, cut, ranges
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and server.ranges:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if server.cut > 0 and start == 0:
                    server.cut -= 1
                    self.wfile.write(part[: len(part) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(part)

        super().__init__(Handler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


IMAGES = {f"val2014/COCO_val2014_{i:012d}.jpg": bytes([i]) * 5000 for i in range(1, 9)}
ANNOTATIONS = {"annotations/instances_val2014.json": b'{"images": [], "annotations": [], "categories": []}'}


def register(monkeypatch, server: Server, archives: dict[str, bytes], md5s: dict[str, str] | None = None) -> None:
    """A coco2014-shaped download of `archives` {filename: bytes} served by `server`."""
    for name, data in archives.items():
        server.files[f"/zips/{name}"] = data
    spec = dl.Download(
        "fakecoco",
        "fake COCO",
        tuple(
            dl.Archive(server.url(f"/zips/{n}"), (md5s or {}).get(n) or hashlib.md5(d).hexdigest())
            for n, d in archives.items()
        ),
        extracts_to="coco2014",
        unpack_to="coco2014",
    )
    register_download(monkeypatch, spec)


def unpacked(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_coco2014_registry_is_the_official_archives_with_their_md5s() -> None:
    coco = DATASETS["coco2014"].source
    assert {a.url: a.md5 for a in coco.archives} == {
        "http://images.cocodataset.org/zips/train2014.zip": "0da8c0bd3d6becc4dcb32757491aca88",
        "http://images.cocodataset.org/zips/val2014.zip": "a3d79f5ed8d289b7a7554ce06a5782b3",
        "http://images.cocodataset.org/annotations/annotations_trainval2014.zip": "0a379cfc70b0e71301e0f377548639bd",
    }
    assert specs.dataset_root("coco2014", "data") == Path("data/coco2014")
    assert specs.downloadable("coco2014") and specs.downloadable("voc2007")
    assert not specs.downloadable("nuswide") and not specs.downloadable("folder")


def test_a_cut_transfer_resumes_with_range_and_unpacks_zips(tmp_path: Path, monkeypatch) -> None:
    val, ann = make_zip(IMAGES), make_zip(ANNOTATIONS)
    with Server({}, cut=1) as server:
        register(monkeypatch, server, {"val2014.zip": val, "annotations_trainval2014.zip": ann})
        messages: list[str] = []
        root = specs.download_dataset("fakecoco", tmp_path / "data", progress=False, log=messages.append)
    assert root == tmp_path / "data" / "coco2014"
    assert unpacked(root) == {**IMAGES, **ANNOTATIONS}
    # the first response was cut at half: the second request asked for the rest only
    first = [r for r in server.requests if r[0] == "/zips/val2014.zip"]
    assert first == [("/zips/val2014.zip", None), ("/zips/val2014.zip", f"bytes={len(val) // 2}-")]
    assert any("transfer cut after" in m for m in messages)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [dl.MARKER, "coco2014"]  # no .part, no zip


def test_a_part_file_left_by_an_earlier_run_is_continued(tmp_path: Path, monkeypatch) -> None:
    val = make_zip(IMAGES)
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "val2014.zip.part").write_bytes(val[:1000])
    with Server({}) as server:
        register(monkeypatch, server, {"val2014.zip": val})
        specs.download_dataset("fakecoco", dest, progress=False, log=lambda m: None)
    assert server.requests == [("/zips/val2014.zip", "bytes=1000-")]
    assert unpacked(dest / "coco2014") == IMAGES


def test_a_server_without_ranges_sends_the_whole_file_again(tmp_path: Path, monkeypatch) -> None:
    val = make_zip(IMAGES)
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "val2014.zip.part").write_bytes(b"stale bytes from something else")
    with Server({}, ranges=False) as server:
        register(monkeypatch, server, {"val2014.zip": val})
        messages: list[str] = []
        specs.download_dataset("fakecoco", dest, progress=False, log=messages.append)
    assert any("does not resume" in m for m in messages)
    assert unpacked(dest / "coco2014") == IMAGES


def test_an_unfinished_transfer_keeps_its_part_for_the_next_run(tmp_path: Path, monkeypatch) -> None:
    val = make_zip(IMAGES)
    with Server({}, cut=10) as server:  # every full response is cut, and ranges are refused below
        server.ranges = False
        register(monkeypatch, server, {"val2014.zip": val})
        with pytest.raises(
            dl.DownloadError, match=r"val2014\.zip\.part keeps the \d+ bytes received: run the command again"
        ):
            specs.download_dataset("fakecoco", tmp_path / "data", progress=False, log=lambda m: None)
        assert (tmp_path / "data" / "val2014.zip.part").stat().st_size == len(val) // 2
        server.ranges, server.cut = True, 0
        specs.download_dataset("fakecoco", tmp_path / "data", progress=False, log=lambda m: None)
        assert server.requests[-1] == ("/zips/val2014.zip", f"bytes={len(val) // 2}-")
    assert unpacked(tmp_path / "data" / "coco2014") == IMAGES


def test_a_checksum_mismatch_is_refused_naming_the_file_and_both_sums(tmp_path: Path, monkeypatch) -> None:
    val = make_zip(IMAGES)
    with Server({}) as server:
        register(monkeypatch, server, {"val2014.zip": val}, md5s={"val2014.zip": "0" * 32})
        with pytest.raises(dl.DownloadError) as info:
            specs.download_dataset("fakecoco", tmp_path / "data", progress=False, log=lambda m: None)
    message = str(info.value)
    assert "val2014.zip" in message and "0" * 32 in message and hashlib.md5(val).hexdigest() in message
    assert list((tmp_path / "data").iterdir()) == []  # neither the .part nor the archive is kept
    assert not (tmp_path / "data" / "coco2014").exists()


def test_a_zip_escaping_its_folder_is_refused(tmp_path: Path, monkeypatch) -> None:
    evil = make_zip({"../../escaped.txt": b"x"})
    with Server({}) as server:
        register(monkeypatch, server, {"evil.zip": evil})
        with pytest.raises(dl.DownloadError, match=r"escaped\.txt.*points outside"):
            specs.download_dataset("fakecoco", tmp_path / "data", progress=False, log=lambda m: None)
    assert not list(tmp_path.rglob("escaped.txt"))


def test_nuswide_gets_instructions_until_its_files_are_in_place(tmp_path: Path) -> None:
    with pytest.raises(dl.ManualDownloadError, match=r"no official image download[\s\S]*prepare\.dataset: nuswide"):
        specs.download_dataset("nuswide", tmp_path / "data", log=lambda m: None)
    result = CliRunner().invoke(app, ["download", "nuswide", "--dest", str(tmp_path / "data")], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "Concepts81.txt" in result.output and "TrainTestLabels" in result.output
    root = tmp_path / "data" / "nuswide"
    for name in ("Concepts81.txt", "ImageList/TrainImagelist.txt", "ImageList/TestImagelist.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    for name in ("TrainTestLabels", "Flickr"):
        (root / name).mkdir()
    assert specs.download_dataset("nuswide", tmp_path / "data", log=lambda m: None) == root
