"""A tiny DVC project whose one stage writes metrics computed from params.yaml, so a report's
means and standard deviations over seeds are known exactly. Used by tests/test_report.py; run as a script it records
tests/data/exp_show.json, the real `dvc exp show --json` fixture of the fast tests:

    python tests/exp_project.py            # from the repository root; about a minute
    python tests/exp_project.py pipeline   # tests/data/exp_show_pipeline.json: the real pipeline's metrics
                                           # (tests/e2e_project.py), train.radius 1, 2, 3 x train.seed 0, 1; minutes

    reports/eval.json      map = radius / 10 + seed / 100 (+ 0.05 for interior noise), n_images = 10
    reports/zeroshot.json  map = 0.3 + seed / 1000, and skipped = radius only for surface noise

The baseline commit (radius 5) is never run, so DVC prints errors for its metrics files.
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

from e2e_project import LABELS, commit, make_project, run

FIXTURE = Path(__file__).with_name("data") / "exp_show.json"
PIPELINE_FIXTURE = FIXTURE.with_name("exp_show_pipeline.json")
PIPELINE_RADII = (1, 2, 3)
PIPELINE_SEEDS = (0, 1)

RADII = (1, 2)
NOISES = ("surface", "interior")
SEEDS = (0, 1)

STAGE = """\
import json, os, yaml
p = yaml.safe_load(open("params.yaml"))
t = p["train"]
if t["radius"] < 0:
    raise SystemExit("negative radius")
os.makedirs("reports", exist_ok=True)
m = t["radius"] / 10 + t["seed"] / 100 + (0.05 if t["noise"] == "interior" else 0.0)
json.dump({"map": m, "n_images": 10}, open("reports/eval.json", "w"))
z = {"map": 0.3 + t["seed"] / 1000}
if t["noise"] == "surface":
    z["skipped"] = t["radius"]
json.dump(z, open("reports/zeroshot.json", "w"))
"""

DVC_YAML = f"""\
stages:
  train:
    cmd: {sys.executable} stage.py
    deps: [stage.py]
    params: [train, generate.seed]
    metrics:
      - reports/eval.json:
          cache: false
      - reports/zeroshot.json:
          cache: false
"""

PARAMS = """\
generate:
  seed: 0
train:
  seed: 0
  radius: 5
  noise: surface
  epochs: 3
"""


def eval_map(radius: float, noise: str, seed: int) -> float:
    return radius / 10 + seed / 100 + (0.05 if noise == "interior" else 0.0)


def zeroshot_map(seed: int) -> float:
    return 0.3 + seed / 1000


def make_exp_project(root: Path) -> Path:
    """git + dvc init, the stage, params.yaml and dvc.yaml committed (never run)."""
    root.mkdir(parents=True, exist_ok=True)
    run(root, "git", "init", "-q", "-b", "main")
    run(root, sys.executable, "-m", "dvc", "init", "-q")
    (root / "stage.py").write_text(STAGE)
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "params.yaml").write_text(PARAMS)
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-q", "-m", "tiny project")
    return root


def run_grid(root: Path) -> None:
    """2 radii x 2 noises x 2 seeds, each a direct `dvc exp run` (no queue: fast)."""
    for radius, noise, seed in itertools.product(RADII, NOISES, SEEDS):
        run(
            root,
            sys.executable,
            "-m",
            "dvc",
            "exp",
            "run",
            "-q",
            "-S",
            f"train.radius={radius}",
            "-S",
            f"train.noise={noise}",
            "-S",
            f"train.seed={seed}",
        )


def exp_show(root: Path) -> list:
    return json.loads(run(root, sys.executable, "-m", "dvc", "exp", "show", "--json").stdout)


def record() -> None:
    """The grid, plus one queued experiment whose stage fails (radius -1), into FIXTURE."""
    dvc = (sys.executable, "-m", "dvc")
    with tempfile.TemporaryDirectory() as tmp:
        root = make_exp_project(Path(tmp) / "project")
        run_grid(root)
        run(root, *dvc, "exp", "run", "--queue", "-q", "-S", "train.radius=-1", "-S", "train.seed=0")
        run(root, *dvc, "queue", "start", "-j", "1")
        for _ in range(300):
            data = exp_show(root)
            states = [(g.get("executor") or {}).get("state") for t in data for g in (t.get("experiments") or [])]
            if "failed" in states:
                break
            time.sleep(1)
        else:
            raise SystemExit("the failing queued experiment never showed as failed")
        run(root, *dvc, "queue", "stop", check=False)
        version = run(root, *dvc, "--version").stdout.strip()
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {FIXTURE} (DVC {version})")


def record_pipeline() -> None:
    """The end-to-end tests' tiny project, its evaluation integrated with another method's (random) scores,
    over a radius x seed grid: every metric a real run writes, as `dvc exp show --json` prints it."""
    import numpy as np
    import polars as pl

    from pipeline.testbeds.random_clip import save_random_clip

    dvc = (sys.executable, "-m", "dvc")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = save_random_clip(tmp / "tiny-clip.pt", "tiny")
        root = make_project(tmp, clip, **{"evaluate.integrate_with": "data/other_scores.parquet"})
        ids = [
            row.split(",")[0].rsplit(".", 1)[0]
            for row in (root / "data" / "labels.csv").read_text().splitlines()[1:]
            if row.endswith(",test")
        ]
        rng = np.random.default_rng(0)
        pl.DataFrame({"image_id": ids, **{label: rng.random(len(ids)) for label in LABELS}}).write_parquet(
            root / "data" / "other_scores.parquet"
        )
        commit(root, "another method's scores")
        run(root, *dvc, "repro", "-q")
        commit(root, "baseline")
        for radius, seed in itertools.product(PIPELINE_RADII, PIPELINE_SEEDS):
            run(root, *dvc, "exp", "run", "-q", "-S", f"train.radius={radius}", "-S", f"train.seed={seed}")
        data = exp_show(root)
        version = run(root, *dvc, "--version").stdout.strip()
    PIPELINE_FIXTURE.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {PIPELINE_FIXTURE} (DVC {version})")


if __name__ == "__main__":
    record_pipeline() if sys.argv[1:] == ["pipeline"] else record()
