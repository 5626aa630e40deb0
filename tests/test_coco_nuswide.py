"""MS-COCO (coco2014 preset, any COCO-format file), NUS-WIDE and labels-only sources, on tiny
trees built here in the official layouts; manifests are checked row by row."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import polars as pl
import pytest

from pipeline import paths
from pipeline.config import ParamsError, PrepareParams, load_params
from pipeline.data.datasets import MANIFEST_SCHEMA, DatasetError, prepare_dataset, write_dataset
from pipeline.data.datasets.coco import LABEL_TABLE as COCO_TABLE
from pipeline.data.datasets.nuswide import LABEL_TABLE as NUS_TABLE
from pipeline.data.labels import LabelError, read_label_file

ROOT = Path(__file__).resolve().parents[1]


def rows(frame: pl.DataFrame) -> list[tuple]:
    return [(r["image_id"], r["path"], r["labels"], r["difficult"]) for r in frame.iter_rows(named=True)]


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"jpeg")


# ----------------------------------------------------------------------------------------------- COCO


def coco2014_categories() -> list[dict]:
    """COCO's 80 categories with their real, non-contiguous ids (1..90)."""
    gaps = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    ids = [i for i in range(1, 91) if i not in gaps]
    names = read_label_file(COCO_TABLE).names
    assert len(ids) == len(names) == 80
    return [{"id": i, "name": n, "supercategory": "x"} for i, n in zip(ids, names)]


