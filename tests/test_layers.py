"""The package's rooms import downwards only, and the FEM layer does not import torch.

The layer order, lowest first, is written here and nowhere else; a module may import from its
own layer and from those below it. Imports are read from the source (``ast``), not by running
it, so a conditional or late import counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "deepnum_fem"

#: (layer, the top-level modules or subpackages of deepnum_fem in it), lowest first.
LAYERS = [
    ("base", {"errors", "_ufl_caches"}),
    ("fem: DOLFINx, PETSc, UFL and gmsh, no torch", {"fem", "geometry", "io", "bathymetry"}),
    ("torch bridge", {"parallel", "convert", "_threads", "verification"}),
    ("torch operations", {"ops", "sensors"}),
    ("applications", {"models", "precond", "training", "viz"}),
    ("package", {"__init__", "cli"}),
]
#: Layers that must not import torch (directly: what they import from deepnum_fem is checked above).
TORCH_FREE = {"base", "fem: DOLFINx, PETSc, UFL and gmsh, no torch"}


def _room(path: Path) -> str:
    """The top-level module or subpackage of deepnum_fem that ``path`` belongs to."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _layer(room: str) -> int:
    matches = [i for i, (_, rooms) in enumerate(LAYERS) if room in rooms]
    assert matches, f"deepnum_fem.{room} is in no layer of tests/test_layers.py: add it to LAYERS"
    return matches[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in ``path``, ``from deepnum_fem import x`` as
    ``deepnum_fem.x``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "deepnum_fem":
                found += [(node.lineno, f"deepnum_fem.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def _target_room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "deepnum_fem":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_from_a_higher_layer(path):
    room = _room(path)
    own = _layer(room)
    upward = [f"line {line}: {module} ({LAYERS[_layer(target)][0]})"
              for line, module in _imports(path)
              if (target := _target_room(module)) is not None and _layer(target) > own]
    assert not upward, f"{path.relative_to(PACKAGE.parent)} ({LAYERS[own][0]}) imports from above: {upward}"


@pytest.mark.parametrize("path", [p for p in SOURCES if LAYERS[_layer(_room(p))][0] in TORCH_FREE],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_fem_layer_does_not_import_torch(path):
    torch = [f"line {line}: {module}" for line, module in _imports(path) if module.split(".")[0] == "torch"]
    assert not torch, f"{path.relative_to(PACKAGE.parent)} imports torch: {torch}"


def test_every_room_has_a_layer():
    rooms = {_room(p) for p in SOURCES}
    placed = set().union(*(r for _, r in LAYERS))
    assert rooms <= placed, f"rooms in no layer: {sorted(rooms - placed)}"
