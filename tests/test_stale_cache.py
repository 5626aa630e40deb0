"""DVC sees every code decision that changes a result: an edit to a library module marks exactly the stages that
import it as changed (`dvc status`), and the infrastructure left out of the deps holds no default.

The project is the real dvc.yaml, params.yaml, pipeline/ and stages/ in a temporary git repository, with every out
and data dep a placeholder and dvc.lock written by `dvc commit`: no stage runs, so each check takes a second."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from code_deps import INFRASTRUCTURE, code_deps, stage_modules

ROOT = Path(__file__).resolve().parents[1]
EDIT = "\nAN_EDIT_THAT_CHANGES_NOTHING_BUT_THE_BYTES = 1\n"


def _touch(path: Path) -> None:
    if path.exists():
        return
    if path.suffix:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("placeholder")
    else:
        path.mkdir(parents=True, exist_ok=True)
        (path / "placeholder").write_text("placeholder")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    from dvc.repo import Repo

    root = tmp_path_factory.mktemp("stale") / "project"
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, root / name)
    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, env=env)
    subprocess.run(["dvc", "init", "-q"], cwd=root, check=True, env=env)
    with contextlib.chdir(root), Repo(str(root)) as repo:
        for stage in repo.index.stages:
            for out in stage.outs:
                _touch(Path(out.fs_path))
        for stage in repo.index.stages:
            for dep in stage.deps:
                if Path(dep.fs_path).name != "params.yaml":
                    _touch(Path(dep.fs_path))
        repo.commit(force=True)
    return root


def changed_stages(project: Path, edited: str) -> set[str]:
    """The stages `dvc status` marks once `edited` (a path in the project) gains a line; the file is restored."""
    from dvc.repo import Repo

    path = project / edited
    before = path.read_text()
    path.write_text(before + EDIT)
    try:
        with contextlib.chdir(project), Repo(str(project)) as repo:
            return set(repo.status())
    finally:
        path.write_text(before)


def test_the_placeholder_project_is_up_to_date(project):
    from dvc.repo import Repo

    with contextlib.chdir(project), Repo(str(project)) as repo:
        assert repo.status() == {}


def test_each_library_module_edit_marks_exactly_the_stages_that_import_it(project):
    """One module for each distinct set of importing stages (tests/test_dvc_deps.py holds the rest: dvc.yaml's
    lists equal the import graph), so that the check stays a few seconds long."""
    modules = stage_modules(ROOT / "dvc.yaml")
    deps = {stage: code_deps(ROOT, module) for stage, module in modules.items()}
    library = sorted(
        p.relative_to(ROOT).as_posix() for p in (ROOT / "pipeline").rglob("*.py") if "__pycache__" not in p.parts
    )
    by_importers: dict[frozenset, str] = {}
    for module in library:
        importers = frozenset(
            stage for stage, found in deps.items() if module in found or any(module.startswith(d + "/") for d in found)
        )
        by_importers.setdefault(importers, module)
    assert len(by_importers) > 10  # the stages do not all import the same code
    wrong = {
        module: {"marked": sorted(got), "imports it": sorted(expected)}
        for expected, module in by_importers.items()
        if (got := changed_stages(project, module)) != expected
    }
    assert wrong == {}


def peer_defaults_homes() -> list[str]:
    """The library modules that define the peers' defaults and table (PEER_DEFAULTS, PEER_VALUES, PEERS),
    wherever they live: pipeline/ and pipeline/prompt/ today, another room after a move."""
    homes = [
        p.relative_to(ROOT).as_posix()
        for p in sorted((ROOT / "pipeline").rglob("*.py"))
        if re.search(r"^(PEER_DEFAULTS|PEER_VALUES|PEERS)\b\s*(:[^=\n]*)?=", p.read_text(), flags=re.M)
    ]
    assert homes, "no module defines PEER_DEFAULTS, PEER_VALUES or PEERS"
    return homes


def stage_deps(stage: str) -> list[str]:
    return [d for d in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]]


def test_the_prompt_stage_lists_the_module_of_the_peer_defaults_as_a_dep():
    """Dropping the defaults' module (or its package folder) from the prompt stage's deps fails here; the
    mutation `peer-defaults-out-of-prompt-deps` (tests/mutations.yaml) does just that."""
    deps = stage_deps("prompt")
    for home in peer_defaults_homes():
        assert home in deps or any(home.startswith(d.rstrip("/") + "/") for d in deps), (home, deps)


def test_a_peer_default_edit_marks_the_prompt_stage(project):
    """Wherever the peers' defaults live, editing that file reruns `prompt`: moving them back into an
    infrastructure module (config.py, as before) fails here."""
    for home in peer_defaults_homes():
        assert "prompt" in changed_stages(project, home), home


def test_a_peer_value_edit_marks_the_prompt_stage_alone(project):
    """A peer's own values (lr, epochs, ...) change only the peer's result: an edit reruns `prompt` and no
    adapter training or encoding (the Plan names the peer; only the prompt stage resolves its values)."""
    (values,) = [
        p for p in (ROOT / "pipeline").rglob("*.py") if re.search(r"^PEER_VALUES\b", p.read_text(), flags=re.M)
    ]
    assert changed_stages(project, values.relative_to(ROOT).as_posix()) == {"prompt"}


def test_a_noise_edit_marks_train_and_nothing_upstream(project):
    (noise,) = (ROOT / "pipeline").rglob("perturb.py")  # the noise module, in whichever room it lives
    marked = changed_stages(project, noise.relative_to(ROOT).as_posix())
    assert "train" in marked
    upstream = {
        "download",
        "prepare",
        "generate",
        "encode_text",
        "encode_eval_images",
        "encode_support_images",
        "encode_partial_images",
        "encode_dense_images",
        "zeroshot",
        "fewshot",
        "mask",
        "centroids",
        "prompt",
    }
    assert not marked & upstream, marked
    assert marked <= {"train", "evaluate"}  # evaluate draws the noise in its modality-gap picture


def test_infrastructure_holds_no_default_a_result_depends_on():
    """What dvc.yaml leaves out (code_deps.INFRASTRUCTURE) must not hold the peers' values or anything a null
    param resolves to: such tables belong beside the code that uses them, where the stage's deps see them."""
    for module in sorted(INFRASTRUCTURE):
        text = (ROOT / module).read_text()
        assert not re.search(r"^(PEER_\w+|COOP_EPOCHS_BY_SHOTS|PROMPT_VAL_FRACTION)\s*[:=]", text, flags=re.M), module
        assert "def resolved" not in text, module
