"""gmsh plumbing shared by the generators: the gmsh module, a rank-0 model session, mesh-size
settings (uniform, or graded from chosen curves/surfaces), writing MSH files and distributing a
model as a DOLFINx mesh."""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path

from mpi4py import MPI

import dolfinx.io.gmsh

__all__ = ["from_gmsh_model", "gmsh_module", "gmsh_session", "graded_size_field", "uniform_size", "write_msh"]


def gmsh_module():
    """The ``gmsh`` module, imported on first use (ImportError with the install hint if absent)."""
    try:
        import gmsh
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("deepnum_fem.geometry needs gmsh: pip install gmsh") from e
    return gmsh


@contextlib.contextmanager
def gmsh_session(name: str, comm: MPI.Comm):
    """A gmsh model named ``name`` on rank 0 (other ranks get None); cleaned up afterwards."""
    gmsh = gmsh_module()
    initialised = gmsh.isInitialized()
    if not initialised:
        gmsh.initialize(interruptible=False)
    gmsh.option.setNumber("General.Terminal", 0)
    gmsh.option.setNumber("General.NumThreads", 1)   # deterministic meshes
    try:
        if comm.rank == 0:
            gmsh.model.add(name)
        yield gmsh
    finally:
        if comm.rank == 0:
            gmsh.model.remove()
        if not initialised:
            gmsh.finalize()


def uniform_size(gmsh, h: float) -> None:
    """Mesh size ``h`` everywhere in gmsh's current model."""
    gmsh.option.setNumber("Mesh.CharacteristicLengthMax", h)
    gmsh.option.setNumber("Mesh.CharacteristicLengthMin", h)


def graded_size_field(gmsh, dim: int, entities: list[int], h: float, h_near: float, dist_max: float) -> None:
    """Mesh size ``h_near`` on the ``entities`` of dimension ``dim`` (curves or surfaces: building
    walls, land) growing linearly to ``h`` at ``dist_max`` from them (Distance + Threshold fields)."""
    field = gmsh.model.mesh.field
    distance = field.add("Distance")
    field.setNumbers(distance, "CurvesList" if dim == 1 else "SurfacesList", entities)
    boxes = [gmsh.model.getBoundingBox(dim, e) for e in entities]
    longest = max(b[k + 3] - b[k] for b in boxes for k in range(3))
    field.setNumber(distance, "Sampling", math.ceil(2 * longest / h_near) + 1)
    threshold = field.add("Threshold")
    field.setNumber(threshold, "InField", distance)
    field.setNumber(threshold, "SizeMin", h_near)
    field.setNumber(threshold, "SizeMax", h)
    field.setNumber(threshold, "DistMin", 0.0)
    field.setNumber(threshold, "DistMax", dist_max)
    field.setAsBackgroundMesh(threshold)
    # gmsh's advice when the size comes from fields alone.
    gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
    gmsh.option.setNumber("Mesh.MeshSizeMax", h)


def write_msh(gmsh, path: Path) -> dict:
    """Write gmsh's current model (rank 0's) to ``path`` as MSH 4.1, only the elements of
    physical groups, in ASCII or binary, whichever is smaller (both are deterministic).

    Returns what a provenance record needs: ``binary``, ``vertices``, element ``counts`` per
    physical-group name, ``megabytes``.
    """
    path = Path(path)
    gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
    gmsh.option.setNumber("Mesh.SaveAll", 0)
    with tempfile.TemporaryDirectory() as tmp:
        candidates = []
        for binary in (0, 1):
            gmsh.option.setNumber("Mesh.Binary", binary)
            candidates.append(Path(tmp) / f"mesh{binary}.msh")
            gmsh.write(str(candidates[-1]))
        best = min(candidates, key=lambda p: p.stat().st_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(best.read_bytes())
    counts = {gmsh.model.getPhysicalName(dim, tag): sum(gmsh.model.mesh.getElements(dim, e)[1][0].size
                                                        for e in gmsh.model.getEntitiesForPhysicalGroup(dim, tag))
              for dim, tag in gmsh.model.getPhysicalGroups()}
    return {"binary": best.name == "mesh1.msh", "vertices": int(gmsh.model.mesh.getNodes()[0].size),
            "counts": counts, "megabytes": path.stat().st_size / 1e6}


def from_gmsh_model(model, comm: MPI.Comm = MPI.COMM_WORLD, *, gdim: int = 2,
                    rank: int = 0) -> dolfinx.io.gmsh.MeshData:
    """Distribute the gmsh ``model`` built on ``rank`` as a DOLFINx mesh with its tags."""
    return dolfinx.io.gmsh.model_to_mesh(model, comm, rank, gdim=gdim)

