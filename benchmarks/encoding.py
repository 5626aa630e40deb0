"""The encode stages and their image runtimes against bare CLIP loops, on the same captions, images and model, in one run.

    python benchmarks/encoding.py [--texts 192] [--images 64] [--repeats 3] [--batch-size 32] [--num-workers 2]
                                  [--captions templates|PATH] [--threads 2] [--compile] [--memory-images 1000,4000]

Model: a randomly initialised CLIP RN50 (the released architecture; the compute is the same
as the real weights'), saved and loaded through `clip.load(path)` like a checkpoint.

1. Texts: `pipeline.encoding.encode.encode_texts` (cache look-ups, batches of similar token length, each
   run up to its longest caption, cache writes) over a bare loop of
   `model.encode_text(clip.tokenize(batch))` padded to 77 tokens, and the largest absolute
   difference. Captions: template captions of random VOC label combinations (`--captions
   templates`) or the `text` column of a texts table (`--captions artifacts/texts.parquet`).
2. The image model alone: each image runtime of `pipeline.encoding.image_runtime` (and bf16) on the same
   pre-decoded 224 px tensors, images/s over eager fp32 torch, the largest absolute difference
   (and relative to the largest value) and the smallest cosine. A runtime that is not installed
   is skipped with a note; `compile` only with `--compile` (it takes about a minute to build).
3. The stage: `pipeline.encoding.encode_images.encode_images` (hashing, decoding in `--num-workers`
   threads, the default runtime, cache writes) on VOC-sized JPEGs, over the bare loop
   (PIL decode + preprocessing + eager `model.encode_image`) and over the same runtime on the
   pre-decoded tensors (the model alone); the same for bf16, and for torchscript (the core install's
   default) where the default is another runtime. Also the core time decoding takes per image
   against the model's, which bounds the stage whatever the machine's load.
4. Memory: peak RSS of this run, and of `encode_images` over `--memory-images` tiny files at
   64 px in a fresh process each (RN50's 1024-d vectors; the compute is small), so the growth per
   image can be extrapolated to a 100,000-image split.

Every timed run starts from an empty cache. Variants run `--repeats` times, alternating (the order
flips each round), and the best time counts: the machine may be shared, the best is the least disturbed.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # the stage's progress bars would bury the table

import argparse
import datetime
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline.config import EncodeParams  # noqa: E402
from pipeline.encoding.decode import decoded_batches  # noqa: E402
from pipeline.encoding.embeddings import EmbeddingCache  # noqa: E402
from pipeline.encoding.encode import encode_texts  # noqa: E402
from pipeline.encoding.encode_images import encode_images  # noqa: E402
from pipeline.encoding.image_runtime import (  # noqa: E402
    PACKAGES,
    ImageEngine,
    choose_runtime,
    image_encoder,
    installed,
)
from pipeline.encoding.load import load_clip  # noqa: E402
from pipeline.encoding.openai_clip import ClipEncoder  # noqa: E402
from pipeline.encoding.precision import precision_problem  # noqa: E402
from pipeline.testbeds.random_clip import save_random_clip  # noqa: E402
from toy_project import template_captions  # noqa: E402

RUNTIMES = ("torchscript", "onnxruntime", "compile")  # measured against eager torch


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


def make_tiny_images(folder: Path, n: int) -> list[str]:
    """`n` distinct 16 x 16 PNGs (distinct bytes: each is a cache entry of its own)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        path = folder / f"t{i:06d}.png"
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
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


def pre_decoded(paths: list[str], transform, batch_size: int) -> list[torch.Tensor]:
    """The images as the stage hands them to the model: decoded, preprocessed, batched."""
    return [pixels for _, pixels, _ in decoded_batches(paths, list(range(len(paths))), transform, batch_size, 0)]


