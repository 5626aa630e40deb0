"""Image files to pixels, shared by both encode engines (`pipeline.encoding.encode_images`, `pipeline.encoding.encode_ray`) and
`tai predict`: 8-bit RGB decoding, CLIP preprocessing, and unreadable files reported instead of raised."""

from __future__ import annotations

import itertools
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

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


def decoded_batches(paths: list[str], positions: list[int], transform, batch_size: int, workers: int):
    """(positions, pixels or None, [(position, why)]) per `batch_size` of `positions`, in order: the files
    decoded by `workers` threads (0: in the caller's thread), a batch per thread, up to `workers + 1` batches
    ahead of the caller.

    Threads, not processes: PIL and torch release the GIL while they decode, resize and normalise, and a
    thread starts at once, where a forked worker of a process holding CLIP cost about 0.1 s to start and
    copied every batch through shared memory (docs/encoding.md measures both)."""
    chunks = iter([positions[start : start + batch_size] for start in range(0, len(positions), batch_size)])

    def decode_chunk(chunk: list[int]):
        return collate_decoded([(position, *decode_image(paths[position], transform)) for position in chunk])

    if workers == 0:
        for chunk in chunks:
            yield decode_chunk(chunk)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="decode")
    try:  # a batch is decoded and stacked by one thread: what a thread allocates, it frees (glibc's per-thread
        # arenas grew with the split when one thread allocated the images and another freed them)
        ahead: deque[Future] = deque(
            pool.submit(decode_chunk, chunk) for chunk in itertools.islice(chunks, workers + 1)
        )
        while ahead:
            batch = ahead.popleft()
            ahead.extend(pool.submit(decode_chunk, chunk) for chunk in itertools.islice(chunks, 1))
            yield batch.result()
    finally:  # an error, or a caller that stops early: nothing is left decoding
        pool.shutdown(wait=True, cancel_futures=True)


def collate_decoded(items):
    good = [(p, x) for p, x, err in items if err is None]
    bad = [(p, err) for p, _, err in items if err is not None]
    pixels = torch.stack([x for _, x in good]) if good else None
    return [p for p, _ in good], pixels, bad
