"""Datasets where users keep them, through DVC on a fresh clone (the issue's new user): VOC 2007 at
data/VOC2007 (`dvc add`-ed) and outside the project, with no network (a proxy that refuses every
connection stands in for an offline machine, so a fetch would fail the run).

Only the download and prepare stages run (`dvc repro prepare`, `dvc exp run ... prepare`): they are
the stages that read prepare.root."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from e2e_project import env, init_repo, new_project, set_params
from test_dataset_roots import voc_copy

pytestmark = pytest.mark.slow

OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}
REFUSED = "is outside the project, and this queued or --temp experiment runs in a fresh copy of the repository"


def dvc(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["dvc", *args], cwd=project, env={**env(), **OFFLINE}, capture_output=True, text=True, timeout=300
    )
    if check and result.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def git(project: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=project, env=env(), check=True, capture_output=True)


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> tuple[Path, Path]:
    """A project whose VOC copy is data/VOC2007, `dvc add`-ed and pushed to a local remote; and a copy
    outside it."""
    base = tmp_path_factory.mktemp("roots")
    project = new_project(base)
    voc_copy(project, "data/VOC2007")
    set_params(project, {"prepare.root": "data/VOC2007"})
    init_repo(project, "VOC 2007 at data/VOC2007", dvc_add=("data/VOC2007",))
    dvc(project, "remote", "add", "-q", "-d", "local", str(base / "remote"))
    git(project, "commit", "-qam", "remote")
    dvc(project, "push", "-q")
    return project, voc_copy(base, "data/datasets/VOC2007")


def fresh_clone(origin: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(origin), str(dest)], env=env(), check=True, capture_output=True)
    dvc(dest, "pull", "-q", "data/VOC2007.dvc")
    return dest


def test_a_root_under_data_is_read_where_it_is_by_repro_and_by_a_temp_experiment(origin, tmp_path):
    clone = fresh_clone(origin[0], tmp_path / "clone")
    result = dvc(clone, "repro", "prepare")
    log = result.stdout + result.stderr
    assert "prepare.dataset = 'voc2007': in place, nothing to download" in log and "downloading" not in log
    assert (clone / "artifacts/data/voc2007/test.parquet").is_file()
    assert [p.name for p in (clone / "data/downloads").iterdir()] == ["NOTE.txt"]

    # a --temp experiment that reruns both stages (another split list) in a fresh copy sees the dvc-added copy
    result = dvc(clone, "exp", "run", "--temp", "-S", "prepare.splits=[test]", "prepare")
    log = result.stdout + result.stderr
    assert "Running stage 'download'" in log and "in place, nothing to download" in log and "downloading" not in log


def test_a_root_outside_the_project_works_for_repro_and_gets_one_line_in_temp_and_queued_runs(origin, tmp_path):
    clone = fresh_clone(origin[0], tmp_path / "clone")
    outside = origin[1]
    dvc(clone, "repro", "prepare")
    params = (clone / "params.yaml").read_text().replace("root: data/VOC2007", f"root: {outside}")
    (clone / "params.yaml").write_text(params)
    result = dvc(clone, "repro", "prepare")
    log = result.stdout + result.stderr
    assert "Running stage 'download'" in log  # it depends on prepare.root: a new root is checked again
    assert "in place, nothing to download" in log and "downloading" not in log
    assert "is outside the project: `dvc repro` reads it, but DVC does not track it" in log
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "VOC outside the project")

    result = dvc(clone, "exp", "run", "--temp", "-S", "prepare.splits=[test]", "prepare", check=False)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if REFUSED in line]
    assert len(lines) == 1 and f"prepare.root = '{outside}'" in lines[0] and "`dvc import-url" in lines[0], lines
    assert "Traceback" not in result.stdout + result.stderr
    # an experiment that does not rerun them never reads the folder: DVC restores their outputs
    result = dvc(clone, "exp", "run", "--temp", "-S", "train.radius=5", "prepare")
    assert "Stage 'prepare' didn't change" in result.stdout and REFUSED not in result.stdout + result.stderr

    dvc(clone, "exp", "run", "--queue", "-S", "prepare.splits=[test,trainval]", "prepare")
    dvc(clone, "queue", "start", "-j", "1")
    deadline = time.monotonic() + 240  # read by dvc exp show: polling dvc queue status races the worker
    while "failed" not in (states := {n: s["state"] for n, s in _experiment_states(clone).items()}).values():
        assert time.monotonic() < deadline, states
        time.sleep(2)
    dvc(clone, "queue", "stop", check=False)
    name = next(n for n, state in states.items() if state == "failed")
    logs = dvc(clone, "queue", "logs", name, check=False).stdout
    assert sum(REFUSED in line for line in logs.splitlines()) == 1, logs


def _experiment_states(project) -> dict:
    from pipeline.experiments.sweep import SweepError, experiment_states

    try:
        return experiment_states(project)
    except SweepError:  # a file DVC was writing as it read
        return {}
