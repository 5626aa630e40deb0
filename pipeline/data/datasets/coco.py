"""COCO-format instances files -> multi-label manifests (`prepare.dataset: coco2014` and `coco`).

An image's labels are the categories of its annotations, `iscrowd` ones included (as the
multi-label peers count them). Categories become labels in the order of their ids (COCO's are
non-contiguous, 1..90). Images with no annotation are left out unless `keep_unannotated`
(the paper's COCO 2014 counts, 82,081 train2014 and 40,137 val2014 images, are those with at
least one annotation out of 82,783 and 40,504); both counts are logged.

- `coco2014` (the paper's benchmark): `prepare.root` holds `annotations/instances_train2014.json`,
  `annotations/instances_val2014.json`, `train2014/` and `val2014/` (what `tai download coco2014`
  unpacks). Split `train` is train2014, split `test` is val2014. Labels and synonyms come from
  `coco_labels.txt` beside this module.
- `coco` (any export of an annotation tool): `prepare.annotations` maps each split to an instances
  JSON, `prepare.root` is the image folder; `file_name` is relative to it (a sub-folder is fine).
  Labels are the files' categories (they must agree on id -> name across files); a category
  named like a background class ("background", "_background_", ...) is dropped, a category
  without annotations stays a label (it has no positive). `prepare.label_names`, when set, gives
  synonyms for some of the categories.

Read with the standard library's json (pycocotools' COCO() does the same json.load and then builds
indexes this reader does not need). image_id is `file_name` without its extension.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Mapping, Sequence

import polars as pl

from pipeline.data.datasets.specs import COCO2014_SPLITS
from pipeline.data.labels import LabelError, LabelSet, read_label_file
from pipeline.data.manifest import DatasetError, manifest_frame

log = logging.getLogger(__name__)

COCO2014_COUNTS = {"train2014": (82_081, 82_783), "val2014": (40_137, 40_504)}  # (annotated, all images)
LABEL_TABLE = Path(__file__).with_name("coco_labels.txt")
BACKGROUND_NAMES = {"background", "bg", "__background__", "_background_", "background_"}


@dataclass
class Instances:
    """The parts of an instances file a multi-label manifest needs."""

    path: Path
    categories: dict[int, str]  # id -> name
    images: list[tuple[int, str]]  # (image id, file_name), in file order
    positives: dict[int, set[int]]  # image id -> category ids of its annotations


def read_instances(path: str | Path) -> Instances:
    """Parse a COCO instances JSON; DatasetError names the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: COCO instances file not found; check prepare.root / prepare.annotations")
    try:
        with path.open("rb") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: cannot read it as JSON ({e}); export it again or replace it") from e
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: not a COCO instances file (the top level is not an object)")
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise DatasetError(f"{path}: not a COCO instances file, no {missing}; it needs images, annotations, categories")
    try:
        categories: dict[int, str] = {}
        for c in data["categories"]:
            cid, name = int(c["id"]), str(c["name"]).strip()
            if cid in categories:
                raise DatasetError(f"{path}: category id {cid} is listed twice")
            categories[cid] = name
        images = [(int(im["id"]), _file_name(path, im)) for im in data["images"]]
        image_ids = {i for i, _ in images}
        if len(image_ids) != len(images):
            raise DatasetError(f"{path}: some image ids are listed more than once")
        positives: dict[int, set[int]] = {}
        for a in data["annotations"]:
            image, category = int(a["image_id"]), int(a["category_id"])
            if category not in categories:
                raise DatasetError(f"{path}: annotation {a.get('id')} has category_id {category}, not in categories")
            if image not in image_ids:
                raise DatasetError(f"{path}: annotation {a.get('id')} refers to image_id {image}, not in images")
            positives.setdefault(image, set()).add(category)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, DatasetError):
            raise
        raise DatasetError(f"{path}: malformed COCO entry ({type(e).__name__}: {e}); export the file again") from e
    names = [n for n in categories.values()]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DatasetError(
            f"{path}: category name(s) {dupes} used by more than one id; give each category its own name"
        )
    return Instances(path, categories, images, positives)


def _file_name(path: Path, image: dict) -> str:
    """An image's file_name: a file's path relative to prepare.root, or DatasetError naming the image."""
    name = image["file_name"]
    if not isinstance(name, str) or PurePosixPath(name.replace("\\", "/")).name in ("", ".", ".."):
        raise DatasetError(
            f"{path}: image {image.get('id')!r} has file_name {name!r}, which is not the path of an "
            "image file; export the file again"
        )
    return name


def is_background(name: str) -> bool:
    return name.strip().lower() in BACKGROUND_NAMES


