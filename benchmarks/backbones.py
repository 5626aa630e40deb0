"""Encoding cost of CLIP backbones through the project's encoder, from one run, runs alternating.

    python benchmarks/backbones.py [--backbones RN50,open_clip:ViT-B-32,open_clip:ViT-B-16]
                                   [--images 32] [--texts 256] [--repeats 3] [--threads 2] [--resolutions 224,448]

Every backbone is randomly initialised with its released architecture (the compute is the real
weights'), saved, and loaded by the path a checkpoint takes: `clip.load(path)` for OpenAI names,
`open_clip:ARCH/path` (`open_clip.create_model_and_transforms`) for open_clip ones. Measured per
backbone: images per second through `ClipEncoder.encode_images` at each resolution (preprocessed
pixels in, no decoding: the encoder alone), and texts per second through `ClipEncoder.encode_tokens`
on template captions (trimmed where the text tower allows it) and through the bare model's
`encode_text` on the padded rows. Best of `--repeats` alternating rounds (the machine may be shared:
the best is the least disturbed).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from pipeline.encoding.image_runtime import image_encoder
from pipeline.encoding.load import load_clip
from pipeline.encoding.openai_clip import is_open_clip
from pipeline.testbeds.random_clip import save_random_clip
from toy_project import template_captions


def random_checkpoint(backbone: str, folder: Path) -> str:
    """encode.model of a randomly initialised `backbone`, saved under `folder`."""
    if not is_open_clip(backbone):
        assert backbone == "RN50", "OpenAI names other than RN50 are not built here"
        return str(save_random_clip(folder / "RN50.pt", "RN50"))
    import open_clip

    architecture = backbone.split(":", 1)[1]
    torch.manual_seed(0)
    path = folder / f"{architecture}.pt"
    torch.save(open_clip.create_model(architecture).state_dict(), path)
    return f"open_clip:{architecture}/{path}"


def image_gflops(encoder, resolution: int) -> float:
    """FLOPs of one image through the image encoder (matrix products, 2 per multiply-add), counted."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel is invisible to the counter
    try:
        with counter:
            image_encoder(encoder)(torch.zeros(1, 3, resolution, resolution), resolution)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops() / 1e9


def best_seconds(run, repeats: int) -> list[float]:
    return [min(times) for times in zip(*[run() for _ in range(repeats)])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="RN50,open_clip:ViT-B-32,open_clip:ViT-B-16")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resolutions", default="224,448")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    resolutions = [int(r) for r in args.resolutions.split(",")]
    captions = template_captions(args.texts)[: args.texts]
    with tempfile.TemporaryDirectory() as tmp:
        encoders = {b: load_clip(random_checkpoint(b, Path(tmp)), "cpu") for b in args.backbones.split(",")}
        tokens = {b: e.tokenize(captions) for b, e in encoders.items()}
        pixels = {r: torch.randn(args.images, 3, r, r, generator=torch.Generator().manual_seed(0)) for r in resolutions}

        def one_round() -> list[float]:
            times = []
            for backbone, encoder in encoders.items():  # alternating: every backbone once per round
                for resolution in resolutions:
                    start = time.perf_counter()
                    for batch in pixels[resolution].split(args.batch_size):
                        image_encoder(encoder)(batch, resolution)
                    times.append(time.perf_counter() - start)
                start = time.perf_counter()
                for batch in tokens[backbone].split(args.batch_size * 2):
                    encoder.encode_tokens(batch)
                times.append(time.perf_counter() - start)
                start = time.perf_counter()
                with torch.no_grad():  # the bare model on the padded rows, for the trimming's gain
                    for batch in tokens[backbone].split(args.batch_size * 2):
                        encoder.model.encode_text(batch)
                times.append(time.perf_counter() - start)
            return times

        one_round()  # warm-up: first calls allocate
        seconds = iter(best_seconds(one_round, args.repeats))
        print(
            "| backbone | embed dim | "
            + " | ".join(f"GFLOPs/image @{r}" for r in resolutions)
            + " | "
            + " | ".join(f"images/s @{r}" for r in resolutions)
            + " | texts/s (`encode_tokens`) | texts/s (bare, padded) |"
        )
        print("|---|---|" + "---|" * (2 * len(resolutions) + 2))
        for backbone, encoder in encoders.items():
            flops = [image_gflops(encoder, r) for r in resolutions]
            rates = [args.images / next(seconds) for _ in resolutions]
            text_rate, padded_rate = len(captions) / next(seconds), len(captions) / next(seconds)
            print(
                f"| {backbone} | {encoder.embed_dim} | "
                + " | ".join(f"{f:.1f}" for f in flops)
                + " | "
                + " | ".join(f"{r:.3g}" for r in rates)
                + f" | {text_rate:.3g} | {padded_rate:.3g} |"
            )


if __name__ == "__main__":
    main()
