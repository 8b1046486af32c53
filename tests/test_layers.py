"""Dependencies point one way: vocabulary → data/tasks, models/dni → exec → probes → training/profiling/sim → the face.

The imports are read from the source (``ast``), so a test fails as soon as a module imports a
layer above its own, the library imports ``analysis`` outside the face, or two parts of the
package import each other.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The layers, lowest first; a unit is a top-level module or subpackage of sglab.
LAYERS = [
    {"errors", "io", "config", "ops", "schedules", "methods", "trace", "costprofile", "partition", "allocator",
     "executors"},
    {"data", "tasks", "models", "dni"},
    {"exec"},
    {"probes"},
    {"training", "profiling", "sim", "dist"},
    {"cli", "demo", "__main__", "__init__"},
]
FACE = LAYERS[-1]


def layer(unit: str) -> int:
    for number, units in enumerate(LAYERS):
        if unit in units:
            return number
    raise AssertionError(f"sglab/{unit} is in no layer of tests/test_layers.py: add it where it belongs")


def imports(path: Path) -> set[str]:
    """Absolute module names ``path`` imports (``from sglab.x import y`` gives ``sglab.x`` and ``sglab.x.y``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def unit_edges() -> dict[tuple[str, str], str]:
    """``(importing unit, imported unit) -> a file that imports it`` over all of sglab/."""
    edges = {}
    known = {p.stem if p.is_file() else p.name for p in (ROOT / "sglab").iterdir() if p.suffix == ".py" or p.is_dir()}
    for path in sorted((ROOT / "sglab").rglob("*.py")):
        unit = path.relative_to(ROOT / "sglab").with_suffix("").parts[0]
        for name in imports(path):
            parts = name.split(".")
            if parts[0] == "analysis":
                edges.setdefault((unit, "analysis"), str(path.relative_to(ROOT)))
            elif parts[0] == "sglab" and len(parts) > 1 and parts[1] in known and parts[1] != unit:
                edges.setdefault((unit, parts[1]), str(path.relative_to(ROOT)))
    return edges


EDGES = unit_edges()


@pytest.mark.parametrize("edge", sorted(EDGES), ids=lambda e: f"{e[0]}->{e[1]}")
def test_no_import_points_up(edge):
    importer, imported = edge
    where = EDGES[edge]
    if imported == "analysis":
        assert importer in FACE, f"{where}: only the face (sglab/cli, sglab/demo) may import analysis"
        return
    assert layer(imported) <= layer(importer), f"{where} imports sglab/{imported}, a layer above sglab/{importer}"


def test_no_two_parts_of_the_package_import_each_other():
    graph: dict[str, set[str]] = {}
    for importer, imported in EDGES:
        graph.setdefault(importer, set()).add(imported)

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    cycles = sorted((a, b) for a, b in EDGES if b != "analysis" and reaches(b, a))
    assert not cycles, "import cycles: " + "; ".join(f"{EDGES[(a, b)]} -> sglab/{b} -> ... -> sglab/{a}" for a, b in cycles)


def test_the_checker_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from sglab.cli import main\nimport analysis.style\n")
    assert {"sglab.cli", "sglab.cli.main", "analysis.style"} <= imports(bad)
    assert layer("cli") > layer("exec")
