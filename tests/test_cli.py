"""The `tai` CLI (download, inspect) and pipeline.data.download, without any network: archives are
local tars reached through file:// URLs."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.data import download as dl
from pipeline.data.datasets.specs import DATASETS, DatasetSpec

REPO = Path(__file__).resolve().parent.parent
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env=ENV)


def register_download(monkeypatch, source: dl.Download) -> None:
    """A dataset spec named like `source` whose download is `source` (for `tai download NAME`)."""
    monkeypatch.setitem(DATASETS, source.name, DatasetSpec(source.name, (), None, lambda p: [], source))


def make_tar(path: Path, files: dict[str, bytes]) -> tuple[Path, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path, hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_voc(tmp_path: Path, monkeypatch) -> tuple[dl.Download, Path]:
    """A 'voc2007'-like download made of two local tars that unpack into the same folder."""
    src = tmp_path / "server"
    a, md5_a = make_tar(
        src / "trainval.tar",
        {
            "VOCdevkit/VOC2007/ImageSets/Main/trainval.txt": b"000001\n",
            "VOCdevkit/VOC2007/Annotations/000001.xml": b"<annotation/>",
        },
    )
    b, md5_b = make_tar(
        src / "test.tar",
        {
            "VOCdevkit/VOC2007/ImageSets/Main/test.txt": b"000002\n",
            "VOCdevkit/VOC2007/Annotations/000002.xml": b"<annotation/>",
        },
    )
    spec = dl.Download(
        "fake", "fake VOC", (dl.Archive(a.as_uri(), md5_a), dl.Archive(b.as_uri(), md5_b)), "VOCdevkit/VOC2007"
    )
    register_download(monkeypatch, spec)
    return spec, tmp_path / "data"


def _no_fetch(*args, **kwargs):
    raise AssertionError("fetch must not be called")


# ------------------------------------------------------------------------------------------- download


def test_registry_has_voc2007_with_torchvision_checksums() -> None:
    voc = DATASETS["voc2007"].source
    assert {a.url: a.md5 for a in voc.archives} == {
        "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar": "c52e279531787c972589f7e41ab4ae64",
        "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar": "b6e924de25625d8de591ea690078ad9f",
    }
    assert voc.extracts_to == "VOCdevkit/VOC2007"


def test_download_verifies_extracts_merges_and_then_skips(fake_voc, monkeypatch) -> None:
    spec, dest = fake_voc
    folder = dl.download(spec, dest, progress=False, log=lambda m: None)
    assert folder == dest / "VOCdevkit" / "VOC2007"
    assert (folder / "ImageSets/Main/trainval.txt").read_text() == "000001\n"
    assert (folder / "ImageSets/Main/test.txt").read_text() == "000002\n"  # both archives merged
    assert sorted(p.name for p in (folder / "Annotations").iterdir()) == ["000001.xml", "000002.xml"]
    # downloaded archives are removed, nothing temporary is left; the marker records both
    assert sorted(p.name for p in dest.iterdir()) == [dl.MARKER, "VOCdevkit"]
    assert json.loads((dest / dl.MARKER).read_text()) == {a.filename: a.md5 for a in spec.archives}

    monkeypatch.setattr(dl, "fetch", _no_fetch)
    messages: list[str] = []
    dl.download(spec, dest, progress=False, log=messages.append)
    assert sum("skipping" in m for m in messages) == 2


def test_download_uses_an_archive_already_present_and_keeps_it(fake_voc, monkeypatch) -> None:
    spec, dest = fake_voc
    dest.mkdir()
    for archive in spec.archives:
        (dest / archive.filename).write_bytes(Path(archive.url.removeprefix("file://")).read_bytes())
    monkeypatch.setattr(dl, "fetch", _no_fetch)
    dl.download(spec, dest, progress=False, log=lambda m: None)
    assert (dest / "VOCdevkit/VOC2007/ImageSets/Main/test.txt").is_file()
    assert (dest / "trainval.tar").is_file() and (dest / "test.tar").is_file()  # the user's files stay


def test_checksum_mismatch_deletes_the_file_and_names_url_and_sums(fake_voc, monkeypatch) -> None:
    spec, dest = fake_voc
    bad = dl.Archive(spec.archives[0].url, "0" * 32)
    with pytest.raises(dl.DownloadError) as info:
        dl.download(dl.Download("fake", "x", (bad,), "VOCdevkit/VOC2007"), dest, progress=False, log=lambda m: None)
    message = str(info.value)
    assert bad.url in message and "0" * 32 in message and spec.archives[0].md5 in message
    assert list(dest.iterdir()) == []  # neither the .part file nor the archive is left


def test_unreachable_url_says_where_to_put_the_file(tmp_path: Path, monkeypatch) -> None:
    url = (tmp_path / "missing.tar").as_uri()
    with pytest.raises(dl.DownloadError, match=r"could not download .*missing\.tar.*put it at"):
        dl.download(
            dl.Download("fake", "x", (dl.Archive(url, "0" * 32),), "x"),
            tmp_path / "data",
            progress=False,
            log=lambda m: None,
        )
    assert list((tmp_path / "data").iterdir()) == []


def test_archive_escaping_the_folder_is_refused(tmp_path: Path, monkeypatch) -> None:
    evil, md5 = make_tar(tmp_path / "evil.tar", {"../escaped.txt": b"x"})
    with pytest.raises(dl.DownloadError, match="evil.tar"):
        dl.download(
            dl.Download("fake", "x", (dl.Archive(evil.as_uri(), md5),), "x"),
            tmp_path / "data",
            progress=False,
            log=lambda m: None,
        )
    assert not (tmp_path / "escaped.txt").exists()


def test_cli_download(fake_voc) -> None:
    _, dest = fake_voc
    result = invoke("download", "fake", "--dest", str(dest), "--no-progress", "--keep-archives")
    assert result.exit_code == 0, result.output
    assert "done" in result.output
    assert (dest / "VOCdevkit/VOC2007/ImageSets/Main/trainval.txt").is_file()
    assert (dest / "trainval.tar").is_file()  # --keep-archives

    result = invoke("download", "voc2012", "--dest", str(dest))
    assert result.exit_code == 2
    assert "unknown download 'voc2012'" in result.output and "voc2007" in result.output


# -------------------------------------------------------------------------------------------- inspect


def test_inspect_parquet(tmp_path: Path) -> None:
    path = tmp_path / "test.parquet"
    pl.DataFrame(
        {"image_id": [f"img{i}" for i in range(7)], "labels": [["cat"], ["dog", "cat"]] + [[]] * 5},
        schema={"image_id": pl.Utf8, "labels": pl.List(pl.Utf8)},
    ).write_parquet(path)
    result = invoke("inspect", str(path), "--rows", "2")
    assert result.exit_code == 0, result.output
    assert "7 rows" in result.output and "2 columns" in result.output
    assert "List(String)" in result.output
    assert "img1" in result.output and "img2" not in result.output  # head of 2


def _shard(path: Path, ids: list[str], dim: int, metadata: dict[str, str]) -> None:
    vectors = np.random.default_rng(0).normal(size=(len(ids), dim)).astype(np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)
    table = pa.table({"id": ids, "embedding": column}).replace_schema_metadata(metadata)
    with ipc.new_file(path, table.schema) as writer:
        writer.write_table(table)


def test_inspect_embedding_folder_and_file(tmp_path: Path) -> None:
    folder = tmp_path / "test-224"
    folder.mkdir()
    meta = {"model": "RN50", "kind": "image", "resolution": "224"}
    _shard(folder / "part-00000.arrow", ["a", "b", "c"], 16, meta)
    _shard(folder / "part-00001.arrow", ["d", "e"], 16, meta)
    result = invoke("inspect", str(folder))
    assert result.exit_code == 0, result.output
    assert "5 rows, 2 shards" in result.output
    assert "dimension: 16" in result.output
    assert "RN50" in result.output and "resolution" in result.output

    result = invoke("inspect", str(folder / "part-00001.arrow"))
    assert result.exit_code == 0, result.output
    assert "2 rows, 1 shard" in result.output


def test_inspect_json(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"mAP": 0.875, "per_class": {"cat": 0.9}}))
    result = invoke("inspect", str(path))
    assert result.exit_code == 0, result.output
    assert '"mAP": 0.875' in result.output and '"cat": 0.9' in result.output


def test_inspect_errors(tmp_path: Path) -> None:
    result = invoke("inspect", str(tmp_path / "nope.parquet"))
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "notes.txt").write_text("hi")
    result = invoke("inspect", str(tmp_path / "notes.txt"))
    assert result.exit_code == 2 and "unknown kind '.txt'" in result.output
    result = invoke("inspect", str(tmp_path))
    assert result.exit_code == 2 and "without .arrow shards" in result.output
    (tmp_path / "bad.parquet").write_text("not parquet")
    result = invoke("inspect", str(tmp_path / "bad.parquet"))
    assert result.exit_code == 2 and "cannot read it as Parquet" in result.output


def test_help_lists_commands_and_import_has_no_heavy_side_effects() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "download" in result.output and "inspect" in result.output
    code = "import sys, pipeline.cli; print(sorted(m for m in ('torch', 'polars', 'pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