def coco_manifest(
    instances: Instances,
    image_dir: Path,
    category_label: Mapping[int, str],
    label_set: LabelSet,
    keep_unannotated: bool,
    split: str,
) -> pl.DataFrame:
    """One split's manifest. Categories not in `category_label` (background) are ignored; images whose
    only annotations are of such categories count as unannotated. Missing image files: DatasetError."""
    ids, paths, labels = [], [], []
    n_annotated = 0
    for image, file_name in instances.images:
        positives = {category_label[c] for c in instances.positives.get(image, ()) if c in category_label}
        n_annotated += bool(positives)
        if not positives and not keep_unannotated:
            continue
        relative = PurePosixPath(file_name.replace("\\", "/"))
        ids.append(str(relative.with_suffix("")))
        paths.append((image_dir / relative).as_posix())
        labels.append(positives)
    n_all = len(instances.images)
    log.info(
        "%s (%s): %d images, %d with at least one annotation; %d without, %s (prepare.keep_unannotated: %s)",
        split,
        instances.path,
        n_all,
        n_annotated,
        n_all - n_annotated,
        "kept" if keep_unannotated else "left out",
        str(keep_unannotated).lower(),
    )
    if not ids:
        why = (
            "its `images` list is empty"
            if not n_all
            else f"none of its {n_all} images has an annotation of a label, and prepare.keep_unannotated is false"
        )
        raise DatasetError(
            f"{instances.path}: split {split!r} would have no images: {why}; export the split's images "
            "and annotations into it, set prepare.keep_unannotated: true, or drop the split from prepare.splits"
        )
    absent = [p for p in paths if not os.path.isfile(p)]
    if absent:
        raise DatasetError(
            f"{instances.path}: {len(absent)} of {len(paths)} images of split {split!r} are not on disk, e.g. "
            f"{absent[:3]}; file_name is read relative to {image_dir}: fix prepare.root, or unpack the images there"
        )
    return manifest_frame(ids, paths, labels, None, label_set, f"{instances.path}")


def build_coco2014(
    root: str | Path, splits: Sequence[str], keep_unannotated: bool = False
) -> tuple[LabelSet, dict[str, pl.DataFrame]]:
    """MS-COCO 2014 from its standard layout; split `train` = train2014, `test` = val2014."""
    root = Path(root)
    for split in splits:
        coco = COCO2014_SPLITS[split]
        for needed in (root / "annotations" / f"instances_{coco}.json", root / coco):
            if not needed.exists():
                raise DatasetError(
                    f"MS-COCO 2014 not found: {needed} is missing (prepare.root = {str(root)!r}). Run "
                    "`tai download coco2014` (about 19 GB: train2014.zip, val2014.zip, annotations_trainval2014.zip "
                    "from images.cocodataset.org, unpacked into data/downloads/coco2014), or set prepare.root to a folder "
                    "holding annotations/instances_{train,val}2014.json, train2014/ and val2014/"
                )
    table = read_label_file(LABEL_TABLE)
    manifests: dict[str, pl.DataFrame] = {}
    label_set = None
    for split in splits:
        coco = COCO2014_SPLITS[split]
        instances = read_instances(root / "annotations" / f"instances_{coco}.json")
        names = [instances.categories[c] for c in sorted(instances.categories)]
        if set(names) != set(table.names):
            raise DatasetError(
                f"{instances.path}: its {len(names)} categories are not COCO's 80 "
                f"(unexpected: {sorted(set(names) - set(table.names))[:5]}, absent: "
                f"{sorted(set(table.names) - set(names))[:5]}); for other categories use prepare.dataset: coco"
            )
        label_set = LabelSet(tuple(names), tuple(table.synonyms[table.index[n]] for n in names))
        category_label = dict(instances.categories)
        manifests[split] = coco_manifest(instances, root / coco, category_label, label_set, keep_unannotated, coco)
        expected_annotated, expected_all = COCO2014_COUNTS[coco]
        if (
            len(instances.images) == expected_all
            and not keep_unannotated
            and manifests[split].height != expected_annotated
        ):
            log.warning(
                "%s: %d images with annotations, the paper's count is %d",
                coco,
                manifests[split].height,
                expected_annotated,
            )
    return label_set, manifests


def build_coco(
    root: str | Path,
    annotations: Mapping[str, str],
    splits: Sequence[str],
    keep_unannotated: bool = False,
    label_names: str | Path | None = None,
) -> tuple[LabelSet, dict[str, pl.DataFrame]]:
    """Any COCO-format instances files: {split: JSON} with images under `root`."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"prepare.root = {str(root)!r} is not a folder: point it at the folder file_name is relative to"
        )
    lacking = [s for s in splits if s not in annotations]
    if lacking:
        raise DatasetError(f"prepare.annotations has no file for split(s) {lacking}: map each split to a JSON file")
    files = {split: read_instances(annotations[split]) for split in splits}

    categories: dict[int, str] = {}
    for instances in files.values():
        for cid, name in instances.categories.items():
            if categories.setdefault(cid, name) != name:
                raise DatasetError(
                    f"{instances.path}: category id {cid} is {name!r} but {categories[cid]!r} in another split's "
                    "file; export every split with the same categories"
                )
    background = sorted(name for name in categories.values() if is_background(name))
    if background:
        log.info("categories %s are background: not labels", background)
    category_label = {cid: name for cid, name in sorted(categories.items()) if not is_background(name)}
    names = list(category_label.values())
    if len(set(names)) != len(names):
        raise DatasetError(f"prepare.annotations: two category ids share a name across files ({names}); rename one")
    if not names:
        raise DatasetError("prepare.annotations: the files define no category (other than background)")
    synonyms: dict[str, list[str]] = {}
    if label_names:
        given = read_label_file(label_names)
        unknown = [n for n in given.names if n not in category_label.values()]
        if unknown:
            raise LabelError(
                f"prepare.label_names ({label_names}) lists {unknown[:10]}, which are not categories of the "
                f"annotation files ({names[:30]}): fix the spelling, or remove them"
            )
        synonyms = {n: list(s) for n, s in zip(given.names, given.synonyms)}
    label_set = LabelSet.from_names(names, synonyms)
    used = {cid for f in files.values() for cats in f.positives.values() for cid in cats}
    empty = [n for cid, n in category_label.items() if cid not in used]
    if empty:
        log.info("categories without any annotation (labels with no positive): %s", empty)
    manifests = {
        split: coco_manifest(instances, root, category_label, label_set, keep_unannotated, split)
        for split, instances in files.items()
    }
    return label_set, manifests