def write_instances(
    path: Path, images: list[tuple[int, str]], annotations: list[tuple[int, int, int]], categories: list[dict]
) -> Path:
    """annotations: (image id, category id, iscrowd)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "info": {},
                "licenses": [],
                "images": [{"id": i, "file_name": f, "width": 4, "height": 3} for i, f in images],
                "annotations": [
                    {"id": n, "image_id": i, "category_id": c, "iscrowd": crowd, "bbox": [0, 0, 1, 1], "area": 1}
                    for n, (i, c, crowd) in enumerate(annotations, 1)
                ],
                "categories": categories,
            }
        )
    )
    return path


@pytest.fixture
def coco2014_root(tmp_path: Path) -> Path:
    root = tmp_path / "coco2014"
    cats = coco2014_categories()
    # ids: 1 person, 18 dog, 62 chair, 67 dining table, 90 toothbrush (the last id)
    write_instances(
        root / "annotations" / "instances_train2014.json",
        [
            (9, "COCO_train2014_000000000009.jpg"),
            (25, "COCO_train2014_000000000025.jpg"),
            (30, "COCO_train2014_000000000030.jpg"),
        ],
        [(9, 67, 0), (9, 1, 0), (9, 1, 1), (25, 90, 1)],
        cats,
    )  # 25: only a crowd annotation
    write_instances(
        root / "annotations" / "instances_val2014.json",
        [(42, "COCO_val2014_000000000042.jpg"), (73, "COCO_val2014_000000000073.jpg")],
        [(42, 18, 0), (42, 62, 0)],
        cats,
    )  # 73: no annotation
    for name in (
        "train2014/COCO_train2014_000000000009.jpg",
        "train2014/COCO_train2014_000000000025.jpg",
        "train2014/COCO_train2014_000000000030.jpg",
        "val2014/COCO_val2014_000000000042.jpg",
        "val2014/COCO_val2014_000000000073.jpg",
    ):
        touch(root / name)
    return root


def test_coco_label_table_is_80_categories_with_the_asked_synonyms() -> None:
    table = read_label_file(COCO_TABLE)
    assert len(table) == 80 and table.names[:3] == ("person", "bicycle", "car") and table.names[-1] == "toothbrush"
    syn = dict(zip(table.names, table.synonyms))
    assert "table" in syn["dining table"] and "sofa" in syn["couch"]
    assert {"television", "tv monitor"} <= set(syn["tv"]) and {"mobile phone", "phone"} <= set(syn["cell phone"])
    assert table.find_in_text("A dog on the sofa beside a table and a phone.") == [
        "dog",
        "couch",
        "dining table",
        "cell phone",
    ]


def test_coco2014_manifests_in_category_id_order_crowd_positive_unannotated_left_out(coco2014_root, caplog) -> None:
    with caplog.at_level(logging.INFO):
        prepared = prepare_dataset(PrepareParams(dataset="coco2014", root=str(coco2014_root), splits=("train", "test")))
    labels = prepared.labels
    assert labels.names == tuple(c["name"] for c in coco2014_categories())  # id order: 1 .. 90
    ids = [c["id"] for c in coco2014_categories()]
    assert labels.index["dining table"] == ids.index(67) and labels.index["toothbrush"] == ids.index(90) == 79
    assert "tv monitor" in labels.synonyms[labels.index["tv"]]
    r = coco2014_root.as_posix()
    assert rows(prepared.manifests["train"]) == [
        (
            "COCO_train2014_000000000009",
            f"{r}/train2014/COCO_train2014_000000000009.jpg",
            ["person", "dining table"],
            [],
        ),
        (
            "COCO_train2014_000000000025",
            f"{r}/train2014/COCO_train2014_000000000025.jpg",
            ["toothbrush"],
            [],
        ),  # iscrowd
    ]
    assert rows(prepared.manifests["test"]) == [
        ("COCO_val2014_000000000042", f"{r}/val2014/COCO_val2014_000000000042.jpg", ["dog", "chair"], []),
    ]
    assert all(dict(f.schema) == MANIFEST_SCHEMA for f in prepared.manifests.values())
    assert prepared.extras == {}
    log = caplog.text
    assert "3 images, 2 with at least one annotation; 1 without, left out" in log
    assert "2 images, 1 with at least one annotation; 1 without, left out" in log


def test_coco2014_keep_unannotated_keeps_them_with_no_label(coco2014_root) -> None:
    prepared = prepare_dataset(
        PrepareParams(dataset="coco2014", root=str(coco2014_root), splits=("test",), keep_unannotated=True)
    )
    assert [(r[0], r[2]) for r in rows(prepared.manifests["test"])] == [
        ("COCO_val2014_000000000042", ["dog", "chair"]),
        ("COCO_val2014_000000000073", []),
    ]
    assert list(prepared.manifests) == ["test"]


def test_coco2014_missing_folder_says_how_to_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"instances_val2014\.json is missing.*tai download coco2014"):
        prepare_dataset(PrepareParams(dataset="coco2014", root=str(tmp_path / "nowhere"), splits=("test",)))


def test_coco2014_refuses_a_file_with_other_categories(coco2014_root) -> None:
    write_instances(coco2014_root / "annotations" / "instances_val2014.json", [], [], [{"id": 1, "name": "widget"}])
    with pytest.raises(DatasetError, match=r"not COCO's 80.*prepare\.dataset: coco"):
        prepare_dataset(PrepareParams(dataset="coco2014", root=str(coco2014_root), splits=("test",)))


@pytest.fixture
def coco_export(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An annotation tool's export: a background category (id 0), a category with no annotation,
    non-contiguous ids, file names with sub-folders, two files for two splits."""
    images = tmp_path / "photos"
    cats = [
        {"id": 0, "name": "_background_"},
        {"id": 7, "name": "zebra crossing"},
        {"id": 3, "name": "bike"},
        {"id": 12, "name": "scooter"},
    ]
    train = write_instances(
        tmp_path / "ann" / "train.json",
        [(1, "day1/a.jpg"), (2, "day1/b.jpg"), (3, "day2/c.jpg")],
        [(1, 7, 0), (1, 3, 1), (2, 0, 0), (3, 3, 0)],
        cats,
    )  # 2: background only
    test = write_instances(tmp_path / "ann" / "test.json", [(1, "day3/d.png"), (5, "e.jpg")], [(1, 7, 0)], cats)
    for name in ("day1/a.jpg", "day1/b.jpg", "day2/c.jpg", "day3/d.png", "e.jpg"):
        touch(images / name)
    return images, {"train": str(train), "test": str(test)}


