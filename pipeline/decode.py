"""Image files to pixels, shared by both encode engines (`pipeline.encode`, `pipeline.encode_ray`) and
`tai predict`: 8-bit RGB decoding, CLIP preprocessing, and unreadable files reported instead of raised."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# Part of every image cache key: a change to how files become pixels must not reuse old vectors.
DECODING = "rgb8-before-resize"


def as_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB before CLIP's preprocessing sees the image. 16-bit (and 32-bit integer) images are
    scaled: PIL's convert("RGB"), which CLIP calls, clips them, turning a 16-bit photo almost all
    white. Alpha is dropped before resizing (CLIP drops it after, once the resize has mixed it in)."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image).astype(np.float64)
        top = 65535.0 if image.mode != "I" or values.max(initial=0) <= 65535 else values.max()
        image = Image.fromarray(np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_image(path: str, transform) -> tuple[torch.Tensor | None, str | None]:
    """(pixels, None), or (None, why) for a file that cannot be read or decoded; both engines use it."""
    try:
        with Image.open(path) as image:
            return transform(as_rgb(image)), None
    except Exception as e:  # PIL raises many kinds for truncated or foreign files
        return None, f"{type(e).__name__}: {e}"


class ImageFiles(torch.utils.data.Dataset):
    """Decodes images in DataLoader workers; a bad file yields its error instead of a tensor."""

    def __init__(self, paths: list[str], positions: list[int], transform):
        self.paths, self.positions, self.transform = paths, positions, transform

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        position = self.positions[i]
        return (position, *decode_image(self.paths[position], self.transform))


def collate_decoded(items):
    good = [(p, x) for p, x, err in items if err is None]
    bad = [(p, err) for p, _, err in items if err is not None]
    pixels = torch.stack([x for _, x in good]) if good else None
    return [p for p, _ in good], pixels, bad
