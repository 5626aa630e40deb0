"""Every result of the tiny projects in one JSON, so that a refactoring can prove it changed no result.

Why: a restructuring (issue 26: a Plan, narrower deps, packages) must leave every number the same. This runs
the end-to-end tests' tiny projects in each setting through `dvc repro`, plus a queued grid of two
experiments, and writes what they produced: every metric in reports/*.json, a sha256 of every table under
reports/ and artifacts/, and the metrics `dvc exp show --json` holds for each queued experiment. Run it on the
commit before and the commit after, then compare the two files (`cmp`, or `diff` them as JSON):

    python tests/report_snapshot.py --out before.json

About 4 CPU-minutes: 17 minutes of wall time on this project's 2 cores shared with other jobs (load 7). Two runs
of the same commit write identical files (checked on 81bc18b, in different folders and at once).

It reaches project code only through entry points that a restructuring keeps: the stages through `dvc`, the
projects through the tests' builders (tests/e2e_project.py, tests/test_labels_only_e2e.py) and the tiny random
CLIP through the module tests/conftest.py imports it from. Left out, as no result: reports/environment.json
(library versions, CPU), plots (PNG bytes follow the plotting library), embedding shards and .pt files (they
record the tiny CLIP's absolute path; their numbers reach the metrics and tables) and fields in VOLATILE.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' builders sit beside this script (tests/), the project at ROOT

from e2e_project import commit, make_project, run  # noqa: E402  (the tests' builders, beside this script)

TINY = {"prompt.epochs": 2, "prompt.n_ctx": 4, "train.epochs": 2}
SETTINGS = {  # setting -> dotted params over the e2e project's (tests/e2e_project.make_project)
    "zeroshot_taidpt": {"prompt.method": "taidpt", "evaluate.integrate_with": "prompt"},
    "fewshot_coop": {"fewshot.shots": 2, "prompt.method": "coop", "evaluate.integrate_with": "prompt"},
    "partial_dualcoop": {"partial.known_proportion": 0.5, "prompt.method": "dualcoop", "prompt.select": "val"},
}
GRID = ("train.radius", (0.5, 2.0))  # the queued grid, run on the zero-shot project
LLM_FRACTION = 0.25  # the zero-shot project captions a quarter of its texts with the embedded LLM
VOLATILE = re.compile(r"second|time|duration|elapsed|date|_s$")  # how long, when: keys and CSV columns, never a result
SKIPPED_REPORTS = {"environment.json"}  # versions, CPU, GPU of the machine


def tiny_clip(folder: Path) -> Path:
    """The tests' tiny random CLIP, from wherever tests/conftest.py imports its maker."""
    found = re.search(r"from (\S+) import save_random_clip", (ROOT / "tests" / "conftest.py").read_text())
    return importlib.import_module(found.group(1)).save_random_clip(folder / "tiny-clip.pt", "tiny")


def sha256(path: Path) -> str:
    """Of the file's bytes; of a CSV's cells without its VOLATILE columns (train_log.csv's seconds per epoch)."""
    if path.suffix != ".csv":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    rows = list(csv.reader(path.read_text().splitlines()))
    keep = [i for i, name in enumerate(rows[0] if rows else []) if not VOLATILE.search(name.lower())]
    return hashlib.sha256(json.dumps([[row[i] for i in keep] for row in rows]).encode()).hexdigest()


def stable(value):
    """`value` without the fields that say how long or when (VOLATILE keys, at any depth)."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in sorted(value.items()) if not VOLATILE.search(str(k).lower())}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def tables(folder: Path, project: Path) -> dict[str, str]:
    """path (relative to the project) -> sha256 of every parquet and csv table under `folder`."""
    return {
        p.relative_to(project).as_posix(): sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.suffix in (".parquet", ".csv") and p.is_file()
    }


def snapshot(project: Path) -> dict:
    reports = project / "reports"
    return {
        "metrics": {
            p.name: stable(json.loads(p.read_text()))
            for p in sorted(reports.glob("*.json"))
            if p.name not in SKIPPED_REPORTS
        },
        "report_tables": tables(reports, project),
        "artifact_tables": tables(project / "artifacts", project),
    }


def repro(project: Path) -> dict:
    run(project, sys.executable, "-m", "dvc", "repro", "-q")
    commit(project, "baseline")
    return snapshot(project)


def queued_grid(project: Path, timeout_s: float = 900) -> dict:
    """`dvc exp run --queue` of GRID, the queue run one at a time; {"key=value": metrics} from `dvc exp show`."""
    dvc = (sys.executable, "-m", "dvc")
    key, values = GRID
    run(project, *dvc, "exp", "run", "--queue", "-q", "-S", f"{key}={','.join(map(str, values))}")
    run(project, *dvc, "queue", "start", "-j", "1")
    deadline = time.monotonic() + timeout_s
    while True:  # the executor states in `dvc exp show` (never `dvc queue status`, which races the worker)
        groups = [
            g
            for top in json.loads(run(project, *dvc, "exp", "show", "--json").stdout)
            for g in top.get("experiments") or []
        ]
        states = [(g.get("executor") or {}).get("state") or "success" for g in groups]
        if len(groups) == len(values) and not {"queued", "running"} & set(states):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the queue did not finish in {timeout_s} s: {states}")
        time.sleep(5)
    if set(states) != {"success"}:
        raise SystemExit(f"a queued experiment did not succeed: {states}")
    runs = [entry for g in groups for entry in g.get("revs") or []]
    found = {}
    for entry in runs:
        data = entry["data"]
        params = data["params"]["params.yaml"]["data"]
        section, name = key.split(".", 1)
        metrics = {
            Path(path).name: stable(content.get("data", {}))
            for path, content in data["metrics"].items()
            if Path(path).name not in SKIPPED_REPORTS
        }
        found[f"{key}={params[section][name]}"] = metrics
    run(project, *dvc, "queue", "stop", check=False)
    return dict(sorted(found.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="build the projects in this new folder and keep them "
        "(to see why two snapshots differ); default: a temporary folder, removed",
    )
    args = parser.parse_args()
    started = time.monotonic()
    if args.workdir:
        args.workdir.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="tai-snapshot-") as scratch:
        tmp = args.workdir.resolve() if args.workdir else Path(scratch)
        os.environ["TAI_CACHE_DIR"] = str(tmp / "cache")  # no embedding from an earlier run is reused
        os.environ.setdefault("DVC_NO_ANALYTICS", "1")
        clip = tiny_clip(tmp)
        result = {}
        for setting, overrides in SETTINGS.items():
            llm = LLM_FRACTION if setting == "zeroshot_taidpt" else 0.0
            (tmp / setting).mkdir()
            project = make_project(tmp / setting, clip, llm_fraction=llm, **TINY, **overrides)
            result[setting] = repro(project)
            print(f"{setting}: {time.monotonic() - started:.0f} s", file=sys.stderr)
            if setting == "zeroshot_taidpt":
                result[setting]["queued_grid"] = queued_grid(project)
                print(f"{setting} queued grid: {time.monotonic() - started:.0f} s", file=sys.stderr)
        from test_labels_only_e2e import make_labels_project  # the labels-only e2e test's builder

        (tmp / "labels_only").mkdir()
        result["labels_only"] = repro(make_labels_project(tmp / "labels_only", clip))
        print(f"labels_only: {time.monotonic() - started:.0f} s", file=sys.stderr)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out} in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
