"""A large `tai gallery` page: its size on disk and its time to first paint in headless Chromium.

    python benchmarks/gallery.py [--images 5000] [--small 60] [--out /tmp/gallery-bench]

Writes `--images` synthetic 640 x 480 JPEGs (noise and coloured stripes: thumbnails about as compressible as
photos'), builds the page (thumbnails, no model: random probabilities), and opens it in headless Chromium
(pipeline/testbeds/headless_browser.py, real time) three times, reading the page's own timings from the DOM: `drawn` (ms
from navigation to the first page of cards built: reading and parsing the embedded JSON included; the cards
paint in the next frame) and `first paint` (Chromium's first-contentful-paint: the header, painted while the
page still loads; empty when Chromium dumped the DOM before it fired). The same for a page of `--small` images,
so the ratio says what the embedded data costs. Also the wall time of one `chromium --dump-dom` run (browser
start included).
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.shipping.gallery import GalleryData, write_gallery
from pipeline.testbeds.headless_browser import dump_dom, find_chromium, screenshot

LABELS = tuple(f"label{i:02d}" for i in range(20))


COLOURS = np.random.default_rng(7).integers(40, 256, (len(LABELS), 3))


def make_images(folder: Path, n: int, seed: int = 0) -> tuple[list[Path], np.ndarray]:
    """Noise with one coloured stripe per true label (a label's colour is fixed), and the truth."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files, truth = [], np.zeros((n, len(LABELS)), dtype=np.int8)
    for i in range(n):
        path = folder / f"{i:05d}.jpg"
        shown = rng.choice(len(LABELS), rng.integers(1, 4), replace=False)
        truth[i, shown] = 1
        if not path.exists():
            pixels = rng.integers(0, 80, (480, 640, 3), dtype=np.uint8)
            for j, c in enumerate(shown):
                pixels[40 + j * 140 : 150 + j * 140] = COLOURS[c]
            Image.fromarray(pixels).save(path, quality=85)
        files.append(path)
    return files, truth


def page(folder: Path, out: Path, n: int) -> tuple[Path, float]:
    """The page of the first n images, with probabilities that get most labels right (about one image in five
    misses a label at 0.5, one in two gets a wrong one)."""
    files, truth = make_images(folder, n)
    rng = np.random.default_rng(1)
    noise = rng.random(truth.shape)
    probabilities = np.where(truth > 0, 0.38 + 0.62 * noise, 0.65 * noise**8)
    data = GalleryData(
        [f.name for f in files],
        files,
        LABELS,
        probabilities,
        np.full(len(LABELS), 0.5),
        "benchmark (0.5 for every label)",
        truth,
        "benchmark images",
    )
    start = time.perf_counter()
    write_gallery(data, out)
    return out, time.perf_counter() - start


def timings(path: Path, repeats: int = 3) -> dict[str, float]:
    drawn, painted, wall = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        dom, requests = dump_dom(path.resolve().as_uri(), budget_ms=None)  # real time: performance.now() is real
        wall.append(time.perf_counter() - start)
        assert requests == [], requests
        drawn.append(float(re.search(r'data-drawn-ms="(\d+)"', dom).group(1)))
        found = re.search(r'data-first-paint-ms="(\d+)"', dom)
        painted.append(float(found.group(1)) if found else float("nan"))
    return {
        "drawn_ms": statistics.median(drawn),
        "first_paint_ms": statistics.median(painted),
        "wall_s": statistics.median(wall),
    }


def shot(page_path: Path, out: Path) -> None:
    """A screenshot of the page sorted by errors, as a small palette PNG."""
    raw = out.with_suffix(".raw.png")
    assert screenshot(page_path.resolve().as_uri() + "#sort=error", raw, "1000,560") == []
    with Image.open(raw) as image:
        image.convert("RGB").quantize(64).save(out, optimize=True)
    raw.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--small", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("/tmp/gallery-bench"))
    parser.add_argument(
        "--screenshot",
        type=Path,
        help="also save a small screenshot of the --small page sorted by errors (docs/gallery.png)",
    )
    args = parser.parse_args()
    if find_chromium() is None:
        raise SystemExit("no chromium on PATH: apt-get install chromium (or run .ci/browser)")
    rows = []
    for n in (args.small, args.images):
        path, build_s = page(args.out / "images", args.out / f"gallery-{n}.html", n)
        rows.append((n, path.stat().st_size, build_s, timings(path)))
        if args.screenshot and n == args.small:
            shot(path, args.screenshot)
    print("| images | page size | build (s) | first page drawn (ms) | first paint (ms) | chromium run (s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, size, build_s, t in rows:
        print(
            f"| {n} | {size / 1e6:.2f} MB | {build_s:.1f} | {t['drawn_ms']:.0f} | {t['first_paint_ms']:.0f} | "
            f"{t['wall_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
