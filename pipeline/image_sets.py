"""Which image embeddings a setting needs, so nothing else is encoded (the encode_*_images stages).

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


@dataclass(frozen=True)
class ImageSet:
    split: str
    resolution: int
    support_only: bool = False   # few-shot: only the images of artifacts/fewshot/support.parquet


def eval_sets(zeroshot_split: str, evaluate_split: str, resolution: int, partial_resolution: int | None) -> list[ImageSet]:
    """The scored sets: both splits at `resolution`, and the evaluation split at `partial_resolution`
    when the partial-label setting is on (None when it is off); each set once."""
    wanted = [ImageSet(zeroshot_split, resolution), ImageSet(evaluate_split, resolution)]
    if partial_resolution is not None:
        wanted.append(ImageSet(evaluate_split, partial_resolution))
    return list(dict.fromkeys(wanted))

