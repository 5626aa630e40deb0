"""Hostile inputs through the real stages (python -m stages.<name> in a project folder): broken and
odd images, a labels CSV and label file with a byte-order mark, non-ASCII file names, a CLIP path
that is not a checkpoint. Bad images are skipped and listed, odd ones converted exactly, and the
evaluation says how many test images it could not score."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from PIL import Image

from e2e_project import stage_command, stage_env
from pipeline.encoding.embeddings import read_shards

BROKEN = {"truncated": "truncated", "empty": "zero-byte", "notes": "not an image", "bomb": "decompression bomb"}


def png_bomb(path: Path, side: int = 30000) -> None:
    """A PNG whose header claims side x side pixels (900 megapixels): PIL's decompression-bomb guard."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (side + 1) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def make_images(folder: Path) -> dict[str, str]:
    """image file -> label. Each odd image has a lossless 8-bit RGB twin (`ref_<name>.png`)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 64, 3)).astype(np.uint8)
    files = {}

    def save(image: Image.Image, name: str, label: str, reference: Image.Image | None = None, **kw) -> None:
        image.save(folder / name, **kw)
        files[name] = label
        if reference is not None:
            reference.save(folder / f"ref_{Path(name).stem}.png")
            files[f"ref_{Path(name).stem}.png"] = label

    deep = (rng.integers(0, 65536, (48, 64))).astype(np.uint16)
    save(
        Image.fromarray(deep), "deep16.png", "cat", Image.fromarray(np.rint(deep / 257).astype(np.uint8)).convert("RGB")
    )
    gray = rgb[..., 0]
    save(Image.fromarray(gray), "gray.png", "dog", Image.fromarray(np.stack([gray] * 3, -1)))
    save(
        Image.fromarray(np.dstack([rgb, rng.integers(0, 256, (48, 64), dtype=np.uint8)])),
        "alpha.png",
        "cat",
        Image.fromarray(rgb),
    )
    cmyk = Image.fromarray(rgb).convert("CMYK")
    save(cmyk, "cmyk.tif", "dog", cmyk.convert("RGB"))
    save(Image.fromarray(rgb), "café ü.jpg", "cat")
    save(Image.fromarray(rgb[::-1]), "猫.png", "cat|dog")

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("these are my notes, not a picture\n")
    png_bomb(folder / "bomb.png")
    files.update({"truncated.jpg": "cat", "empty.jpg": "dog", "notes.jpg": "cat", "bomb.png": "dog"})
    return files


def make_project(path: Path, tiny_clip: Path, model: str | None = None) -> Path:
    files = make_images(path / "data" / "images")
    bom = "\ufeff"
    (path / "data" / "labels.csv").write_text(
        bom + "path,labels,split\n" + "".join(f"{name},{labels},test\n" for name, labels in files.items()),
        encoding="utf-8",
    )
    (path / "data" / "labels.txt").write_text(bom + "cat: kitten\ndog: puppy\n", encoding="utf-8")
    params = {
        "prepare": {
            "dataset": "folder",
            "root": "data/images",
            "labels_file": "data/labels.csv",
            "label_names": "data/labels.txt",
            "splits": ["test"],
        },
        "zeroshot": {"split": "test"},
        "evaluate": {"split": "test"},
        "generate": {"n_combinations": 6, "llm_fraction": 0.0},  # template texts: evaluate draws texts vs images
        "encode": {
            "model": model or str(tiny_clip),
            "image_resolution": 64,
            "partial_resolution": None,
            "batch_size": 4,
            "num_workers": 0,
        },
    }
    (path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    return path


def stage(project: Path, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        stage_command(name), cwd=project, env=stage_env(), capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_clip):
    project = make_project(tmp_path_factory.mktemp("hostile"), tiny_clip)
    for name in ("prepare", "encode_images eval", "zeroshot"):
        result = stage(project, name)
        assert result.returncode == 0, f"{name}:\n{result.stderr}"
        (project / f"{name.split()[0]}.log").write_text(result.stderr)
    return project


def test_a_bom_csv_a_bom_label_file_and_non_ascii_names_work(project):
    labels = pl.read_parquet(project / "artifacts" / "data" / "folder" / "labels.parquet")
    assert labels["label"].to_list() == ["cat", "dog"]  # not "\ufeffcat"
    manifest = pl.read_parquet(project / "artifacts" / "data" / "folder" / "test.parquet")
    assert manifest.columns[:3] == ["image_id", "path", "labels"]
    ids = set(read_shards(project / "artifacts" / "embeddings" / "eval" / "test-64").ids)
    assert {"café ü", "猫"} <= ids
    assert manifest.filter(pl.col("image_id") == "猫")["labels"].to_list() == [["cat", "dog"]]


def test_broken_images_are_skipped_and_listed_with_the_reason(project):
    skipped = pl.read_parquet(project / "artifacts" / "embeddings" / "eval" / "skipped.parquet")
    why = dict(zip(skipped["image_id"], skipped["error"]))
    assert set(why) == set(BROKEN)
    assert "DecompressionBombError" in why["bomb"]
    assert "truncated" in why["truncated"]
    assert "UnidentifiedImageError" in why["empty"] and "UnidentifiedImageError" in why["notes"]
    ids = read_shards(project / "artifacts" / "embeddings" / "eval" / "test-64").ids
    assert not set(BROKEN) & set(ids) and len(ids) == 10
    log = (project / "encode_images.log").read_text()
    assert all(
        f"skipped image data/images/{name}" in log for name in ("truncated.jpg", "empty.jpg", "notes.jpg", "bomb.png")
    )


@pytest.mark.parametrize("name", ["deep16", "gray", "alpha", "cmyk"])
def test_16_bit_grayscale_alpha_and_cmyk_images_are_converted_exactly(project, name):
    """Each encodes to the vector of its 8-bit RGB twin (a 16-bit image scaled, not clipped to white)."""
    embeddings = read_shards(project / "artifacts" / "embeddings" / "eval" / "test-64")
    np.testing.assert_allclose(embeddings.select([name])[0], embeddings.select([f"ref_{name}"])[0], atol=1e-5)


def test_metrics_count_the_test_images_that_could_not_be_scored(project):
    metrics = json.loads((project / "reports" / "zeroshot.json").read_text())
    assert metrics["n_images"] == 10 and metrics["n_images_skipped"] == 4
    assert (
        "4 of 14 test images have no embedding (encode_eval_images could not read them"
        in (project / "zeroshot.log").read_text()
    )


def test_evaluate_counts_and_warns_about_the_test_images_it_could_not_score(project):
    import torch

    from pipeline.method.adapter import Adapter, AdapterBundle, AdapterConfig

    torch.manual_seed(0)
    AdapterBundle(Adapter(AdapterConfig(64, 2, 8, 0.0)), ("cat", "dog"), False, "tiny", 64).save(
        project / "artifacts" / "model" / "adapter.pt"
    )
    for name in ("generate", "encode_text"):  # the modality-gap picture reads the texts
        assert (done := stage(project, name)).returncode == 0, done.stderr
    result = stage(project, "evaluate")
    assert result.returncode == 0, result.stderr
    assert "WARNING 4 of 14 test images have no embedding (encode_eval_images could not read them" in result.stderr
    metrics = json.loads((project / "reports" / "eval.json").read_text())
    assert metrics["n_images"] == 10 and metrics["n_images_skipped"] == 4


def test_an_adapter_of_another_label_set_is_refused_in_one_line_naming_both(project):
    import torch

    from pipeline.method.adapter import Adapter, AdapterBundle, AdapterConfig

    torch.manual_seed(0)
    AdapterBundle(Adapter(AdapterConfig(64, 2, 8, 0.0)), ("cat", "horse"), False, "tiny", 64).save(
        project / "artifacts" / "model" / "adapter.pt"
    )
    result = stage(project, "evaluate")
    assert result.returncode == 2, result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip() and " INFO " not in l]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "adapter.pt was trained on another label set than prepare.dataset 'folder'" in lines[0]
    assert "only in the adapter: ['horse'], only in the dataset: ['dog']" in lines[0]
    assert "run `dvc repro train` again" in lines[0]


def test_a_clip_path_that_is_not_a_checkpoint_gets_one_line_naming_the_param(tmp_path, tiny_clip):
    project = make_project(tmp_path, tiny_clip, model="data/labels.csv")
    assert stage(project, "prepare").returncode == 0
    result = stage(project, "encode_images eval")
    assert result.returncode == 2
    lines = [l for l in result.stderr.splitlines() if l.strip() and " INFO " not in l]
    assert len(lines) == 1, result.stderr
    assert "encode.model = 'data/labels.csv' is not a CLIP checkpoint" in lines[0]
    assert "point encode.model at a CLIP .pt file" in lines[0]
    assert "weights_only" not in result.stderr and "Traceback" not in result.stderr
    assert not (project / "artifacts" / "embeddings").exists()
