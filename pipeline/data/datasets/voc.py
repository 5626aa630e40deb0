"""Pascal VOC 2007 (`prepare.dataset: voc2007`) from a VOCdevkit folder.

`prepare.root` is the VOC2007 folder of VOCdevkit:

    data/VOCdevkit/VOC2007/
        Annotations/<id>.xml          one per image: <object><name>, <difficult>
        ImageSets/Main/<split>.txt    image ids of a split (train, val, trainval, test)
        JPEGImages/<id>.jpg

Labels are `pipeline.data.labels.VOC_LABELS` (natural names: VOC's 'diningtable', 'pottedplant' and
'tvmonitor' become 'dining table', 'potted plant' and 'tv monitor'). A label is positive when the
image has at least one non-difficult object of that class; a class present only through 'difficult'
objects is a negative and goes in the manifest's `difficult` column (the convention of the paper's
peers). The manifest columns are described in `pipeline.data.datasets`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

import polars as pl

from pipeline.data.datasets.specs import DATASETS, VOC2007_DOWNLOAD
from pipeline.data.labels import VOC_LABELS, LabelSet
from pipeline.data.manifest import DatasetError, manifest_frame

# VOC's class names in the XML -> our label names
VOC_NAME_TO_LABEL = {name.replace(" ", ""): name for name in VOC_LABELS.names}


def missing_voc_message(root: Path, what: str) -> str:
    urls = "\n".join(f"    {a.url}  (md5 {a.md5})" for a in VOC2007_DOWNLOAD.archives)
    default = DATASETS["voc2007"].download_root().as_posix()
    return (
        f"Pascal VOC 2007 not found: {what} is missing (prepare.root = {str(root)!r}).\n"
        f"Expected layout:\n"
        f"    {default}/Annotations/*.xml\n"
        f"    {default}/ImageSets/Main/trainval.txt, test.txt\n"
        f"    {default}/JPEGImages/*.jpg\n"
        f"`dvc repro` gets it (stage download: fetches, checks and unpacks both archives into data/downloads/), "
        f"and so does `tai download voc2007`; or download\n"
        f"{urls}\n"
        f"yourself and unpack them in data/downloads/ (`tar -xf VOCtrainval_06-Nov-2007.tar -C data/downloads`, "
        f"same for the test tar). "
        f"If VOC 2007 is elsewhere, set prepare.root in params.yaml to its VOC2007 folder."
    )


def read_annotation(xml_path: Path) -> tuple[set[str], set[str]]:
    """(classes with a non-difficult object, classes with a difficult object), as our label names."""
    try:
        tree = ET.parse(xml_path)
    except (ET.ParseError, OSError) as e:
        raise DatasetError(f"{xml_path}: cannot read the annotation ({e}); replace it from the VOC 2007 archive") from e
    easy: set[str] = set()
    hard: set[str] = set()
    if tree.getroot().find(".//object") is None:
        raise DatasetError(
            f"{xml_path}: no <object>, so the image has no label; every VOC 2007 annotation names at "
            "least one object: replace it from the VOC 2007 archive"
        )
    for obj in tree.getroot().iter("object"):
        raw = (obj.findtext("name") or "").strip()
        label = VOC_NAME_TO_LABEL.get(raw.lower().replace(" ", ""))
        if label is None:
            raise DatasetError(
                f"{xml_path}: object class {raw!r} is not one of VOC's 20 classes "
                f"{sorted(VOC_NAME_TO_LABEL)}; fix the annotation or use `prepare.dataset: folder` for other labels"
            )
        flag = (obj.findtext("difficult") or "0").strip()
        (hard if flag == "1" else easy).add(label)
    return easy, hard


def read_split_ids(root: Path, split: str) -> list[str]:
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        raise DatasetError(missing_voc_message(root, f"the split file {split_file}"))
    ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise DatasetError(f"{split_file}: no image ids; replace it from the VOC 2007 archive")
    return ids


def build_voc2007(root: str | Path, splits: Sequence[str]) -> tuple[LabelSet, dict[str, pl.DataFrame]]:
    """Label set (VOC_LABELS) and {split: manifest} for a VOC 2007 folder. Raises DatasetError when
    anything needed is missing, before reading annotations."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(missing_voc_message(root, f"the folder {root}"))
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        if not (root / sub).is_dir():
            raise DatasetError(missing_voc_message(root, f"the folder {root / sub}"))
    split_ids = {split: read_split_ids(root, split) for split in splits}

    manifests: dict[str, pl.DataFrame] = {}
    for split, ids in split_ids.items():
        paths, positives, difficult = [], [], []
        for image_id in ids:
            xml_path = root / "Annotations" / f"{image_id}.xml"
            if not xml_path.is_file():
                raise DatasetError(missing_voc_message(root, f"the annotation {xml_path} (listed in {split}.txt)"))
            image = root / "JPEGImages" / f"{image_id}.jpg"
            if not image.is_file():
                raise DatasetError(missing_voc_message(root, f"the image {image} (listed in {split}.txt)"))
            easy, hard = read_annotation(xml_path)
            paths.append(image.as_posix())
            positives.append(easy)
            difficult.append(hard - easy)
        where = f"{root / 'ImageSets' / 'Main' / f'{split}.txt'}"
        manifests[split] = manifest_frame(ids, paths, positives, difficult, VOC_LABELS, where)
    return VOC_LABELS, manifests
