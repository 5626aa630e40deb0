"""One spec per dataset: what `prepare.dataset: NAME` needs, in one place.

A `DatasetSpec` says which optional `prepare` keys the dataset reads and which it needs, its fixed
split names (if any), the files that show it is in place (checked by the `download` stage before it
fetches anything), and how to get it: a `Download` of public archives, a `ManualDataset` with
instructions, or nothing (your own data). `DatasetSpec.problem` holds its rules: config raises what it
finds as a ParamsError, before any work. How each dataset is read is its builder
(`pipeline.data.datasets.builders`), kept apart so that the download stage, which reads this table, does not
depend on the readers, the label table or the manifest format.

The download stage never fetches what `prepare.root` (or `annotations`, `image_root`, ...) already
holds: `missing(params)` lists what is absent, and only when something is absent *and*
`prepare.root` is the folder the download unpacks to does it fetch. `check_reachable` stops a
queued or `--temp` experiment, which runs in a fresh copy of the repository, from reading a folder
outside the project (DVC cannot give it to that copy) with one line saying what to do.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pipeline import paths
from pipeline.data.dataset_kinds import LABELS_ONLY_DATASETS
from pipeline.data.download import Archive, Download, DownloadError, ManualDataset, ManualDownloadError, download
from pipeline.errors import DatasetError

if TYPE_CHECKING:
    from pipeline.config import PrepareParams

log = logging.getLogger(__name__)

# Optional prepare keys a dataset may read (config.PrepareParams), with the value that leaves them unset;
# each spec names those it reads.
OPTIONAL_KEYS = {
    "labels_file": None,
    "label_names": None,
    "annotations": None,
    "keep_unannotated": False,
    "image_root": None,
}

Needs = list[tuple[str, Path]]  # (params key that points there, a path that must exist)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    keys: tuple[str, ...]  # optional prepare keys it reads; any other must stay unset
    splits: tuple[str, ...] | None  # fixed split names; None: any (they come from the files)
    needs: Callable[["PrepareParams"], Needs]  # paths that show it is in place, with the key naming each
    source: Download | ManualDataset | None = None  # how to get it; None: your own data
    required: dict[str, str] | None = None  # optional keys it cannot do without -> what to set them to
    check: Callable[["PrepareParams", str], str | None] | None = None  # its own rules beyond the keys and splits

    @property
    def has_images(self) -> bool:
        return self.name not in LABELS_ONLY_DATASETS  # one definition, which the Plan reads too

    def problem(self, p: "PrepareParams", key: str = "prepare") -> str | None:
        """What in `p` (the `key` section of params.yaml) this dataset cannot use, in one line naming the key
        and the fix, or None: keys it ignores set, keys it needs unset, split names that are not its own."""
        for name, default in OPTIONAL_KEYS.items():
            if name not in self.keys and getattr(p, name) != default:
                readers = [d for d, other in DATASETS.items() if name in other.keys]
                return (
                    f"{key}.{name} is set but {key}.dataset is {self.name!r}, which ignores it: set it to "
                    f"{'false' if default is False else 'null'}, or set {key}.dataset to one of {readers}"
                )
        for name, fix in (self.required or {}).items():
            if not getattr(p, name):
                return f"{key}.{name} is null but {key}.dataset is {self.name!r}: {fix}"
        if not self.has_images:
            return None  # no images: root and splits are not read
        if not p.splits:
            return f"{key}.splits is empty: list at least one split, e.g. [trainval, test]"
        if not p.root:
            return f"{key}.root is empty: set it to the dataset folder, e.g. {DATASETS['voc2007'].download_root().as_posix()}"
        dupes = sorted({s for s in p.splits if p.splits.count(s) > 1})
        if dupes:
            return f"{key}.splits lists {dupes} more than once: list each split once"
        for split in p.splits:  # a split names a file, artifacts/data/<dataset>/<split>.parquet
            if not split or split.startswith(".") or any(c in split for c in "/\\:"):
                return f"{key}.splits: {split!r} is not a usable split name: use letters, digits, '-', '_' (e.g. test)"
        if self.splits is not None:
            for i, split in enumerate(p.splits):
                if split not in self.splits:
                    return f"{key}.splits[{i}] = {split!r} is not allowed: use one of {list(self.splits)}"
        return self.check(p, key) if self.check else None

    @property
    def downloadable(self) -> bool:
        return isinstance(self.source, Download)

    def download_root(self, dest: str | Path = paths.DOWNLOADS) -> Path | None:
        """Where the download stage (or `tai download`) puts it: its prepare.root there."""
        return None if self.source is None else Path(dest) / self.source.extracts_to

    def missing(self, params: "PrepareParams") -> Needs:
        return [(key, path) for key, path in self.needs(params) if not path.exists()]


# ----------------------------------------------------------------------------- split names, layouts

VOC2007_SPLITS = ("train", "val", "trainval", "test")
COCO2014_SPLITS = {"train": "train2014", "test": "val2014"}  # our split name -> COCO's
NUSWIDE_SPLITS = {"train": ("TrainImagelist.txt", "Train"), "test": ("TestImagelist.txt", "Test")}  # -> list, suffix


def _check_coco(p: "PrepareParams", key: str) -> str | None:
    if not p.annotations:
        return (
            f"{key}.annotations is empty but {key}.dataset is 'coco': map each split to its COCO instances "
            "JSON, e.g. {train: data/my/train.json, test: data/my/test.json}"
        )
    lacking = [s for s in p.splits if s not in p.annotations]
    if lacking:
        return (
            f"{key}.splits lists {lacking} but {key}.annotations maps only {sorted(p.annotations)}: "
            "add a JSON file for each split, or drop the split"
        )
    for split, path in p.annotations.items():
        if not str(path).lower().endswith(".json"):
            return f"{key}.annotations.{split} = {path!r}: use a COCO instances .json file"
    return None


# ----------------------------------------------------------------------------- what shows it is there


def _label_names(p: "PrepareParams") -> Needs:
    return [("prepare.label_names", Path(p.label_names))] if p.label_names else []


def _needs_voc2007(p: "PrepareParams") -> Needs:
    root = Path(p.root)
    return [
        ("prepare.root", root / "Annotations"),
        ("prepare.root", root / "JPEGImages"),
        *[("prepare.root", root / "ImageSets" / "Main" / f"{s}.txt") for s in p.splits],
    ]


def _needs_coco2014(p: "PrepareParams") -> Needs:
    root = Path(p.root)
    found: Needs = []
    for split in p.splits:
        coco = COCO2014_SPLITS.get(split, split)
        found += [("prepare.root", root / "annotations" / f"instances_{coco}.json"), ("prepare.root", root / coco)]
    return found


def _needs_coco(p: "PrepareParams") -> Needs:
    files = [
        (f"prepare.annotations.{s}", Path((p.annotations or {})[s])) for s in p.splits if s in (p.annotations or {})
    ]
    return [("prepare.root", Path(p.root)), *files, *_label_names(p)]


def _needs_nuswide(p: "PrepareParams") -> Needs:
    root = Path(p.root)
    images = ("prepare.image_root", Path(p.image_root)) if p.image_root else ("prepare.root", root / "Flickr")
    lists = [root / "ImageList" / NUSWIDE_SPLITS[s][0] for s in p.splits if s in NUSWIDE_SPLITS]
    return [
        ("prepare.root", root / "Concepts81.txt"),
        ("prepare.root", root / "TrainTestLabels"),
        *[("prepare.root", path) for path in lists],
        images,
    ]


def _needs_folder(p: "PrepareParams") -> Needs:
    files = [("prepare.labels_file", Path(p.labels_file))] if p.labels_file else []
    return [("prepare.root", Path(p.root)), *files, *_label_names(p)]


# ------------------------------------------------------------------------------------------ sources

VOC2007_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2007"
VOC2007_DOWNLOAD = Download(
    name="voc2007",
    description="Pascal VOC 2007 trainval + test (about 900 MB)",
    # URLs and MD5s as in torchvision.datasets.VOCDetection
    archives=(
        Archive(f"{VOC2007_URL}/VOCtrainval_06-Nov-2007.tar", "c52e279531787c972589f7e41ab4ae64"),
        Archive(f"{VOC2007_URL}/VOCtest_06-Nov-2007.tar", "b6e924de25625d8de591ea690078ad9f"),
    ),
    extracts_to="VOCdevkit/VOC2007",  # under data/downloads/: the default prepare.root
)
COCO_URL = "http://images.cocodataset.org"
NUSWIDE_PAGE = "https://lms.comp.nus.edu.sg/wp-content/uploads/2019/research/nuswide/NUS-WIDE.html"

COCO2014_DOWNLOAD = Download(
    name="coco2014",
    description="MS-COCO 2014 train + val images and annotations (about 19 GB)",
    # the MD5s published with these official archives (and used by LAVIS, PaddleNLP, pystiche, ...);
    # the annotations' MD5 is also its S3 ETag. Annotations first: the small file fails fast.
    archives=(
        Archive(f"{COCO_URL}/annotations/annotations_trainval2014.zip", "0a379cfc70b0e71301e0f377548639bd"),
        Archive(f"{COCO_URL}/zips/val2014.zip", "a3d79f5ed8d289b7a7554ce06a5782b3"),
        Archive(f"{COCO_URL}/zips/train2014.zip", "0da8c0bd3d6becc4dcb32757491aca88"),
    ),
    extracts_to="coco2014",  # annotations/, train2014/, val2014/: prepare.root for coco2014
    unpack_to="coco2014",
)
NUSWIDE_MANUAL = ManualDataset(
    name="nuswide",
    extracts_to="nuswide",
    instructions=(
        "NUS-WIDE has no official image download, so `tai download` cannot fetch it. To use it:\n"
        f"  1. from the NUS-WIDE page ({NUSWIDE_PAGE}) download Concepts81.txt, the image lists "
        "(ImageList/TrainImagelist.txt, TestImagelist.txt) and the ground truth (TrainTestLabels/"
        "Labels_<concept>_<Train|Test>.txt), and put them in {root}/;\n"
        "  2. put the images, in the lists' layout (<folder>/<id>_<flickr id>.jpg), in {root}/Flickr/ "
        "(or anywhere, and set prepare.image_root to that folder); public copies lack some images: "
        "prepare lists those in artifacts/data/nuswide/missing_<split>.parquet and goes on;\n"
        "  3. in params.yaml set prepare.dataset: nuswide, prepare.root: {root}, prepare.splits: [train, test]."
    ),
)

# ------------------------------------------------------------------------------------------- the table

FOLDER_FIX = "set it to a CSV or Parquet with columns path, labels ('a|b'), split"
LABELS_FIX = "point it at a text file with one label per line, synonyms after ':' (\"tv monitor: tv, television\")"

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("voc2007", (), VOC2007_SPLITS, _needs_voc2007, VOC2007_DOWNLOAD),
        DatasetSpec("coco2014", ("keep_unannotated",), tuple(COCO2014_SPLITS), _needs_coco2014, COCO2014_DOWNLOAD),
        DatasetSpec("nuswide", ("image_root",), tuple(NUSWIDE_SPLITS), _needs_nuswide, NUSWIDE_MANUAL),
        DatasetSpec("coco", ("annotations", "label_names", "keep_unannotated"), None, _needs_coco, check=_check_coco),
        DatasetSpec(
            "folder", ("labels_file", "label_names"), None, _needs_folder, required={"labels_file": FOLDER_FIX}
        ),
        DatasetSpec("labels", ("label_names",), None, _label_names, required={"label_names": LABELS_FIX}),
    )
}


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DatasetError(f"prepare.dataset = {name!r} is not known: use one of {list(DATASETS)}")
    return DATASETS[name]


# ------------------------------------------------------------------- folders outside the project

EXPERIMENT_COPY = (".dvc", "tmp", "exps")  # where DVC runs queued and --temp experiments


def experiment_copy(cwd: Path | None = None) -> bool:
    """True inside the fresh copy of the repository DVC makes for a queued or `--temp` experiment."""
    parts = (cwd or Path.cwd()).resolve().parts
    n = len(EXPERIMENT_COPY)
    return any(parts[i : i + n] == EXPERIMENT_COPY for i in range(len(parts) - n + 1))


def outside_project(path: str | Path, project: Path | None = None) -> bool:
    """True when `path` (relative paths are relative to the project root, where stages run) leaves it."""
    project = (project or Path.cwd()).resolve()
    return not Path(os.path.abspath(project / path)).is_relative_to(project)


def user_paths(params: "PrepareParams") -> list[tuple[str, str]]:
    """(key, path) of every folder or file the dataset reads from the user's disk."""
    spec = dataset_spec(params.dataset)
    found = [] if not spec.has_images else [("prepare.root", params.root)]
    if "image_root" in spec.keys and params.image_root:
        found.append(("prepare.image_root", params.image_root))
    if "annotations" in spec.keys:
        found += [(f"prepare.annotations.{s}", f) for s, f in (params.annotations or {}).items()]
    for key in ("labels_file", "label_names"):
        if key in spec.keys and getattr(params, key):
            found.append((f"prepare.{key}", getattr(params, key)))
    return found


