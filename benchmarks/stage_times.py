"""Wall time of the default zero-shot pipeline's text side: generate -> encode_text -> train.

    python benchmarks/stage_times.py                 # 1,000 texts, the embedded LLM, 60 epochs
    python benchmarks/stage_times.py --n 100 --epochs 5 --keep /tmp/pipe   # a quick look, project kept
    python benchmarks/stage_times.py --paper-turns                         # generate.single_sentence: false

Builds a throwaway project (`toy_project.py`: a copy of pipeline/, stages/, dvc.yaml and
params.yaml) whose dataset is a folder of four tiny images carrying Pascal VOC's 20 labels and
synonyms, so the label set and every stage's work on texts are the default's while the image
stages, which this does not time, have almost nothing to do. Params are params.yaml's defaults
except generate.n_combinations (--n) and encode.model: a randomly initialised CLIP RN50
(`pipeline.testbeds.random_clip`, the real RN50's shapes, so the cost is the same) saved as a state dict and
loaded through clip.load(path), as a user's own checkpoint would be. Each stage runs as
`python -m stages.<name>` with the project as working directory, as `dvc repro` runs it, and is
timed from process start to exit (imports and model loads included). Goal: at most 10 minutes in
total on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.testbeds.random_clip import save_random_clip
from toy_project import build_project

STAGES = ("prepare", "generate", "encode_text", "train")
GOAL_S = 600.0
IMAGES = [("trainval", "cat|dog"), ("trainval", "person"), ("test", "car"), ("test", "sofa|tv monitor")]


def text_side_project(folder: Path, n: int, epochs: int | None, paper_turns: bool = False) -> Path:
    (folder / "models").mkdir(parents=True, exist_ok=True)
    model = save_random_clip(folder / "models" / "rn50-random.pt", "RN50")
    settings = {"generate.n_combinations": n, "encode.model": str(model)}
    if paper_turns:
        settings["generate.single_sentence"] = False
    if epochs is not None:
        settings["train.epochs"] = epochs
    return build_project(folder, IMAGES, settings)


def run_stage(project: Path, name: str, log_dir: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(project), "PYTHONWARNINGS": "ignore"}
    started = time.perf_counter()
    with open(log_dir / f"{name}.log", "w") as log:
        result = subprocess.run(
            [sys.executable, "-m", f"stages.{name}"], cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    seconds = time.perf_counter() - started
    if result.returncode:
        tail = (log_dir / f"{name}.log").read_text()[-3000:]
        raise SystemExit(f"stages.{name} exited with {result.returncode}:\n{tail}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="generate.n_combinations (default 1000)")
    ap.add_argument("--epochs", type=int, default=None, help="train.epochs (default: params.yaml's)")
    ap.add_argument(
        "--paper-turns",
        action="store_true",
        help="generate.single_sentence: false, the paper's conversation as is (default: params.yaml's true)",
    )
    ap.add_argument(
        "--keep", type=Path, default=None, help="build the project here and keep it (default: a temp folder)"
    )
    args = ap.parse_args()

    import polars as pl

    from pipeline import paths

    folder = args.keep or Path(tempfile.mkdtemp(prefix="tai-pipeline-"))
    try:
        t = time.perf_counter()
        project = text_side_project(folder, args.n, args.epochs, args.paper_turns)
        print(
            f"project {project} built in {time.perf_counter() - t:.1f}s (random RN50 saved); "
            f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}"
        )
        times = {}
        for name in STAGES:
            times[name] = run_stage(project, name, folder)
            print(f"  {name:<12} {times[name]:7.1f}s", flush=True)
        texts = pl.read_parquet(project / paths.TEXTS)
        report = pl.read_parquet(project / paths.GENERATE_REPORT)
        summary = json.loads((project / paths.TRAIN_METRICS).read_text())
        epochs = pl.read_csv(project / paths.TRAIN_LOG).height
        total = sum(times[n] for n in ("generate", "encode_text", "train"))
        print(
            f"generate kept {texts.height} texts of {args.n} combinations, dropped {report.height} "
            f"({dict(report['reason'].value_counts().iter_rows())}); train: {summary['n_texts']} texts, {epochs} epochs"
        )
        print(
            f"generate + encode_text + train: {total:.1f}s = {total / 60:.1f} min (goal <= {GOAL_S / 60:.0f} min); "
            f"load average now {os.getloadavg()[0]:.1f}"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
