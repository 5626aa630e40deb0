"""The prepare stage: VOC 2007 and folder sources, manifests, errors, and the stage entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from PIL import Image

from pipeline.config import ParamsError, PrepareParams, load_params
from pipeline.data.datasets import MANIFEST_SCHEMA, DatasetError, build_dataset, read_manifest, write_dataset
from pipeline.data.datasets.folder import build_folder
from pipeline.data.datasets.voc import build_voc2007
from pipeline.data.labels import LABEL_SCHEMA, VOC_LABELS, LabelError

REPO = Path(__file__).resolve().parent.parent

# image id -> [(VOC class name, difficult)]
VOC_IMAGES = {
    "000001": [("dog", 0), ("person", 1)],  # person only difficult -> negative
    "000002": [("diningtable", 0), ("chair", 1), ("chair", 0)],  # chair has an easy object -> positive
    "000003": [("tvmonitor", 0), ("pottedplant", 1), ("tvmonitor", 1)],
    "000004": [("cat", 1)],  # only difficult objects -> no positives
}
VOC_SPLIT_IDS = {"trainval": ["000001", "000002"], "test": ["000003", "000004"]}


def _jpeg(path: Path, color=(200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path, format="JPEG")


def _voc_xml(image_id: str, objects) -> str:
    objs = "".join(
        f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated><difficult>{d}</difficult>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
        for name, d in objects
    )
    return f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>{objs}</annotation>"


def make_voc(base: Path, images=VOC_IMAGES, split_ids=VOC_SPLIT_IDS) -> Path:
    root = base / "data" / "VOCdevkit" / "VOC2007"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for image_id, objects in images.items():
        (root / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(image_id, objects))
        _jpeg(root / "JPEGImages" / f"{image_id}.jpg")
    for split, ids in split_ids.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    return make_voc(tmp_path)


def _rows(frame: pl.DataFrame) -> dict[str, tuple[list[str], list[str]]]:
    return {r["image_id"]: (r["labels"], r["difficult"]) for r in frame.iter_rows(named=True)}


# ------------------------------------------------------------------------------------------------ VOC


def test_voc_manifests_have_contract_columns_and_difficult_only_classes_are_negatives(voc_root: Path) -> None:
    label_set, manifests = build_voc2007(voc_root, ("trainval", "test"))
    assert label_set == VOC_LABELS
    assert set(manifests) == {"trainval", "test"}
    for split, frame in manifests.items():
        assert dict(frame.schema) == MANIFEST_SCHEMA
        assert frame["image_id"].to_list() == VOC_SPLIT_IDS[split]  # ImageSets order
        assert frame["image_id"].n_unique() == frame.height
        for path in frame["path"]:
            assert path.endswith(".jpg") and Path(path).is_file()
    rows = {**_rows(manifests["trainval"]), **_rows(manifests["test"])}
    assert rows["000001"] == (["dog"], ["person"])
    assert rows["000002"] == (["chair", "dining table"], [])  # natural names, label-table order
    assert rows["000003"] == (["tv monitor"], ["potted plant"])  # easy + difficult tv -> positive only
    assert rows["000004"] == ([], ["cat"])


def test_voc_path_is_relative_when_root_is_relative(voc_root: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _, manifests = build_voc2007("data/VOCdevkit/VOC2007", ("test",))
    assert manifests["test"]["path"].to_list() == [
        "data/VOCdevkit/VOC2007/JPEGImages/000003.jpg",
        "data/VOCdevkit/VOC2007/JPEGImages/000004.jpg",
    ]


def test_missing_voc_root_says_how_to_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        build_dataset(PrepareParams(root=str(tmp_path / "nowhere" / "VOC2007")))
    message = str(info.value)
    assert "tai download voc2007" in message
    assert "data/downloads/VOCdevkit/VOC2007/Annotations" in message and "dvc repro" in message
    assert "VOCtrainval_06-Nov-2007.tar" in message and "VOCtest_06-Nov-2007.tar" in message
    assert "nowhere" in message


def test_missing_split_file_is_named(voc_root: Path) -> None:
    (voc_root / "ImageSets" / "Main" / "test.txt").unlink()
    with pytest.raises(DatasetError, match=r"test\.txt.*missing(.|\n)*tai download voc2007"):
        build_voc2007(voc_root, ("trainval", "test"))


def test_missing_image_is_named(voc_root: Path) -> None:
    (voc_root / "JPEGImages" / "000002.jpg").unlink()
    with pytest.raises(DatasetError, match=r"000002\.jpg"):
        build_voc2007(voc_root, ("trainval",))


def test_unknown_voc_class_names_the_xml(tmp_path: Path) -> None:
    root = make_voc(tmp_path, {"000001": [("dog", 0), ("unicorn", 0)]}, {"test": ["000001"]})
    with pytest.raises(DatasetError, match=r"000001\.xml.*'unicorn'"):
        build_voc2007(root, ("test",))


def test_malformed_voc_xml_is_named(voc_root: Path) -> None:
    (voc_root / "Annotations" / "000003.xml").write_text("<annotation><object>")
    with pytest.raises(DatasetError, match=r"000003\.xml"):
        build_voc2007(voc_root, ("test",))


# --------------------------------------------------------------------------------------------- folder


def make_folder(base: Path, names=("a.jpg", "b.jpg", "sub/c.png", "d.jpg")) -> Path:
    root = base / "images"
    for name in names:
        _jpeg(root / name) if name.endswith(".jpg") else _png(root / name)
    return root


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (0, 0, 255)).save(path, format="PNG")


def test_folder_from_csv(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "path,labels,split\n"
        "a.jpg,dog|cat,train\n"
        "b.jpg, cat | bird ,train\n"
        "sub/c.png,,test\n"
        "d.jpg,bird|bird,test\n"
        "x.jpg,fish,other\n"  # a split not asked for: ignored (its image need not exist), its labels still count
    )
    label_set, manifests = build_folder(root, csv, ("train", "test"))
    assert label_set.names == ("bird", "cat", "dog", "fish")  # sorted union over the whole file
    assert set(manifests) == {"train", "test"}
    for frame in manifests.values():
        assert dict(frame.schema) == MANIFEST_SCHEMA
    train, test = _rows(manifests["train"]), _rows(manifests["test"])
    assert train == {"a": (["cat", "dog"], []), "b": (["bird", "cat"], [])}
    assert test == {"sub/c": ([], []), "d": (["bird"], [])}
    assert manifests["test"]["path"].to_list() == [(root / "sub/c.png").as_posix(), (root / "d.jpg").as_posix()]


def test_folder_from_parquet_with_list_labels_image_id_and_label_names(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    names = tmp_path / "names.txt"
    names.write_text("dog: puppy, dogs\ncat\n# a comment\nbird\n")
    pq = tmp_path / "labels.parquet"
    pl.DataFrame(
        {
            "image_id": ["img-a", "img-b", "img-c"],
            "path": ["a.jpg", "b.jpg", "sub/c.png"],
            "labels": [["bird", "dog"], [], None],
            "split": ["val", "val", "val"],
        }
    ).write_parquet(pq)
    label_set, manifests = build_folder(root, pq, ("val",), names)
    assert label_set.names == ("dog", "cat", "bird")
    assert label_set.synonyms[0] == ("puppy", "dogs")
    assert _rows(manifests["val"]) == {"img-a": (["dog", "bird"], []), "img-b": ([], []), "img-c": ([], [])}


def test_folder_unknown_label_names_file_row_and_label(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    names = tmp_path / "names.txt"
    names.write_text("dog\ncat\n")
    csv = tmp_path / "labels.csv"
    csv.write_text("path,labels,split\na.jpg,dog,test\nb.jpg,cat|kat,test\n")
    with pytest.raises(LabelError) as info:
        build_folder(root, csv, ("test",), names)
    message = str(info.value)
    assert "labels.csv" in message and "line 3" in message and "'b'" in message
    assert "'kat'" in message and "names.txt" in message and "add it" in message


def test_folder_missing_column_is_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    csv = tmp_path / "labels.csv"
    csv.write_text("path,tags,split\na.jpg,dog,test\n")
    with pytest.raises(DatasetError, match=r"labels\.csv.*missing column\(s\) \['labels'\]"):
        build_folder(root, csv, ("test",))


def test_folder_split_without_rows_is_an_error(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    csv = tmp_path / "labels.csv"
    csv.write_text("path,labels,split\na.jpg,dog,train\n")
    with pytest.raises(DatasetError, match=r"split 'test' .* no rows.*\['train'\]"):
        build_folder(root, csv, ("train", "test"))


def test_folder_duplicate_image_ids_are_an_error(tmp_path: Path) -> None:
    root = make_folder(tmp_path, names=("a.jpg", "a.png"))
    csv = tmp_path / "labels.csv"
    csv.write_text("path,labels,split\na.jpg,dog,train\na.png,cat,test\n")  # both default to image_id 'a'
    with pytest.raises(DatasetError, match=r"duplicate image_id\(s\) \['a'\]"):
        build_folder(root, csv, ("train", "test"))


def test_folder_missing_image_is_an_error(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    csv = tmp_path / "labels.csv"
    csv.write_text("path,labels,split\na.jpg,dog,test\nnope.jpg,cat,test\n")
    with pytest.raises(DatasetError, match=r"nope\.jpg"):
        build_folder(root, csv, ("test",))


def test_folder_empty_split_cell_is_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    csv = tmp_path / "labels.csv"
    csv.write_text("path,labels,split\na.jpg,dog,test\nb.jpg,cat,\n")
    with pytest.raises(DatasetError, match=r"line 3: empty 'split'"):
        build_folder(root, csv, ("test",))


# ---------------------------------------------------------------------------------------- params + write


def test_prepare_params_checks() -> None:
    PrepareParams().check("prepare")
    with pytest.raises(ParamsError, match=r"prepare\.labels_file is set"):
        PrepareParams(labels_file="x.csv").check("prepare")
    with pytest.raises(ParamsError, match=r"prepare\.splits\[1\].*'tset'"):
        PrepareParams(splits=("trainval", "tset")).check("prepare")
    with pytest.raises(ParamsError, match=r"not a usable split name"):
        PrepareParams(dataset="folder", labels_file="x.csv", splits=("../x",)).check("prepare")
    with pytest.raises(ParamsError, match=r"more than once"):
        PrepareParams(splits=("test", "test")).check("prepare")
    with pytest.raises(ParamsError, match=r"\.csv or \.parquet"):
        PrepareParams(dataset="folder", labels_file="labels.xlsx").check("prepare")


def test_write_dataset_round_trips_and_drops_stale_splits(voc_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    label_set, manifests = build_voc2007(voc_root, ("trainval", "test"))
    written = write_dataset("voc2007", label_set, manifests, base=out)
    assert [p.as_posix() for p in written] == [
        "artifacts/data/voc2007/labels.parquet",
        "artifacts/data/voc2007/trainval.parquet",
        "artifacts/data/voc2007/test.parquet",
    ]
    labels = pl.read_parquet(out / written[0])
    assert dict(labels.schema) == LABEL_SCHEMA
    assert labels["label"].to_list() == list(VOC_LABELS.names)
    test = read_manifest(out / written[2])
    assert test.equals(manifests["test"])

    write_dataset("voc2007", label_set, {"test": manifests["test"]}, base=out)
    assert sorted(p.name for p in (out / "artifacts/data/voc2007").iterdir()) == ["labels.parquet", "test.parquet"]
    assert not [p for p in (out / "artifacts/data").iterdir() if p.name.startswith(".")]  # no temp leftovers


def _write_params(base: Path, prepare: dict) -> None:
    (base / "params.yaml").write_text(yaml.safe_dump({"prepare": prepare}))


def test_stage_script_runs_from_a_project_folder(voc_root: Path, tmp_path: Path) -> None:
    _write_params(tmp_path, {"dataset": "voc2007", "root": "data/VOCdevkit/VOC2007", "splits": ["trainval", "test"]})
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # as dvc runs it: `python -m stages.prepare`
    result = subprocess.run(
        [sys.executable, "-m", "stages.prepare"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "20 labels" in result.stderr  # logging
    out = tmp_path / "artifacts" / "data" / "voc2007"
    assert sorted(p.name for p in out.iterdir()) == ["labels.parquet", "test.parquet", "trainval.parquet"]
    test = pl.read_parquet(out / "test.parquet")
    assert test["path"].to_list()[0] == "data/VOCdevkit/VOC2007/JPEGImages/000003.jpg"
    assert _rows(test)["000004"] == ([], ["cat"])


def test_stage_fails_before_writing_anything(tmp_path: Path, monkeypatch) -> None:
    sys.path.insert(0, str(REPO / "stages"))
    try:
        import prepare as stage
    finally:
        sys.path.remove(str(REPO / "stages"))
    make_folder(tmp_path)
    (tmp_path / "labels.csv").write_text("path,labels,split\na.jpg,dog,train\nb.jpg,cat,test\n")
    (tmp_path / "names.txt").write_text("dog\n")
    _write_params(
        tmp_path,
        {
            "dataset": "folder",
            "root": "images",
            "labels_file": "labels.csv",
            "label_names": "names.txt",
            "splits": ["train", "test"],
        },
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LabelError, match="'cat'"):
        stage.main(load_params())
    assert not (tmp_path / "artifacts").exists()

    (tmp_path / "names.txt").write_text("dog\ncat\n")
    stage.main(load_params())
    assert pl.read_parquet("artifacts/data/folder/test.parquet")["labels"].to_list() == [["cat"]]


def test_every_spec_has_a_builder_and_the_default_root_is_the_default_specs_download_folder():
    """The spec table (what a dataset needs) and the builders (how it is read) name the same datasets, and
    prepare.root's default is where the download stage unpacks the default dataset: one definition of each."""
    from pipeline.config import PrepareParams
    from pipeline.data.datasets.builders import BUILDERS
    from pipeline.data.datasets.specs import DATASETS

    assert sorted(BUILDERS) == sorted(DATASETS)
    default = PrepareParams()
    assert default.root == DATASETS[default.dataset].download_root().as_posix() == "data/downloads/VOCdevkit/VOC2007"
