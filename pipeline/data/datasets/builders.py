"""How each dataset of the spec table (`pipeline.data.datasets.specs`) is read: one builder per name.

A builder turns checked `prepare` params (config ran `DatasetSpec.problem` before any work) into the
label table and one manifest per split. They live apart from the spec table so that what reads only
the table (config, the download stage) does not depend on the readers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from pipeline import paths
from pipeline.data.datasets.coco import build_coco, build_coco2014
from pipeline.data.datasets.folder import build_folder
from pipeline.data.datasets.nuswide import build_nuswide
from pipeline.data.datasets.voc import build_voc2007
from pipeline.data.labels import read_label_file
from pipeline.data.manifest import Prepared

if TYPE_CHECKING:
    from pipeline.config import PrepareParams


def _nuswide(p: "PrepareParams") -> Prepared:
    labels, manifests, missing = build_nuswide(p.root, p.splits, p.image_root)
    extras = {paths.missing_images_path("nuswide", split): frame for split, frame in missing.items()}
    return Prepared(labels, manifests, extras)


BUILDERS: dict[str, Callable[["PrepareParams"], Prepared]] = {
    "voc2007": lambda p: Prepared(*build_voc2007(p.root, p.splits)),
    "coco2014": lambda p: Prepared(*build_coco2014(p.root, p.splits, p.keep_unannotated)),
    "nuswide": _nuswide,
    "coco": lambda p: Prepared(*build_coco(p.root, p.annotations, p.splits, p.keep_unannotated, p.label_names)),
    "folder": lambda p: Prepared(*build_folder(p.root, p.labels_file, p.splits, p.label_names)),
    "labels": lambda p: Prepared(read_label_file(p.label_names), {}),
}