def cpu_seconds(run, threads: int) -> float:
    """CPU time that `run` takes on `threads` torch threads: unlike wall time, hardly moved by other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    started = time.process_time()
    run()
    seconds = time.process_time() - started
    torch.set_num_threads(before)
    return seconds


def alternate(repeats: int, variants: dict) -> tuple[dict, dict]:
    """(value, best seconds) per variant: each runs `repeats` times, the order flipping every round."""
    times = {name: [] for name in variants}
    values = {}
    for r in range(repeats):
        for name in list(variants) if r % 2 == 0 else list(reversed(variants)):
            started = time.perf_counter()
            values[name] = variants[name](r)
            times[name].append(time.perf_counter() - started)
    for name, runs in times.items():
        print(f"  runs (s) {name}: " + " ".join(f"{t:.2f}" for t in runs))
    return values, {name: min(runs) for name, runs in times.items()}


def compare(reference: np.ndarray, other: np.ndarray) -> str:
    a, b = torch.from_numpy(np.asarray(reference)), torch.from_numpy(np.asarray(other))
    diff = float((a - b).abs().max())
    return (
        f"max abs difference {diff:.2e} ({diff / float(a.abs().max()):.1e} of the largest value), "
        f"min cosine {float(F.cosine_similarity(a, b).min()):.6f}"
    )


def machine() -> str:
    from pipeline.environment import cpu_model

    model = cpu_model()
    bf16 = "no bf16 instructions" if precision_problem("bf16", torch.device("cpu")) else "bf16 instructions"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{model}, {os.cpu_count()} cores, {bf16}, {gpu}; torch {torch.__version__}"


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the process that started it)."""
    status = Path("/proc/self/status")
    if status.exists():
        return next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM")) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # macOS: bytes


def section_texts(args, encoder: ClipEncoder, tmp: Path) -> None:
    model, device = encoder.model, encoder.device
    texts = template_captions(args.texts) if args.captions == "templates" else table_captions(args.captions, args.texts)
    lengths = encoder.tokenize(texts).argmax(dim=-1) + 1
    print(
        f"\n## 1. Texts: {len(texts)} captions ({args.captions}), CLIP tokens mean {lengths.float().mean():.1f}, "
        f"max {int(lengths.max())}; e.g. {texts[0]!r}"
    )
    bare_texts(model, texts[:8], 8, device)  # warm-up
    values, best = alternate(
        args.repeats,
        {
            "bare": lambda r: bare_texts(model, texts, args.batch_size, device),
            "project": lambda r: (
                encode_texts(encoder, texts, EmbeddingCache(tmp / f"cache-texts-{r}"), args.batch_size).vectors
            ),
        },
    )
    diff = float(np.abs(values["project"] - values["bare"]).max())
    print(
        f"encode_text: project {best['project']:.2f} s, bare padded loop {best['bare']:.2f} s -> "
        f"{best['bare'] / best['project']:.2f} x (goal >= 5); largest absolute difference {diff:.2e} "
        f"(goal <= 1e-5; largest |value| {np.abs(values['bare']).max():.2f})"
    )


def section_model(args, encoder: ClipEncoder, batches: list[torch.Tensor]) -> None:
    visual, n = encoder.model.visual, sum(len(b) for b in batches)
    print(f"\n## 2. The image model alone: {n} pre-decoded images @224px, batch {args.batch_size}")
    variants, built = {}, {}
    plain = ImageEngine(visual, 224, "torch")
    variants["torch fp32 (plain)"] = lambda r: np.concatenate([plain(b).numpy() for b in batches])
    for runtime in RUNTIMES:
        if runtime == "compile" and not args.compile:
            print("  compile: skipped (pass --compile; it takes about a minute to build RN50 on 2 cores)")
            continue
        if not installed(runtime):
            print(f"  {runtime}: skipped, not installed (pip install {' '.join(PACKAGES[runtime])})")
            continue
        started = time.perf_counter()
        engine = ImageEngine(visual, 224, runtime)
        if engine.runtime != runtime:
            print(f"  {runtime}: fell back to {engine.runtime} (see the log line above)")
            continue
        built[runtime] = time.perf_counter() - started
        variants[runtime] = lambda r, engine=engine: np.concatenate([engine(b).numpy() for b in batches])
    for precision in ("bf16",):
        if precision_problem(precision, encoder.device):
            print(f"  {precision}: skipped ({precision_problem(precision, encoder.device)})")
            continue
        started = time.perf_counter()
        engine = ImageEngine(visual, 224, "auto", precision)
        built[engine.runtime] = time.perf_counter() - started
        variants[engine.runtime] = lambda r, engine=engine: np.concatenate([engine(b).numpy() for b in batches])
    for run in variants.values():  # warm-up (a graph's first calls optimise it)
        run(-1)
    values, best = alternate(args.repeats, variants)
    reference, base = values["torch fp32 (plain)"], best["torch fp32 (plain)"]
    print("| runtime | images/s | over plain fp32 | build (s) | output against plain fp32 |")
    print("|---|---|---|---|---|")
    for name in variants:
        print(
            f"| {name} | {n / best[name]:.1f} | {base / best[name]:.2f} x | {built.get(name, 0):.1f} | "
            f"{compare(reference, values[name])} |"
        )


