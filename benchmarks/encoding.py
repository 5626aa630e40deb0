"""The encode stages' paths against bare CLIP loops, on the same captions, images and model, from one run.

    python benchmarks/encoding.py [--texts 192] [--images 64] [--repeats 3] [--batch-size 64]
                                  [--num-workers 2] [--captions templates|PATH] [--threads 2] [--device cpu]

Model: a randomly initialised CLIP RN50 (the released architecture; the compute is the same
as the real weights'), saved and loaded through `clip.load(path)` like a checkpoint.

Texts: `pipeline.encode.encode_texts` (cache look-ups, batches of similar token length, each
run up to its longest caption, cache writes) over a bare loop of
`model.encode_text(clip.tokenize(batch))` padded to 77 tokens, and the largest absolute
difference between the two. Captions: the generate stage's template captions of random VOC
label combinations (`--captions templates`), or the `text` column of a texts table
(`--captions artifacts/texts.parquet`, e.g. LLM captions).

Images: `pipeline.encode.encode_images` (hashing, DataLoader decoding with `--num-workers`,
cache writes) over a bare loop of PIL decode + CLIP preprocessing + `model.encode_image`, on
the same VOC-sized JPEGs. Every timed run starts from an empty cache. Each side runs `--repeats`
times, alternating, and the best time counts (the machine is shared: the best is the least disturbed).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.clip_model import ClipEncoder
from pipeline.config import GenerateParams
from pipeline.embeddings import EmbeddingCache
from pipeline.encode import encode_images, encode_texts
from pipeline.generate.combinations import plan_combinations
from pipeline.generate.templates import template_texts
from pipeline.labels import VOC_LABELS
from pipeline.random_clip import save_random_clip


def template_captions(n: int) -> list[str]:
    """What `generate` writes with llm_fraction 0: a random template and synonyms per VOC combination."""
    params = GenerateParams()
    plan = plan_combinations(VOC_LABELS, seed=0, n=n, max_labels=params.max_labels, llm_fraction=0.0)
    return [t.text for c in plan for t in template_texts(c, VOC_LABELS, params.templates, use_synonyms=True)]


def table_captions(path: str, n: int) -> list[str]:
    import polars as pl

    texts = pl.read_parquet(path, columns=["text"])["text"].unique(maintain_order=True).to_list()
    return texts[:n]  # distinct: the project path encodes a repeated text once, the bare loop would not


def make_images(folder: Path, n: int) -> list[str]:
    """VOC-sized JPEGs (500 x 375) of smooth noise and rectangles."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        pixels = np.kron(rng.integers(0, 255, (25, 34, 3)), np.ones((15, 15, 1)))[:375, :500].astype(np.uint8)
        for _ in range(3):
            y, x = rng.integers(0, 300), rng.integers(0, 420)
            pixels[y : y + 70, x : x + 80] = rng.integers(0, 255, 3)
        path = folder / f"img{i:04d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(str(path))
    return paths


@torch.no_grad()
def bare_texts(model, texts: list[str], batch_size: int, device) -> np.ndarray:
    import clip

    out = []
    for start in range(0, len(texts), batch_size):
        tokens = clip.tokenize(texts[start : start + batch_size], truncate=True).to(device)
        out.append(model.encode_text(tokens).float().cpu().numpy())
    return np.concatenate(out)


@torch.no_grad()
def bare_images(model, preprocess, paths: list[str], batch_size: int, device) -> np.ndarray:
    out = []
    for start in range(0, len(paths), batch_size):
        pixels = torch.stack([preprocess(Image.open(p)) for p in paths[start : start + batch_size]])
        out.append(model.encode_image(pixels.to(device, model.dtype)).float().cpu().numpy())
    return np.concatenate(out)


def best_of(repeats: int, bare, ours):
    """(bare value, bare seconds, our value, our seconds): the two alternate (which goes first too),
    the best time of each counts."""
    times = {"bare": [], "ours": []}
    values = {}
    for r in range(repeats):
        for name, fn in ((("bare", bare), ("ours", ours)) if r % 2 == 0 else (("ours", ours), ("bare", bare))):
            started = time.perf_counter()
            values[name] = fn(r)
            times[name].append(time.perf_counter() - started)
    print("  runs (s): bare " + " ".join(f"{t:.2f}" for t in times["bare"]) + ", project " + " ".join(f"{t:.2f}" for t in times["ours"]))
    return values["bare"], min(times["bare"]), values["ours"], min(times["ours"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=192)
    parser.add_argument("--images", type=int, default=64, help="0 skips the image comparison")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=2, help="the project path's decoding workers (encode.num_workers)")
    parser.add_argument("--captions", default="templates", help="templates, or the path of a texts table")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        encoder = ClipEncoder(str(save_random_clip(tmp / "rn50-random.pt", "RN50")), args.device)
        model, device = encoder.model, encoder.device
        texts = template_captions(args.texts) if args.captions == "templates" else table_captions(args.captions, args.texts)
        lengths = encoder.tokenize(texts).argmax(dim=-1) + 1
        print(f"device {device}, {torch.get_num_threads()} threads, random-init RN50, batch {args.batch_size}, "
              f"best of {args.repeats}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"captions: {len(texts)} ({args.captions}), CLIP tokens mean {lengths.float().mean():.1f}, "
              f"max {int(lengths.max())}; e.g. {texts[0]!r}")

        bare_texts(model, texts[:8], 8, device)  # warm-up
        bare, bare_s, ours, ours_s = best_of(
            args.repeats,
            lambda r: bare_texts(model, texts, args.batch_size, device),
            lambda r: encode_texts(encoder, texts, EmbeddingCache(tmp / f"cache-texts-{r}"), args.batch_size).vectors,
        )
        diff = float(np.abs(ours - bare).max())
        print(f"encode_text: project {ours_s:.2f} s, bare padded loop {bare_s:.2f} s -> {bare_s / ours_s:.2f} x "
              f"(goal >= 5); largest absolute difference {diff:.2e} (goal <= 1e-5; largest |value| {np.abs(bare).max():.2f})")
        print(f"  what trimming can give these captions: about 77 / {lengths.float().mean():.1f} mean tokens = "
              f"{77 / lengths.float().mean():.2f} x (a call costs its tokens)")

        if args.images == 0:
            return
        paths = make_images(tmp, args.images)
        preprocess = encoder.transform(encoder.native_resolution)
        bare_images(model, preprocess, paths[:2], 2, device)  # warm-up
        bare, bare_s, ours, ours_s = best_of(
            args.repeats,
            lambda r: bare_images(model, preprocess, paths, args.batch_size, device),
            lambda r: encode_images(encoder, paths, encoder.native_resolution, EmbeddingCache(tmp / f"cache-images-{r}"),
                                    args.batch_size, args.num_workers).vectors,
        )
        diff = float(np.abs(ours - bare).max())
        print(f"encode_images: {len(paths)} images @{encoder.native_resolution}px, project {ours_s:.2f} s "
              f"({len(paths) / ours_s:.2f} img/s, {args.num_workers} decoding workers), bare loop {bare_s:.2f} s "
              f"({len(paths) / bare_s:.2f} img/s) -> {bare_s / ours_s:.2f} of the bare speed (goal >= 0.95); "
              f"largest absolute difference {diff:.2e}")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
