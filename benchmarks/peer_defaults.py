"""What each default changed by issue 25 does, on the prompt methods' synthetic world (pipeline/testbeds/prompt_world.py):
the loss weight (DualCoOp), TaI-DPT's template sentences, the integration's scaling (and DualCoOp's Delta as the
partner's score), and CoOp's multi-label loss. Test mAP (fraction) per variant, mean over seeds; one run, so the
variants are compared with each other, never with another day's numbers.

    python benchmarks/peer_defaults.py [--seeds 3] [--out benchmarks/results/peer_defaults.csv]

The tiny random CLIP of the tests stands in for RN50 (no weights here), so the methods train class-specific
contexts at the learning rates the tests use where the peers' own lr would move nothing in a few epochs; each
section says which. A synthetic world says which way a default moves a method, not by how much on VOC.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from pipeline.evaluation.metrics import integrate, mean_ap
from pipeline.prompt.coop import CoOp, train_coop
from pipeline.prompt.dualcoop import DualCoOp, train_dualcoop
from pipeline.prompt.taidpt import TaIDPT, TextTokens, train_taidpt
from pipeline.prompt.templates import TEMPLATES_PER_LABEL
from pipeline.testbeds.prompt_world import NAMES, PromptWorld, tiny_clip_model


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def dualcoop_model(clip, world: PromptWorld, seed: int, loss_weight: float, epochs: int = 50) -> DualCoOp:
    """DualCoOp at its own lr (0.001), batch 32, 50 epochs, half the labels of 128 images known."""
    dense, _, targets = world.images(128)
    known = world.known(targets, 0.5)
    model = DualCoOp(clip, NAMES, torch.zeros(5, 64), 4, class_specific=True, generator=seeded(seed))
    with torch.no_grad():  # as tests/test_prompt_methods.py: the tiny CLIP puts two random contexts far apart
        model.negative.context.ctx.copy_(model.positive.context.ctx)
    train_dualcoop(
        model,
        lambda rows: dense[rows],
        targets,
        known,
        epochs=epochs,
        lr=0.001,
        batch_size=32,
        seed=seed,
        loss_weight=loss_weight,
    )
    return model


def taidpt_model(clip, world: PromptWorld, seed: int, templates: bool, texts: int = 256) -> TaIDPT:
    """TaI-DPT on `texts` multi-label texts, with or without 89 single-label texts per label (the template
    sentences' stand-in); lr 0.5, batch 64, 20 epochs (the tests' lr: 1e-4 moves nothing in 20 epochs here)."""
    text_global, rows, text_targets = world.texts(texts)
    if templates:
        extra_global, extra_rows, extra_targets = world.single_label_texts(TEMPLATES_PER_LABEL)
        text_global, rows = torch.cat([text_global, extra_global]), rows + extra_rows
        text_targets = torch.cat([text_targets, extra_targets])
    model = TaIDPT(clip, NAMES, 4, class_specific=True, generator=seeded(seed))
    train_taidpt(model, TextTokens(text_global, rows), text_targets, epochs=20, lr=0.5, batch_size=64, seed=seed)
    return model


def integration_maps(clip, seed: int) -> dict[str, float]:
    """One world, one test set: DualCoOp (default loss weight) as the partner, TaI-DPT's sigmoid probabilities
    standing in for the adapter's (no adapter trains on this world); each scaling, with DualCoOp's Delta and
    with its float32 probability as the partner's score."""
    world = PromptWorld(400 + seed)
    dualcoop = dualcoop_model(clip, world, seed, 0.03)
    taidpt = taidpt_model(clip, world, seed, templates=True)
    test_dense, test_global, test_targets = world.images(300)
    targets = test_targets.numpy()
    delta = dualcoop.scores(lambda rows: test_dense[rows], len(test_dense)).double().numpy()
    probability = torch.sigmoid(torch.from_numpy(delta).float()).double().numpy()  # float32, saturating
    adapter = torch.sigmoid(taidpt.scores(test_global, lambda r: test_dense[r])).double().numpy()
    out = {"adapter side alone": mean_ap(adapter, targets), "partner alone": mean_ap(delta, targets)}
    for name, partner in (("Delta", delta), ("probability", probability)):
        for scaling in ("global", "per_class", "both"):
            out[f"{scaling}, partner {name}"] = mean_ap(integrate(adapter, partner, scaling), targets)
    return out


def coop_run(clip, seed: int, loss: str, lr: float, epochs: int = 30) -> float:
    world = PromptWorld(300 + seed)
    _, images, targets = world.images(96)
    _, test_images, test_targets = world.images(300)
    model = CoOp(clip, NAMES, 4, class_specific=True, generator=seeded(seed))
    train_coop(model, images, targets, epochs=epochs, lr=lr, batch_size=32, seed=seed, loss=loss)
    return mean_ap(model.scores(test_images).double().numpy(), test_targets.numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/peer_defaults.csv"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    clip = tiny_clip_model()
    rows = []

    def record(section: str, variant: str, values: list[float], seconds: float) -> None:
        rows.append(
            {
                "section": section,
                "variant": variant,
                "map_mean": float(np.mean(values)),
                "map_std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "seeds": len(values),
                "seconds": round(seconds, 1),
            }
        )
        print(f"{section:<28} {variant:<44} {np.mean(values):.4f} ± {rows[-1]['map_std']:.4f}  ({seconds:.0f} s)")

    for weight in (1.0, 0.03):
        started, maps = time.perf_counter(), []
        for seed in range(args.seeds):
            world = PromptWorld(100 + seed)
            model = dualcoop_model(clip, world, seed, weight)
            test_dense, _, test_targets = world.images(300)
            maps.append(
                mean_ap(model.scores(lambda r: test_dense[r], len(test_dense)).double().numpy(), test_targets.numpy())
            )
        record(
            "dualcoop loss_weight",
            f"{weight:g}" + (" (default)" if weight == 0.03 else ""),
            maps,
            time.perf_counter() - started,
        )
    started = time.perf_counter()
    runs = [integration_maps(clip, seed) for seed in range(args.seeds)]
    for variant in runs[0]:
        record(
            "integration",
            variant + (" (default)" if variant == "global, partner Delta" else ""),
            [run[variant] for run in runs],
            time.perf_counter() - started,
        )
    for templates in (True, False):
        started = time.perf_counter()
        maps = []
        for seed in range(args.seeds):
            world = PromptWorld(200 + seed)
            model = taidpt_model(clip, world, seed, templates)
            test_dense, test_global, test_targets = world.images(300)
            maps.append(
                mean_ap(model.scores(test_global, lambda r: test_dense[r]).double().numpy(), test_targets.numpy())
            )
        record(
            "taidpt templates",
            ("with" if templates else "without") + (" (default)" if templates else ""),
            maps,
            time.perf_counter() - started,
        )
    for lr in (0.5, 0.002):
        for loss in ("ranking", "bce"):
            started = time.perf_counter()
            maps = [coop_run(clip, seed, loss, lr) for seed in range(args.seeds)]
            record(
                "coop loss",
                f"{loss}, lr {lr:g}" + (" (default)" if loss == "ranking" and lr == 0.002 else ""),
                maps,
                time.perf_counter() - started,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows).write_csv(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
