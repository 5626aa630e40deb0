"""dvc.yaml's code deps are exactly what each stage imports inside pipeline/ (tests/code_deps.py).

Too few, and an edit leaves `dvc repro` reporting stale metrics; too many, and an edit reruns stages
it cannot change. Shared infrastructure (code_deps.INFRASTRUCTURE) stays out on purpose."""

import ast
import shutil
from pathlib import Path

import pytest

from code_deps import INFRASTRUCTURE, PACKAGES, ROOMS, code_deps, listed_code_deps, stage_modules

ROOT = Path(__file__).resolve().parents[1]
DVC_YAML = ROOT / "dvc.yaml"


def mismatches(root: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Stage -> (imported but not listed, listed but not imported)."""
    listed = listed_code_deps(root / "dvc.yaml")
    found = {}
    for stage, module in stage_modules(root / "dvc.yaml").items():
        actual = code_deps(root, module)
        missing, extra = sorted(actual - listed[stage]), sorted(listed[stage] - actual)
        if missing or extra:
            found[stage] = (missing, extra)
    return found


def test_every_stage_lists_exactly_the_code_it_imports():
    assert mismatches(ROOT) == {}, "dvc.yaml code deps (missing, extra) per stage"


def test_infrastructure_is_never_listed():
    listed = listed_code_deps(DVC_YAML)
    assert {stage: sorted(deps & INFRASTRUCTURE) for stage, deps in listed.items() if deps & INFRASTRUCTURE} == {}


def test_an_import_added_without_its_dvc_yaml_line_is_caught(tmp_path):
    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(DVC_YAML, tmp_path / "dvc.yaml")
    assert mismatches(tmp_path) == {}
    fewshot = tmp_path / "stages" / "fewshot.py"
    fewshot.write_text(
        fewshot.read_text().replace(
            "import logging\n", "import logging\n\nfrom pipeline.method.perturb import perturb\n", 1
        )
    )
    assert mismatches(tmp_path) == {
        "fewshot": (["pipeline/encoding/vectors.py", "pipeline/method/perturb.py"], [])
    }  # and what it imports
    # a function-level import counts too, and so does one reached through another module
    fewshot.write_text(fewshot.read_text().replace("from pipeline.method.perturb import perturb\n", ""))
    (tmp_path / "pipeline" / "data" / "partial_labels.py").write_text(
        (tmp_path / "pipeline" / "data" / "partial_labels.py").read_text()
        + "\n\ndef _later():\n    from pipeline.evaluation.metrics import mean_ap\n"
    )
    # ...and it is missing from every stage that reaches pipeline/data/partial_labels.py
    importers = ("mask", "centroids", "train")
    assert mismatches(tmp_path) == {stage: (["pipeline/evaluation/metrics.py"], []) for stage in importers}
    # an import for annotations only (under `if TYPE_CHECKING:`) is not run, so it is no dep
    partial = tmp_path / "pipeline" / "data" / "partial_labels.py"
    partial.write_text(
        partial.read_text().replace(
            "def _later():\n    from pipeline.evaluation.metrics import mean_ap\n",
            "if TYPE_CHECKING:\n    from pipeline.evaluation.metrics import mean_ap\n",
        )
    )
    assert mismatches(tmp_path) == {}


def test_test_doubles_are_not_in_the_library():
    assert not list((ROOT / "pipeline").rglob("fakes.py"))
    assert (ROOT / "stages" / "__init__.py").is_file()
    for path in (ROOT / "stages").glob("*.py"):
        assert "sys.path" not in path.read_text(), f"{path.name}: stages run as `python -m stages.<name>`"


@pytest.mark.parametrize("stage", sorted(stage_modules(DVC_YAML)))
def test_stage_cmd_runs_its_module(stage):
    module = stage_modules(DVC_YAML)[stage]
    assert (ROOT / Path(*module.split(".")).with_suffix(".py")).is_file()


def test_every_package_is_a_room_or_a_folder_dep_and_a_room_runs_nothing():
    """A room's modules are dvc.yaml deps one by one and its __init__.py is left out (code_deps.ROOMS), which is
    right only while that file holds nothing but its docstring; a new package must say which kind it is."""
    packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "pipeline").glob("*/**/__init__.py")}
    assert packages - {p.rstrip("/") for p in PACKAGES} - set(ROOMS) == set(), "add it to code_deps.ROOMS or PACKAGES"
    for room in ROOMS:
        body = ast.parse((ROOT / room / "__init__.py").read_text()).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), room
