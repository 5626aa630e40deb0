"""The pipeline/ code each stage really imports, found by walking the import graph with `ast`.

dvc.yaml lists a stage's code by hand so that an edit to, say, the noise function reruns `train` and
not `generate`; this module is what keeps those lists exact (tests/test_dvc_deps.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

# Shared infrastructure: changing it never changes a result, and listing it would rerun every stage
# on any edit. Left out of dvc.yaml on purpose.
INFRASTRUCTURE = {
    "pipeline/__init__.py",
    "pipeline/io.py",
    "pipeline/paths.py",
    "pipeline/config.py",
    "pipeline/stage.py",
    "pipeline/errors.py",
    "pipeline/environment.py",
}
# Packages listed as one folder dep (every module inside them counts).
PACKAGES = ("pipeline/generate", "pipeline/data/datasets", "pipeline/prompt")
# Rooms: packages by concern whose modules are listed one by one (a stage reruns only for the modules it
# imports). A room's __init__.py holds only its docstring (tests/test_dvc_deps.py), so it is no dep.
ROOMS = (
    "pipeline/data",
    "pipeline/encoding",
    "pipeline/method",
    "pipeline/evaluation",
    "pipeline/shipping",
    "pipeline/experiments",
    "pipeline/testbeds",
)
INFRASTRUCTURE |= {f"{room}/__init__.py" for room in ROOMS}


def _module_file(root: Path, dotted: str) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _runtime_nodes(tree: ast.AST):
    """Every node of `tree` except the bodies of `if TYPE_CHECKING:` (imports for annotations only)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def imports(root: Path, path: Path) -> set[Path]:
    """pipeline/ files `path` imports anywhere (top level or inside functions; not under `if TYPE_CHECKING:`)."""
    package = ".".join(path.relative_to(root).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found: set[Path] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        for name in names:
            if name == "pipeline" or name.startswith("pipeline."):
                file = _module_file(root, name)
                if file is not None:
                    found.add(file)
    return found


def code_deps(root: Path, module: str) -> set[str]:
    """dvc.yaml-style code deps of `python -m <module>`: its own file plus every pipeline/ file it
    reaches, packages collapsed to their folder, infrastructure left out."""
    start = _module_file(root, module)
    if start is None:
        raise FileNotFoundError(f"{module}: no such module under {root}")
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if path.relative_to(root).as_posix() in INFRASTRUCTURE:
            continue  # what infrastructure imports (stage.py's error classes) is not a dep of the stage
        todo.extend(imports(root, path) - seen)
        if path.name == "__init__.py" and path.parent.relative_to(root).as_posix() in {
            p.rstrip("/") for p in PACKAGES
        }:  # a package's modules come with it
            todo.extend(set(path.parent.glob("*.py")) - seen)
    deps = set()
    for path in seen:
        rel = path.relative_to(root).as_posix()
        package = next((p for p in PACKAGES if rel.startswith(p + "/")), None)
        deps.add(package or rel)
    return deps - INFRASTRUCTURE


def stage_modules(dvc_yaml: Path) -> dict[str, str]:
    """Stage name -> the module its cmd runs (`python -m stages.x ...`)."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    found = {}
    for name, stage in stages.items():
        match = re.match(r"python -m (stages\.\w+)", stage["cmd"])
        assert match, f"stage {name}: cmd {stage['cmd']!r} is not `python -m stages.<name>`"
        found[name] = match.group(1)
    return found


def listed_code_deps(dvc_yaml: Path) -> dict[str, set[str]]:
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    return {
        name: {
            d
            for d in (next(iter(x)) if isinstance(x, dict) else x for x in stage.get("deps", []))
            if d.startswith(("pipeline/", "stages/"))
        }
        for name, stage in stages.items()
    }
