"""No import cycle among pipeline/ modules, counting imports inside functions: each module can be read,
tested and changed knowing only what it imports (a cycle hidden in a function once tied encode.py and
encode_ray.py together, and generate/captions.py to its own package)."""

from __future__ import annotations

from pathlib import Path

from code_deps import imports

ROOT = Path(__file__).resolve().parents[1]


def cycles(root: Path) -> list[list[str]]:
    """The import graph's strongly connected components with more than one module (Tarjan), as sorted paths."""
    graph = {path: imports(root, path) - {path} for path in sorted((root / "pipeline").rglob("*.py"))}
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    found: list[list[str]] = []

    def visit(node: Path) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member.relative_to(root).as_posix())
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_in_pipeline():
    assert cycles(ROOT) == []


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    package = tmp_path / "pipeline"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import f\n")
    (package / "b.py").write_text("def f():\n    from pipeline import a\n")
    (package / "c.py").write_text("from pipeline.a import f\n")
    assert cycles(tmp_path) == [["pipeline/a.py", "pipeline/b.py"]]
