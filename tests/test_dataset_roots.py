"""Datasets where users keep them: the download stage never fetches what prepare.root (or
annotations, image_root, ...) already holds, fetches only into its own folder, and refuses a folder
outside the project in a queued or --temp experiment's copy with one line saying what to do.

The stage runs in-process (`stages.download.main`) with the fetcher replaced by a recorder: a fetch
is a recorded call, never a network request. tests/test_dataset_roots_e2e.py runs the same cases
through `dvc repro`, `dvc exp run --temp` and the queue on a fresh clone."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

import stages.download as download_stage
import stages.prepare as prepare_stage
from pipeline import paths
from pipeline.config import load_params
from pipeline.data import download as dl
from pipeline.data.datasets import specs
from pipeline.data.datasets.specs import DATASETS, check_reachable, experiment_copy, outside_project
from pipeline.errors import UserError
from test_cli import make_tar
from test_datasets import make_voc

# What `python -m stages.download` printed on main before this fix, for VOC 2007 at data/VOC2007 (the
# issue's case: a copy already on disk, `dvc add`-ed, prepare.root: data/VOC2007), on this offline machine
# (2026-11-30). Online it would have fetched the 900 MB the user already had:
BEFORE_THE_FIX = (
    "download INFO downloading http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar\n"
    "download ERROR could not download http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar: "
    "<urlopen error [Errno -2] Name or service not known>. Check your connection, or download it yourself, put it "
    "at data/downloads/VOCtrainval_06-Nov-2007.tar and run the command again (it is checked against MD5 "
    "c52e279531787c972589f7e41ab4ae64)"
)


def rule_before_the_fix(dataset: str) -> bool:
    """main's download stage before this fix: fetch whenever the download folder lacks the dataset,
    whatever prepare.root says (its only param was prepare.dataset)."""
    return specs.downloadable(dataset) and not specs.dataset_root(dataset, paths.DOWNLOADS).is_dir()


@pytest.fixture
def fetches(monkeypatch) -> list[str]:
    """Every URL the stage tries to fetch; the fetch itself fails like an offline machine."""
    calls: list[str] = []

    def record(url, target, **kwargs):
        calls.append(url)
        raise OSError("offline (test)")

    monkeypatch.setattr(dl, "fetch", record)
    return calls


def project(tmp_path: Path, monkeypatch, prepare: dict) -> Path:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"prepare": prepare}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_download(caplog) -> str:
    caplog.clear()
    with caplog.at_level(logging.INFO):
        download_stage.main(load_params())
    return caplog.text


def voc_copy(base: Path, where: str) -> Path:
    """The tests' tiny VOC 2007 moved to `base/where`."""
    root = make_voc(base / "scratch")
    target = base / where
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(root), target)
    shutil.rmtree(base / "scratch")
    return target


def test_a_voc_copy_the_user_already_has_is_never_fetched(tmp_path, monkeypatch, fetches, caplog):
    voc_copy(tmp_path, "data/VOC2007")
    project(tmp_path, monkeypatch, {"dataset": "voc2007", "root": "data/VOC2007"})
    assert rule_before_the_fix("voc2007")  # the old stage would have fetched here (see BEFORE_THE_FIX)

    text = run_download(caplog)
    assert fetches == []
    assert "prepare.dataset = 'voc2007': in place, nothing to download" in text
    assert "data/VOC2007/ImageSets/Main/test.txt" in (tmp_path / paths.DOWNLOADS / "NOTE.txt").read_text()
    assert sorted(p.name for p in (tmp_path / paths.DOWNLOADS).iterdir()) == [
        "NOTE.txt"
    ]  # the user's copy stays where it is
    prepare_stage.main(load_params())
    assert pl.read_parquet("artifacts/data/voc2007/test.parquet")["path"].str.starts_with("data/VOC2007/").all()


def test_the_recorder_sees_a_fetch_when_the_download_folder_is_empty(tmp_path, monkeypatch, fetches, caplog):
    """The other side of the test above: the default root with nothing there is fetched (offline: exit 2)."""
    project(tmp_path, monkeypatch, {"dataset": "voc2007"})
    with pytest.raises(dl.DownloadError, match="could not download"):
        run_download(caplog)
    assert fetches == [DATASETS["voc2007"].source.archives[0].url]


def test_coco2014_and_nuswide_roots_of_your_own_are_checked_not_fetched(tmp_path, monkeypatch, fetches, caplog):
    coco = tmp_path / "data" / "my-coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "annotations" / "instances_val2014.json").write_text("{}")
    (coco / "val2014").mkdir()
    project(tmp_path, monkeypatch, {"dataset": "coco2014", "root": "data/my-coco", "splits": ["test"]})
    assert "in place, nothing to download" in run_download(caplog)

    (coco / "val2014").rmdir()
    with pytest.raises(UserError) as error:
        run_download(caplog)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("prepare.root = 'data/my-coco': data/my-coco/val2014 is missing;")
    assert "or set prepare.root to data/downloads/coco2014 and this stage downloads it" in message
    assert fetches == []

    nus = tmp_path / "nus"
    for name in ("Concepts81.txt", "ImageList/TestImagelist.txt"):
        (nus / name).parent.mkdir(parents=True, exist_ok=True)
        (nus / name).write_text("x\n")
    (nus / "TrainTestLabels").mkdir()
    images = tmp_path / "data" / "flickr"
    images.mkdir()
    project(
        tmp_path, monkeypatch, {"dataset": "nuswide", "root": "nus", "splits": ["test"], "image_root": "data/flickr"}
    )
    assert "in place, nothing to download" in run_download(caplog)
    images.rmdir()
    with pytest.raises(
        UserError,
        match=r"^prepare.image_root = 'data/flickr': data/flickr is missing; nuswide has no "
        r"official download: `tai download nuswide` says how",
    ):
        run_download(caplog)


