"""`tai sweep` finishes a queued grid although its queue worker is killed (SIGKILL) mid-experiment: the worker
is started again, the experiment it was running is queued again, and every grid point ends as a successful
DVC experiment. On a one-stage project whose stage takes two seconds, so the kill lands inside an experiment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from e2e_project import run, stage_env
from pipeline.experiments.sweep import parse_queued

pytestmark = pytest.mark.slow

STAGE = """\
import json, os, time, yaml
t = yaml.safe_load(open("params.yaml"))["train"]
time.sleep(t["sleep"])
if t["radius"] < 0:
    raise SystemExit("negative radius")
os.makedirs("reports", exist_ok=True)
json.dump({"map": t["radius"] / 10}, open("reports/eval.json", "w"))
"""

DVC_YAML = f"""\
stages:
  train:
    cmd: {sys.executable} stage.py
    deps: [stage.py]
    params: [train]
    metrics:
      - reports/eval.json:
          cache: false
"""


def test_parse_queued_keeps_each_experiments_overrides():
    output = (
        "Queueing with overrides '{'params.yaml': ['train.radius=1', 'train.seed=0']}'.\n"
        "Queued experiment 'yarer-bags' for future execution.\n"
        "Queueing with overrides '{'params.yaml': ['train.radius=2', 'train.seed=0']}'.\n"
        "Queued experiment 'slack-corm' for future execution.\n"
    )
    assert parse_queued(output) == {
        "yarer-bags": ["params.yaml:train.radius=1", "params.yaml:train.seed=0"],
        "slack-corm": ["params.yaml:train.radius=2", "params.yaml:train.seed=0"],
    }


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    run(root, "git", "init", "-q", "-b", "main")
    run(root, sys.executable, "-m", "dvc", "init", "-q")
    (root / "stage.py").write_text(STAGE)
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "params.yaml").write_text("train:\n  radius: 5\n  sleep: 2\n")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "project")
    return root


def states(root) -> dict[str, str]:
    done = run(root, sys.executable, "-m", "dvc", "exp", "show", "--json", check=False)
    if done.returncode:
        return {}
    return {
        g["name"]: (g.get("executor") or {}).get("state", "success")
        for commit in json.loads(done.stdout)
        for g in commit.get("experiments") or []
    }


def sweep(root, *settings: str) -> subprocess.Popen:
    args = [a for s in settings for a in ("-S", s)]
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "sweep", *args, "-j", "1"],
        cwd=root,
        env=stage_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_sweep_finishes_every_experiment_when_its_worker_is_killed(project):
    """One grid point fails (a negative radius): the sweep still runs the others, and exits 1 naming it."""
    proc = sweep(project, "train.radius=-1,1,2")
    deadline = time.monotonic() + 120
    while "running" not in states(project).values():  # an experiment is inside its stage
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no experiment started within 120 s"
        time.sleep(0.3)
    workers = [c for c in psutil.Process(proc.pid).children() if "queue-worker" in " ".join(c.cmdline())]
    assert len(workers) == 1
    os.kill(workers[0].pid, signal.SIGKILL)

    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out
    assert "queue worker 1 ended (exit -9)" in out and "started again" in out, out
    assert "lost its worker: queued again" in out, out
    assert "1 experiment(s) failed" in out, out
    final = states(project)
    assert sorted(final.values()) == ["failed", "success", "success"], final
    show = json.loads(run(project, sys.executable, "-m", "dvc", "exp", "show", "--json").stdout)
    radii = sorted(
        r["data"]["params"]["params.yaml"]["data"]["train"]["radius"]
        for commit in show
        for g in commit.get("experiments") or []
        for r in g["revs"]
    )
    assert radii == [-1, 1, 2]  # each grid point once, none lost, none twice
    assert "train.radius" in out and "eval.map" in out  # the report's table
