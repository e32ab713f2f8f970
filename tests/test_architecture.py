"""The package's import graph: one direction from the foundations to the CLI, no cycles.

The rooms and their order are those of docs/architecture.md. Imports under ``if TYPE_CHECKING:``
are annotations only and are not counted.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "boltzgen"

#: Room -> rank; a module may import modules of its own room or of a lower rank.
RANKS = {
    "errors": 0,
    "_version": 0,
    "_lazy": 0,
    "tensors": 0,
    "ranges": 0,
    "io": 0,
    "parallel": 0,
    "molecule": 1,
    "energy": 2,
    "models": 3,
    "flows": 4,
    "samplers": 5,
    "md": 6,
    "trainers": 7,
    "federated": 8,
    "diagnostics": 9,
    "workflow": 10,
    "cli": 11,
    "__init__": 12,
    "__main__": 12,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path) -> set[str]:
    """boltzgen modules imported by ``path`` at run time (absolute names)."""
    tree = ast.parse(path.read_text())
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    type_checking = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and ast.unparse(branch.test) == "TYPE_CHECKING"
        for node in ast.walk(branch)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if module.startswith("boltzgen"):
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("boltzgen"))
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    return {name for name in found if name in modules and name != _module_name(path)}


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _runtime_imports(p) for p in PACKAGE.rglob("*.py")}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_room_has_a_rank() -> None:
    rooms = {_room(m) for m in _graph()}
    assert rooms <= set(RANKS), (
        f"rooms missing from RANKS and docs/architecture.md: {rooms - set(RANKS)}"
    )


def test_imports_point_down_the_layers() -> None:
    """No module imports a room above its own (so no library module imports the CLI)."""
    upward = sorted(
        f"{module} -> {imported}"
        for module, imports in _graph().items()
        for imported in imports
        if RANKS[_room(imported)] > RANKS[_room(module)]
    )
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_module_level_imports_have_no_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # A package importing its own submodules (``__init__`` re-exports) is not a loop.
    real = [
        c for c in cycles if not all(m.startswith(c.split(" -> ")[0]) for m in c.split(" -> "))
    ]
    assert not real, "import cycles:\n" + "\n".join(real)


@pytest.mark.parametrize(
    "statement", ["import boltzgen", "import boltzgen.energy", "import boltzgen.workflow"]
)
def test_light_imports_leave_openmm_and_mdtraj_unimported(statement: str) -> None:
    code = (
        f"{statement}; import sys; print(sorted(m for m in ('openmm', 'mdtraj') if m in "
        "sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_api_resolves_every_export() -> None:
    import boltzgen

    for name in boltzgen.__all__:
        assert getattr(boltzgen, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute"):
        boltzgen.not_an_export  # noqa: B018
