"""The package's rooms and the direction of their imports (docs/architecture.md).

Imports point inward, to the core: ``tools`` may use everything, ``session`` the
three rooms beside the core's vocabulary, and ``guests``, ``policy`` and
``analysis`` only the base modules (``_core``, ``errors``, ``exits``,
``assets``, ``_process``). No module imports one that imports it back, not even
inside a function or under ``TYPE_CHECKING``. The source is read, not run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import armvcpu
import pytest

PACKAGE = Path(armvcpu.__file__).resolve().parent
#: How far out a room is: a module may import from its own room or a lower rank.
RANK = {"base": 0, "guests": 1, "policy": 1, "analysis": 1, "session": 2, "tools": 3}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANK) else "base"


def _imports(path: Path) -> set[str]:
    """Every armvcpu module ``path`` imports, wherever the import statement is."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "armvcpu")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "armvcpu":
                continue
            for alias in node.names:  # "from . import x" may name a submodule
                sub = f"{target}.{alias.name}"
                found.add(sub if _exists(sub) else target)
    return found


def _exists(module: str) -> bool:
    if module == "armvcpu._core":  # the extension module: a .so, not a .py
        return True
    rel = Path(*module.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


GRAPH = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_rooms_are_there():
    rooms = {_room(m) for m in GRAPH}
    assert rooms == set(RANK)
    for room in ("session", "guests", "policy", "analysis", "tools"):
        assert (PACKAGE / room / "__init__.py").is_file()


#: The facade and `python -m armvcpu` stand outside the rooms and may use them all.
ENTRY_POINTS = {"armvcpu", "armvcpu.__main__"}


@pytest.mark.parametrize("module", sorted(set(GRAPH) - ENTRY_POINTS))
def test_imports_point_inward(module):
    """A room imports only from itself or rooms nearer the core, and never the
    ``armvcpu`` facade (which imports every room) unless it is a tool."""
    room = _room(module)
    for target in GRAPH[module]:
        if target == "armvcpu":
            assert room == "tools", f"{module} imports the armvcpu facade"
            continue
        if target == "armvcpu._core":
            continue
        there = _room(target)
        assert there == room or RANK[there] < RANK[room], (
            f"{module} ({room}) imports {target} ({there}): imports must point inward"
        )


def test_no_import_cycles():
    """Depth-first search over every import, function-level ones included."""
    graph = {m: {t for t in deps if t in GRAPH and t != m} for m, deps in GRAPH.items()}
    # A package's __init__ re-exporting its own modules is not a cycle: drop the
    # edge from a module to the package that contains it.
    for module, deps in graph.items():
        deps -= {p for p in deps if module.startswith(p + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_facade_exports_what_it_always_has():
    """Everything public stays importable from ``armvcpu`` itself."""
    for name in ("Hypervisor", "Guest", "Exit", "ExitKind", "Policy", "on", "Trace", "Pl011",
                 "MmioDevice", "Register", "Registers", "Segment", "Firmware", "firmware_path",
                 "example_guest_path", "ArmvcpuError", "GuestTimeout", "QemuError"):  # fmt: skip
        assert name in armvcpu.__all__
        assert getattr(armvcpu, name) is not None