def section_stage(
    args, encoder: ClipEncoder, others: dict[str, ClipEncoder], paths: list[str], batches, tmp: Path
) -> None:
    """The stage with `encoder` (the default runtime) and with each of `others` (bf16; the core install's
    torchscript where the default is another runtime), each against the bare loop and its model alone."""
    n, resolution = len(paths), encoder.native_resolution
    print(
        f"\n## 3. The stage: {n} VOC-sized JPEGs @{resolution}px, batch {args.batch_size}, {args.num_workers} "
        f"decoding thread(s)"
    )
    preprocess = encoder.transform(resolution)
    model, device = encoder.model, encoder.device
    variants = {
        "bare loop (PIL + preprocess + eager fp32)": lambda r: bare_images(
            model, preprocess, paths, args.batch_size, device
        ),
        "model alone (default runtime)": lambda r: np.concatenate(
            [image_encoder(encoder)(b, resolution) for b in batches]
        ),
        "stage (default runtime)": lambda r: (
            encode_images(
                encoder, paths, resolution, EmbeddingCache(tmp / f"cache-stage-{r}"), args.batch_size, args.num_workers
            ).vectors
        ),
    }
    for name, other in others.items():
        variants[f"model alone ({name})"] = lambda r, e=other: np.concatenate(
            [image_encoder(e)(b, resolution) for b in batches]
        )
        variants[f"stage ({name})"] = lambda r, e=other, name=name: (
            encode_images(
                e, paths, resolution, EmbeddingCache(tmp / f"cache-{name}-{r}"), args.batch_size, args.num_workers
            ).vectors
        )
    for run in variants.values():
        if run is not variants["bare loop (PIL + preprocess + eager fp32)"]:
            run(-1)  # warm-up: builds each encoder's graph at this resolution
    values, best = alternate(args.repeats, variants)
    decode_cpu = cpu_seconds(
        lambda: pre_decoded(paths, preprocess, args.batch_size), threads=1
    )  # as in a decoding thread
    model_cores = best["model alone (default runtime)"] * torch.get_num_threads()
    print(
        f"  decoding + preprocessing: {1000 * decode_cpu / n:.1f} ms of one core per image; the model "
        f"({image_encoder(encoder).engines[resolution].runtime}): {1000 * model_cores / n:.1f} core-ms per image "
        f"({torch.get_num_threads()} threads): where decoding takes its cores from the model, the stage reaches at most "
        f"{model_cores / (model_cores + decode_cpu):.2f} of the model alone"
    )
    bare = values["bare loop (PIL + preprocess + eager fp32)"]
    for name in variants:
        print(f"  {name}: {n / best[name]:.1f} images/s")
    bare_s = best["bare loop (PIL + preprocess + eager fp32)"]
    for name, goal in (("default runtime", 1.5), *((name, 2.5 if name == "bf16" else 1.5) for name in others)):
        used = image_encoder(encoder if name == "default runtime" else others[name]).engines[resolution].runtime
        print(
            f"stage ({name}: {used}) over the bare fp32 loop: {bare_s / best[f'stage ({name})']:.2f} x (goal >= {goal}); "
            f"over its model alone: {best[f'model alone ({name})'] / best[f'stage ({name})']:.2f} (goal >= 0.9); "
            f"{compare(bare, values[f'stage ({name})'])}"
        )


