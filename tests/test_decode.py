"""The image files to pixels step both encode stages, the dense features and `tai predict` share
(`pipeline.encoding.decode.decoded_batches`): every file in order whatever the threads, bad files reported at their
positions, nothing left running when the caller stops early."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.encoding.decode import decoded_batches
from pipeline.encoding.openai_clip import image_transform


def _files(folder, n: int, bad: set[int]) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"{i}.jpg"
        if i in bad:
            path.write_bytes(b"not a jpeg")
        else:
            Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_batches_come_in_order_with_bad_files_at_their_positions(tmp_path, workers):
    paths = _files(tmp_path, 11, bad={2, 7})
    transform = image_transform(32)
    positions = [10, 0, 2, 3, 4, 5, 6, 7, 8, 1]  # any order, a subset: the caller's
    batches = list(decoded_batches(paths, positions, transform, 4, workers))
    assert [len(good) + len(bad) for good, _, bad in batches] == [4, 4, 2]
    assert [p for good, _, _ in batches for p in good] == [p for p in positions if p not in (2, 7)]
    assert [p for _, _, bad in batches for p, _ in bad] == [2, 7]
    assert all("UnidentifiedImageError" in why for _, _, bad in batches for _, why in bad)
    for good, pixels, _ in batches:
        for row, p in zip(pixels, good):
            with Image.open(paths[p]) as image:
                torch.testing.assert_close(row, transform(image.convert("RGB")), rtol=0, atol=0)


def test_a_batch_of_only_bad_files_has_no_pixels(tmp_path):
    paths = _files(tmp_path, 2, bad={0, 1})
    [(good, pixels, bad)] = list(decoded_batches(paths, [0, 1], image_transform(32), 4, 2))
    assert good == [] and pixels is None and [p for p, _ in bad] == [0, 1]


def test_a_caller_that_stops_early_leaves_no_decoding_thread(tmp_path):
    paths = _files(tmp_path, 40, bad=set())
    batches = decoded_batches(paths, list(range(40)), image_transform(32), 2, 3)
    next(batches)
    batches.close()  # as when encoding the first batch raised
    assert not [t for t in threading.enumerate() if t.name.startswith("decode")]


def test_files_are_decoded_on_more_than_one_thread_not_the_callers(tmp_path):
    """encode.num_workers threads decode: with 3, the files are opened on at least two threads, never on the
    caller's (forcing decoding serial, in the caller's thread, fails here)."""
    paths = _files(tmp_path, 12, bad=set())
    threads: set[str] = set()
    plain = image_transform(32)

    def transform(image):
        threads.add(threading.current_thread().name)
        threading.Event().wait(0.02)  # long enough that the pool's threads overlap
        return plain(image)

    batches = list(decoded_batches(paths, list(range(12)), transform, 2, 3))
    assert sum(len(good) for good, _, _ in batches) == 12
    assert threading.current_thread().name not in threads and len(threads) >= 2, threads