def test_coco_any_file_categories_from_the_file(coco_export) -> None:
    images, annotations = coco_export
    label_file = images.parent / "synonyms.txt"
    label_file.write_text("bike: bicycle, bikes\n")
    prepared = prepare_dataset(
        PrepareParams(
            dataset="coco",
            root=str(images),
            splits=("train", "test"),
            annotations=annotations,
            label_names=str(label_file),
        )
    )
    labels = prepared.labels
    assert labels.names == ("bike", "zebra crossing", "scooter")  # id order 3, 7, 12; background dropped
    assert labels.synonyms == (("bicycle", "bikes"), (), ())
    i = images.as_posix()
    assert rows(prepared.manifests["train"]) == [
        ("day1/a", f"{i}/day1/a.jpg", ["bike", "zebra crossing"], []),
        ("day2/c", f"{i}/day2/c.jpg", ["bike"], []),
    ]
    assert rows(prepared.manifests["test"]) == [("day3/d", f"{i}/day3/d.png", ["zebra crossing"], [])]

    kept = prepare_dataset(
        PrepareParams(
            dataset="coco", root=str(images), splits=("train",), annotations=annotations, keep_unannotated=True
        )
    )
    assert [(r[0], r[2]) for r in rows(kept.manifests["train"])] == [
        ("day1/a", ["bike", "zebra crossing"]),
        ("day1/b", []),
        ("day2/c", ["bike"]),
    ]


def test_coco_errors_name_the_file(coco_export, tmp_path: Path) -> None:
    images, annotations = coco_export
    (images / "day2" / "c.jpg").unlink()
    with pytest.raises(DatasetError, match=r"train\.json: 1 of 2 images of split 'train' are not on disk.*day2/c\.jpg"):
        prepare_dataset(PrepareParams(dataset="coco", root=str(images), splits=("train",), annotations=annotations))
    bad = write_instances(tmp_path / "bad.json", [(1, "e.jpg")], [(1, 99, 0)], [{"id": 1, "name": "x"}])
    with pytest.raises(DatasetError, match=r"bad\.json: annotation 1 has category_id 99"):
        prepare_dataset(PrepareParams(dataset="coco", root=str(images), splits=("t",), annotations={"t": str(bad)}))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"broken\.json: cannot read it as JSON"):
        prepare_dataset(
            PrepareParams(
                dataset="coco", root=str(images), splits=("t",), annotations={"t": str(tmp_path / "broken.json")}
            )
        )
    other = write_instances(tmp_path / "other.json", [], [], [{"id": 3, "name": "car"}])
    with pytest.raises(DatasetError, match=r"category id 3 is 'car' but 'bike'"):
        prepare_dataset(
            PrepareParams(
                dataset="coco", root=str(images), splits=("train", "t"), annotations={**annotations, "t": str(other)}
            )
        )
    wrong = tmp_path / "syn.txt"
    wrong.write_text("bicycle: bike\n")
    with pytest.raises(LabelError, match=r"lists \['bicycle'\], which are not categories"):
        prepare_dataset(
            PrepareParams(
                dataset="coco", root=str(images), splits=("train",), annotations=annotations, label_names=str(wrong)
            )
        )


# ------------------------------------------------------------------------------------------- NUS-WIDE

NUS_CONCEPTS = ["airport", "cars", "sky", "zebra"]


