"""Training step time and adapter size at a large label set over a small one, from one run.

    python benchmarks/training.py [--small 20] [--large 7186] [--steps 50] [--device auto]

A step is what `pipeline.train` does per batch: perturb 64 embeddings, forward, BCE, backward,
AdamW, one-cycle. The ratio says how the cost grows with the label count (only the last layer grows).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pipeline.config import TrainParams  # noqa: E402
from pipeline.device import resolve_device
from pipeline.train import TrainingSet, train_adapter  # noqa: E402


def step_seconds(n_labels: int, steps: int, device: str, dim: int = 1024) -> tuple[float, int]:
    generator = torch.Generator().manual_seed(0)
    text = torch.randn(64 * steps, dim, generator=generator)
    targets = (torch.rand(64 * steps, n_labels, generator=generator) < 3 / n_labels).float()
    params = TrainParams(epochs=1, device=device)
    train_adapter(TrainingSet(text[:128], targets[:128], 25.0), params)  # warm-up
    started = time.perf_counter()
    model, _ = train_adapter(TrainingSet(text, targets, 25.0), params)
    return (time.perf_counter() - started) / steps, sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=20)
    parser.add_argument("--large", type=int, default=7186)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = str(resolve_device(args.device))
    small, small_params = step_seconds(args.small, args.steps, device)
    large, large_params = step_seconds(args.large, args.steps, device)
    print(f"device {device}, batch 64, hidden 1024, embedding 1024, {args.steps} steps each")
    print(f"{args.small:>6} labels: {small * 1e3:7.2f} ms/step, {small_params / 1e6:6.2f} M parameters")
    print(f"{args.large:>6} labels: {large * 1e3:7.2f} ms/step, {large_params / 1e6:6.2f} M parameters")
    print(f"ratio {args.large}/{args.small}: step time x{large / small:.2f}, parameters x{large_params / small_params:.2f}")


if __name__ == "__main__":
    main()