def check_reachable(params: "PrepareParams") -> None:
    """Refuse, in one line, a path outside the project in a queued or --temp experiment; warn in the workspace.

    Such an experiment runs in a fresh copy of the repository (.dvc/tmp/exps/...) holding only what git
    and DVC track: a relative path out of the project points elsewhere there, and an absolute one is data
    DVC never hashed, so the result could not be reproduced from the experiment's commit."""
    outside = [(key, value) for key, value in user_paths(params) if outside_project(value)]
    if not outside:
        return
    key, value = outside[0]
    name = Path(value).name or "dataset"
    fix = (
        f"`dvc import-url {value} data/{name}` (or `dvc add` a copy of it under data/; `cp -al` makes one of hard "
        f"links), set {key}: data/{name} and commit"
    )
    if experiment_copy():
        raise DatasetError(
            f"{key} = {value!r} is outside the project, and this queued or --temp experiment runs in a fresh copy of "
            f"the repository ({Path.cwd()}) that holds only what git and DVC track, so it cannot see that folder: "
            f"{fix}; `dvc repro` in the workspace reads it where it is"
        )
    log.warning(
        "%s = %r is outside the project: `dvc repro` reads it, but DVC does not track it, so queued and "
        "--temp experiments cannot: %s",
        key,
        value,
        fix,
    )