@pytest.fixture
def nus_root(tmp_path: Path) -> Path:
    """Official layout, Windows separators in the lists, three concepts' worth of labels, a concept
    (zebra) with no image, images with no concept, and images missing from disk."""
    root = tmp_path / "NUS-WIDE"
    (root / "ImageList").mkdir(parents=True)
    (root / "TrainTestLabels").mkdir()
    (root / "Concepts81.txt").write_text("".join(f"{c}\r\n" for c in NUS_CONCEPTS))
    splits = {
        "Train": (
            ["actor\\0001_2124494179.jpg", "sky\\0002_17.jpg", "street\\0003_5.jpg", "sky\\0004_9.jpg"],
            {"airport": [1, 0, 0, 0], "cars": [1, 0, 0, 1], "sky": [0, 1, 0, 1], "zebra": [0, 0, 0, 0]},
        ),
        "Test": (
            ["beach\\0005_1.jpg", "beach\\0006_2.jpg"],
            {"airport": [0, 0], "cars": [0, 0], "sky": [1, 0], "zebra": [0, 0]},
        ),
    }
    for split, (entries, labels) in splits.items():
        (root / "ImageList" / f"{split}Imagelist.txt").write_text("".join(f"{e}\r\n" for e in entries))
        for concept, column in labels.items():
            (root / "TrainTestLabels" / f"Labels_{concept}_{split}.txt").write_text("".join(f"{v} \n" for v in column))
    for present in (
        "actor/0001_2124494179.jpg",
        "street/0003_5.jpg",
        "sky/0004_9.jpg",
        "beach/0005_1.jpg",
        "beach/0006_2.jpg",
    ):
        touch(root / "Flickr" / present)  # sky/0002_17.jpg is missing
    return root


def test_nuswide_label_table_is_the_81_concepts() -> None:
    table = read_label_file(NUS_TABLE)
    assert len(table) == 81 and table.names[0] == "airport" and table.names[-1] == "zebra"
    assert {"car", "automobile"} <= set(table.synonyms[table.index["cars"]])


def test_nuswide_manifests_missing_images_and_no_concept_images(nus_root: Path, tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.INFO):
        prepared = prepare_dataset(PrepareParams(dataset="nuswide", root=str(nus_root), splits=("train", "test")))
    assert prepared.labels.names == tuple(NUS_CONCEPTS)
    assert "automobile" in prepared.labels.synonyms[1]
    f = (nus_root / "Flickr").as_posix()
    assert rows(prepared.manifests["train"]) == [
        ("actor/0001_2124494179", f"{f}/actor/0001_2124494179.jpg", ["airport", "cars"], []),
        ("street/0003_5", f"{f}/street/0003_5.jpg", [], []),  # no concept: kept
        ("sky/0004_9", f"{f}/sky/0004_9.jpg", ["cars", "sky"], []),
    ]
    assert rows(prepared.manifests["test"]) == [
        ("beach/0005_1", f"{f}/beach/0005_1.jpg", ["sky"], []),
        ("beach/0006_2", f"{f}/beach/0006_2.jpg", [], []),
    ]
    assert "train: 1 of 4 listed images are not under" in caplog.text
    assert "2 with no concept (kept)" not in caplog.text and "1 with no concept (kept)" in caplog.text

    train_missing, test_missing = (paths.missing_images_path("nuswide", s) for s in ("train", "test"))
    assert prepared.extras[train_missing].to_dicts() == [{"image_id": "sky/0002_17", "path": f"{f}/sky/0002_17.jpg"}]
    assert prepared.extras[test_missing].height == 0
    written = write_dataset(
        "nuswide", prepared.labels, prepared.manifests, base=tmp_path / "out", extras=prepared.extras
    )
    assert train_missing in written and test_missing in written
    back = pl.read_parquet(tmp_path / "out" / train_missing)
    assert back["image_id"].to_list() == ["sky/0002_17"]
    assert (tmp_path / "out" / train_missing).parent == (
        tmp_path / "out" / paths.manifest_path("nuswide", "train")
    ).parent