def section_memory(args, checkpoint: Path, tmp: Path) -> None:
    counts = [int(c) for c in args.memory_images.split(",") if c]
    if not counts:
        return
    print(
        f"\n## 4. Memory: encode_images over {' and '.join(map(str, counts))} distinct tiny files at 64 px "
        f"(RN50, 1024-d vectors), a fresh process each, {args.num_workers} decoding thread(s)"
    )
    rows = []
    for count in counts:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--memory-probe",
                str(count),
                "--checkpoint",
                str(checkpoint),
                "--probe-dir",
                str(tmp / f"probe-{count}"),
                "--num-workers",
                str(args.num_workers),
                "--threads",
                str(args.threads),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        before, peak, held, seconds = (float(v) for v in out.stdout.split()[-4:])
        rows.append((count, held))
        print(
            f"  {count} images: peak RSS {peak:.0f} MiB, {peak - before:.0f} MiB over the loaded model and its graph "
            f"({before:.0f} MiB); at most {held:.1f} MiB of Python and numpy objects at once during the call; {seconds:.1f} s"
        )
    if len(rows) >= 2:
        (n1, held1), (n2, held2) = rows[0], rows[-1]
        per_image = (held2 - held1) * 2**20 / (n2 - n1) + 4 * 1024  # + the cache index's row (see below)
        print(
            f"what grows with the split: {per_image / 1024:.1f} KiB per image: the Python and numpy objects above (the "
            f"result array, 4 KiB per 1024-d float32 vector, and the keys) plus the cache's in-memory index, another "
            f"4 KiB per image held in the model's output buffers, which tracemalloc does not see -> about "
            f"{held1 + per_image * (100_000 - n1) / 2**20:.0f} MiB for a 100,000-image split, on top of the model and "
            f"the batches in flight (the peak RSS over the model above, which does not grow with the split)"
        )


def memory_probe(args) -> None:
    """One `encode_images` over `--memory-probe` tiny files; prints the peak RSS once the model is loaded and
    its graph built, the peak RSS at the end (this process: the decoding threads are in it), the most
    memory Python and numpy objects held at once during the call (tracemalloc: what grows with the
    number of images, free of the allocator's noise), and the seconds."""
    import tracemalloc

    torch.set_num_threads(args.threads)
    folder = Path(args.probe_dir)
    paths = make_tiny_images(folder / "images", args.memory_probe)
    encoder = load_clip(args.checkpoint, "cpu")
    image_encoder(encoder)(torch.zeros(1, 3, 64, 64), 64)
    before = peak_rss_mib()
    started = time.perf_counter()
    tracemalloc.start()
    result = encode_images(encoder, paths, 64, EmbeddingCache(folder / "cache"), 256, args.num_workers)
    held = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert len(result.kept) == len(paths)
    print(before, peak_rss_mib(), held, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=192, help="0 skips the text comparison")
    parser.add_argument("--images", type=int, default=64, help="0 skips the image comparisons")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--num-workers",
        type=int,
        default=EncodeParams.num_workers,
        help="the stage's decoding threads (encode.num_workers, default as in params.yaml)",
    )
    parser.add_argument("--captions", default="templates", help="templates, or the path of a texts table")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (about a minute to build)")
    parser.add_argument("--memory-images", default="1000,4000", help="file counts of the memory probe; empty skips it")
    parser.add_argument("--memory-probe", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--probe-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        return memory_probe(args)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    print(f"# python {' '.join(sys.argv)}")
    print(
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}; {torch.get_num_threads()} "
        f"threads; load average {os.getloadavg()[0]:.1f}; random-init RN50; best of {args.repeats} alternating runs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = save_random_clip(tmp / "rn50-random.pt")
        encoder = load_clip(str(checkpoint), "cpu")
        if args.texts:
            section_texts(args, encoder, tmp)
        if args.images:
            paths = make_images(tmp, args.images)
            batches = pre_decoded(paths, encoder.transform(encoder.native_resolution), args.batch_size)
            section_model(args, encoder, batches)
            others = {}
            if not precision_problem("bf16", encoder.device):
                others["bf16"] = load_clip(str(checkpoint), "cpu", "bf16")
            if choose_runtime("auto", "fp32", encoder.device) != "torchscript":  # also the core install's default
                others["torchscript"] = load_clip(str(checkpoint), "cpu", runtime="torchscript")
            section_stage(args, encoder, others, paths, batches, tmp)
        section_memory(args, checkpoint, tmp)
    print(
        f"\npeak RSS of this run {peak_rss_mib():.0f} MiB (up to three RN50s and every runtime's graph); "
        f"load average at the end {os.getloadavg()[0]:.1f}; {time.perf_counter() - started:.0f} s in all"
    )


if __name__ == "__main__":
    main()
