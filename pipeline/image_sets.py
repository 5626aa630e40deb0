"""Which image embeddings a setting needs, derived from params so nothing else is encoded.

- evaluation (`encode_eval_images`): the zero-shot baseline's and the evaluation split at
  encode.image_resolution; with partial labels also the evaluation split at encode.partial_resolution
  (the partial-label adapter is evaluated there).
- few-shot support (`encode_support_images`): the support images at encode.image_resolution, not the
  whole training split; nothing in the other settings.
- partial labels (`encode_partial_images`): the partially labelled split at encode.partial_resolution;
  nothing in the other settings.

One stage per purpose, so a change of the support set reruns neither the centroids nor the baseline.

Zero-shot on VOC thus encodes the 4,952 test images once, not both splits at two resolutions.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import paths
from .config import Params

PURPOSES = ("eval", "support", "partial")


@dataclass(frozen=True)
class ImageSet:
    split: str
    resolution: int
    support_only: bool = False   # few-shot: only the images of artifacts/fewshot/support.parquet


def image_sets(params: Params, purpose: str) -> list[ImageSet]:
    e = params.encode
    if purpose not in PURPOSES:
        raise ValueError(f"purpose {purpose!r} is unknown: use one of {list(PURPOSES)}")
    if not params.prepare.has_images:   # a labels-only project
        return []
    if purpose == "eval":
        wanted = [ImageSet(params.zeroshot.split, e.image_resolution), ImageSet(params.evaluate.split, e.image_resolution)]
        if params.partial.enabled:
            wanted.append(ImageSet(params.evaluate.split, e.partial_resolution))
    elif purpose == "support":
        wanted = [ImageSet(params.fewshot.split, e.image_resolution, support_only=True)] if params.fewshot.enabled else []
    else:
        wanted = [ImageSet(params.partial.split, e.partial_resolution)] if params.partial.enabled else []
    return list(dict.fromkeys(wanted))


def embeddings_root(purpose: str):
    return {"eval": paths.EVAL_EMBEDDINGS, "support": paths.SUPPORT_EMBEDDINGS, "partial": paths.PARTIAL_EMBEDDINGS}[purpose]