def test_nuswide_image_root_and_errors(nus_root: Path, tmp_path: Path) -> None:
    moved = tmp_path / "images"
    (nus_root / "Flickr").rename(moved)
    with pytest.raises(DatasetError, match=r"image folder .*Flickr does not exist: set prepare\.image_root"):
        prepare_dataset(PrepareParams(dataset="nuswide", root=str(nus_root), splits=("test",)))
    prepared = prepare_dataset(
        PrepareParams(dataset="nuswide", root=str(nus_root), splits=("test",), image_root=str(moved))
    )
    assert prepared.manifests["test"]["path"].to_list()[0] == f"{moved.as_posix()}/beach/0005_1.jpg"

    (nus_root / "TrainTestLabels" / "Labels_sky_Test.txt").write_text("1\n")
    with pytest.raises(DatasetError, match=r"Labels_sky_Test\.txt: 1 values but the image list has 2 lines"):
        prepare_dataset(PrepareParams(dataset="nuswide", root=str(nus_root), splits=("test",), image_root=str(moved)))
    (nus_root / "Concepts81.txt").unlink()
    with pytest.raises(DatasetError, match=r"Concepts81\.txt is missing.*no official image download"):
        prepare_dataset(PrepareParams(dataset="nuswide", root=str(nus_root), splits=("test",), image_root=str(moved)))


# ------------------------------------------------------------------------------------------ labels only


def test_labels_only_builds_a_label_table_and_no_manifest(tmp_path: Path) -> None:
    names = tmp_path / "labels.txt"
    names.write_text("red panda: red pandas, lesser panda\nteapot\n")
    prepared = prepare_dataset(PrepareParams(dataset="labels", label_names=str(names)))
    assert prepared.labels.names == ("red panda", "teapot")
    assert prepared.labels.synonyms == (("red pandas", "lesser panda"), ())
    assert prepared.manifests == {}
    written = write_dataset("labels", prepared.labels, prepared.manifests, base=tmp_path / "out")
    assert written == [paths.labels_path("labels")]
    assert sorted(p.name for p in (tmp_path / "out" / paths.labels_path("labels")).parent.iterdir()) == [
        "labels.parquet"
    ]


# ----------------------------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    "prepare, match",
    [
        ({"dataset": "coco2014"}, r"prepare\.splits\[0\] = 'trainval'"),
        ({"dataset": "nuswide", "splits": ["train"], "keep_unannotated": True}, r"prepare\.keep_unannotated is set"),
        ({"dataset": "coco", "splits": ["train"]}, r"prepare\.annotations is empty"),
        ({"dataset": "coco", "splits": ["train", "test"], "annotations": {"train": "a.json"}}, r"lists \['test'\]"),
        (
            {"dataset": "coco", "splits": ["t"], "annotations": "a.json"},
            r"prepare\.annotations = 'a\.json' should be a mapping",
        ),
        ({"dataset": "voc2007", "image_root": "x"}, r"prepare\.image_root is set"),
        ({"dataset": "labels"}, r"prepare\.label_names is null"),
        ({"dataset": "labels", "label_names": "l.txt", "labels_file": "x.csv"}, r"prepare\.labels_file is set"),
        ({"dataset": "cifar"}, r"prepare\.dataset = 'cifar' is not allowed"),
    ],
)
def test_prepare_params_for_the_new_sources(prepare: dict, match: str) -> None:
    with pytest.raises(ParamsError, match=match):
        load_params(ROOT / "params.yaml", overrides={f"prepare.{k}": v for k, v in prepare.items()})


def test_labels_only_refuses_fewshot_and_partial_but_needs_no_image_split() -> None:
    from pipeline.settings import LABELS_ONLY, plan

    base = {"prepare.dataset": "labels", "prepare.label_names": "l.txt", "evaluate.split": "x"}
    params = load_params(ROOT / "params.yaml", overrides=base)
    assert plan(params).setting == LABELS_ONLY
    for key, value in (("fewshot.shots", 4), ("partial.known_proportion", 0.5)):
        pattern = key.replace(".", r"\.") + r" is set but prepare\.dataset is 'labels'"
        with pytest.raises(ParamsError, match=pattern):
            plan(load_params(ROOT / "params.yaml", overrides={**base, key: value}))