def test_your_own_files_are_checked_and_named(tmp_path, monkeypatch, fetches, caplog):
    (tmp_path / "images").mkdir()
    project(
        tmp_path,
        monkeypatch,
        {"dataset": "coco", "root": "images", "splits": ["test"], "annotations": {"test": "ann/test.json"}},
    )
    with pytest.raises(
        UserError,
        match=r"^prepare.annotations.test = 'ann/test.json': ann/test.json is missing; "
        r"point prepare.annotations.test at your data",
    ):
        run_download(caplog)
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "test.json").write_text("{}")
    assert "'coco': in place" in run_download(caplog)


def test_the_download_folder_is_filled_when_prepare_root_points_there(tmp_path, monkeypatch, caplog):
    """The default root, empty: the stage fetches (here from local tars), then finds it in place."""
    tar, md5 = make_tar(
        tmp_path / "server" / "voc.tar",
        {
            "VOCdevkit/VOC2007/ImageSets/Main/test.txt": b"000003\n",
            "VOCdevkit/VOC2007/Annotations/000003.xml": b"<annotation/>",
            "VOCdevkit/VOC2007/JPEGImages/000003.jpg": b"jpeg",
        },
    )
    source = dl.Download("voc2007", "tiny VOC", (dl.Archive(tar.as_uri(), md5),), "VOCdevkit/VOC2007")
    monkeypatch.setitem(DATASETS, "voc2007", dataclasses.replace(DATASETS["voc2007"], source=source))
    project(tmp_path, monkeypatch, {"dataset": "voc2007", "splits": ["test"]})
    text = run_download(caplog)
    assert "VOC2007/Annotations is missing: downloading voc2007 into data/downloads/VOCdevkit/VOC2007" in text
    assert (tmp_path / "data/downloads/VOCdevkit/VOC2007/JPEGImages/000003.jpg").read_bytes() == b"jpeg"
    # again: the marker says it is unpacked, nothing is fetched
    monkeypatch.setattr(dl, "fetch", lambda *a, **k: pytest.fail("fetched twice"))
    assert "already downloaded and unpacked" in run_download(caplog)


def test_a_root_outside_the_project_works_here_and_is_refused_in_an_experiment_copy(
    tmp_path, monkeypatch, fetches, caplog
):
    outside = voc_copy(tmp_path, "data/datasets/VOC2007")
    workspace = tmp_path / "project"
    copy = workspace / ".dvc" / "tmp" / "exps" / "tmpabc123"
    for folder in (workspace, copy):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "params.yaml").write_text(yaml.safe_dump({"prepare": {"dataset": "voc2007", "root": str(outside)}}))

    monkeypatch.chdir(workspace)
    assert not experiment_copy() and outside_project(outside) and outside_project("../datasets/VOC2007")
    assert not outside_project("data/../data/VOC2007")
    text = run_download(caplog)
    assert "is outside the project: `dvc repro` reads it, but DVC does not track it" in text
    assert "in place, nothing to download" in text and fetches == []

    monkeypatch.chdir(copy)
    assert experiment_copy()
    for root in (str(outside), "../datasets/VOC2007"):
        with pytest.raises(UserError) as error:
            check_reachable(load_params(overrides={"prepare.root": root}).prepare)
        message = str(error.value)
        assert "\n" not in message
        assert message.startswith(
            f"prepare.root = {root!r} is outside the project, and this queued or --temp "
            "experiment runs in a fresh copy of the repository"
        )
        assert "`dvc import-url" in message and "data/VOC2007" in message and "`dvc add` a copy" in message
    with pytest.raises(UserError, match="is outside the project"):
        run_download(caplog)
    assert fetches == [] and not (copy / paths.DOWNLOADS / "NOTE.txt").exists()


def test_every_dataset_has_one_spec_that_config_and_the_download_stage_read():
    from pipeline.config import PrepareParams

    assert sorted(DATASETS) == ["coco", "coco2014", "folder", "labels", "nuswide", "voc2007"]
    for name, spec in DATASETS.items():
        assert spec.name == name and set(spec.keys) <= {
            "labels_file",
            "label_names",
            "annotations",
            "keep_unannotated",
            "image_root",
        }
    assert [n for n, s in DATASETS.items() if s.downloadable] == ["voc2007", "coco2014"]
    assert DATASETS["voc2007"].download_root() == Path(PrepareParams().root)  # the default root is the download's
    assert [n for n, s in DATASETS.items() if not s.has_images] == ["labels"]
