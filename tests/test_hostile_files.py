"""Fixed hostile files, one per "refused with one line" fault row (docs/faults.md) and one per fix the fuzzing
found (tests/test_fuzz.py): each goes through the prepare stage's real entry (`pipeline.stage.run`) and must stop
with exit status 2 and the one line pinned here, naming the file, leaving no artifacts/ folder. The fuzz
invariant ("works, or exit 2") accepts either outcome; these do not, so removing a check fails a test."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

import stages.prepare as prepare_stage
from test_fuzz import prepare, run_stage, scratch


def _images(*names: str) -> None:
    for name in names:
        Path("images", name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(Path("images", name))


def _refused(names: tuple[str, ...]) -> str:
    outcome, line = run_stage("prepare", prepare_stage.main, names)
    assert outcome == "exit 2", "the hostile file was accepted"
    return line


def _coco(images: list[dict], annotations: list[dict]) -> str:
    return json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "cat"}]})


# ------------------------------------------------------------------------------------ a split with no images


def test_a_coco_file_with_an_empty_images_list_is_refused_not_written_empty():
    with scratch():
        _images("a.jpg")
        Path("train.json").write_text(
            _coco([{"id": 1, "file_name": "a.jpg"}], [{"id": 1, "image_id": 1, "category_id": 1}])
        )
        Path("test.json").write_text(_coco([], []))
        prepare(
            {
                "dataset": "coco",
                "root": "images",
                "annotations": {"train": "train.json", "test": "test.json"},
                "splits": ["train", "test"],
            }
        )
        line = _refused(("test.json",))
    assert "test.json: split 'test' would have no images: its `images` list is empty" in line


def test_a_coco_split_whose_images_are_all_unannotated_is_refused_naming_keep_unannotated():
    with scratch():
        _images("a.jpg", "b.jpg")
        Path("test.json").write_text(_coco([{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}], []))
        prepare({"dataset": "coco", "root": "images", "annotations": {"test": "test.json"}, "splits": ["test"]})
        line = _refused(("test.json",))
        assert "none of its 2 images has an annotation of a label, and prepare.keep_unannotated is false" in line
        prepare(
            {
                "dataset": "coco",
                "root": "images",
                "annotations": {"test": "test.json"},
                "splits": ["test"],
                "keep_unannotated": True,
            }
        )
        assert run_stage("prepare", prepare_stage.main, ("test.json",))[0] == "works"
        assert pl.read_parquet("artifacts/data/coco/test.parquet").height == 2


def test_the_manifest_builder_never_makes_an_empty_table():
    from pipeline.data.labels import LabelSet
    from pipeline.data.manifest import DatasetError, manifest_frame

    with pytest.raises(DatasetError, match=r"^where\.csv: this split has no images"):
        manifest_frame([], [], [], None, LabelSet.from_names(["cat"]), "where.csv")


def test_a_voc_annotation_with_no_object_is_refused():
    with scratch():
        root = Path("VOC2007")
        for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
            (root / sub).mkdir(parents=True)
        (root / "Annotations" / "000001.xml").write_text("<annotation><filename>000001.jpg</filename></annotation>")
        Image.new("RGB", (4, 4)).save(root / "JPEGImages" / "000001.jpg")
        (root / "ImageSets/Main/test.txt").write_text("000001\n")
        prepare({"dataset": "voc2007", "root": "VOC2007", "splits": ["test"]})
        line = _refused(("000001.xml",))
    assert "000001.xml: no <object>, so the image has no label" in line


# ----------------------------------------------------------------------------------------- folder CSVs


def test_folder_rows_of_a_split_not_in_prepare_splits_are_left_out_with_a_warning(caplog):
    with scratch():
        _images("a.jpg", "b.jpg")
        Path("labels.csv").write_text("path,labels,split\na.jpg,cat,test\nb.jpg,dog,tset\n")
        prepare({"dataset": "folder", "root": "images", "labels_file": "labels.csv", "splits": ["test"]})
        with caplog.at_level(logging.WARNING, "pipeline.data.datasets.folder"):
            assert run_stage("prepare", prepare_stage.main, ("labels.csv",))[0] == "works"
        assert pl.read_parquet("artifacts/data/folder/test.parquet")["image_id"].to_list() == ["a"]
    assert (
        "labels.csv: 1 row(s) of split(s) ['tset'] are left out: they are not in prepare.splits ['test']" in caplog.text
    )


def test_a_folder_split_in_prepare_splits_without_rows_is_refused():
    with scratch():
        _images("a.jpg")
        Path("labels.csv").write_text("path,labels,split\na.jpg,cat,tset\n")
        prepare({"dataset": "folder", "root": "images", "labels_file": "labels.csv", "splits": ["test"]})
        line = _refused(("labels.csv",))
    assert "labels.csv: split 'test' (listed in prepare.splits) has no rows; splits found there: ['tset']" in line


def test_a_csv_with_a_repeated_column_is_refused():  # found by the fuzzing
    with scratch():
        _images("a.jpg")
        Path("labels.csv").write_text("path,labels,split, path\na.jpg,cat,test,a.jpg\n")
        prepare({"dataset": "folder", "root": "images", "labels_file": "labels.csv", "splits": ["test"]})
        line = _refused(("labels.csv",))
    assert "labels.csv: column(s) ['path'] appear more than once" in line


def test_an_empty_coco_file_name_is_refused():  # found by the fuzzing
    with scratch():
        _images("a.jpg")
        Path("test.json").write_text(_coco([{"id": 1, "file_name": ""}], [{"id": 1, "image_id": 1, "category_id": 1}]))
        prepare({"dataset": "coco", "root": "images", "annotations": {"test": "test.json"}, "splits": ["test"]})
        line = _refused(("test.json",))
    assert "test.json: image 1 has file_name '', which is not the path of an image file" in line


# ----------------------------------------------------------------------------------------- label files


@pytest.mark.parametrize(
    "data, says",
    [
        (b"cat\nCat \n", "names.txt:2: label 'Cat' is 'cat' once case and spaces are ignored"),
        (b"dining table\nDining  Table: table\n", "names.txt:2: label 'Dining  Table' is 'dining table' once case"),
        (b"cat: kitten: kitty\n", "names.txt:1: more than one ':' in 'cat: kitten: kitty'"),  # found by the fuzzing
        (b"cat\n\xff\xfedog\n", "names.txt: not UTF-8 text (invalid start byte at byte 4)"),  # found by the fuzzing
    ],
)
def test_a_malformed_label_file_is_refused_with_its_line(data, says):
    with scratch():
        Path("names.txt").write_bytes(data)
        prepare({"dataset": "labels", "label_names": "names.txt"})
        line = _refused(("names.txt",))
    assert says in line


# ---------------------------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    "text, says",
    [
        ("- prepare\n- encode\n", "should be a mapping of sections (prepare:, encode:, ...), not a list"),
        ("just a sentence\n", "not a str"),
    ],
)
def test_a_params_yaml_that_is_no_mapping_is_refused(text, says):
    with scratch():
        Path("params.yaml").write_text(text)
        ran = []
        outcome, line = run_stage("hostile-params", lambda params: ran.append(params), ("params.yaml",))
    assert outcome == "exit 2" and not ran and says in line