# ----------------------------------------------------------------------------- by name (`tai download`)


@dataclass(frozen=True)
class _DefaultLocation:
    """Where `download_dataset` looks: a dataset at its download root with its own splits (the
    prepare keys `DatasetSpec.needs` reads, without importing config)."""

    root: str
    splits: tuple[str, ...]
    annotations: dict[str, str] | None = None
    image_root: str | None = None
    labels_file: str | None = None
    label_names: str | None = None


def _spec(name: str):
    spec = DATASETS.get(name)
    if spec is None or spec.source is None:
        choices = sorted(n for n, s in DATASETS.items() if s.source is not None)
        raise DownloadError(f"unknown download {name!r}: choose one of {choices}")
    return spec


def downloadable(name: str) -> bool:
    """True when `tai download NAME` fetches the dataset itself (False for NUS-WIDE and unknown names)."""
    return name in DATASETS and DATASETS[name].downloadable


def dataset_root(name: str, dest: str | Path = paths.DOWNLOADS) -> Path:
    """The folder `download_dataset(name, dest)` returns: what prepare.root should point at."""
    return _spec(name).download_root(dest)


def download_dataset(
    name: str,
    dest: str | Path = paths.DOWNLOADS,
    *,
    keep_archives: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Make dataset `name` available under `dest` and return its root folder (prepare.root).

    Downloadable datasets (their spec in `pipeline.data.datasets.specs`) are fetched, verified and unpacked
    (`download`); a manual one is returned when its files are in place, else ManualDownloadError says
    how to get it.
    """
    spec = _spec(name)
    if spec.downloadable:
        return download(spec.source, dest, keep_archives=keep_archives, progress=progress, log=log)
    root = spec.download_root(dest)
    absent = spec.missing(_DefaultLocation(root=str(root), splits=spec.splits or ()))
    if absent:
        raise ManualDownloadError(
            f"{name}: {absent[0][1]} is missing.\n" + spec.source.instructions.replace("{root}", root.as_posix())
        )
    log(f"{name}: in place in {root}")
    return root
