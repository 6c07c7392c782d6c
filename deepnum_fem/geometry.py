"""Meshes from gmsh: generators for the demos, built on rank 0 and distributed."""

from __future__ import annotations

from mpi4py import MPI

import dolfinx.io.gmsh
import dolfinx.mesh

__all__ = ["from_gmsh_model", "plate_with_holes"]


def _gmsh():
    try:
        import gmsh
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("deepnum_fem.geometry needs gmsh: pip install gmsh") from e
    return gmsh


def from_gmsh_model(model, comm: MPI.Comm = MPI.COMM_WORLD, *, gdim: int = 2,
                    rank: int = 0) -> dolfinx.io.gmsh.MeshData:
    """Distribute the gmsh ``model`` built on ``rank`` as a DOLFINx mesh with its tags."""
    return dolfinx.io.gmsh.model_to_mesh(model, comm, rank, gdim=gdim)


def plate_with_holes(h: float = 0.05, comm: MPI.Comm = MPI.COMM_WORLD) -> dolfinx.io.gmsh.MeshData:
    """The unit square with two circular holes, triangulated by gmsh (unstructured).

    Facet tags: 1 outer boundary, 2 hole boundaries. Cell tag 1. Deterministic for a given
    ``h`` (gmsh's default Delaunay mesher, one thread).
    """
    gmsh = _gmsh()
    initialised = gmsh.isInitialized()
    if not initialised:
        gmsh.initialize(interruptible=False)
    gmsh.option.setNumber("General.Terminal", 0)
    gmsh.option.setNumber("General.NumThreads", 1)
    try:
        if comm.rank == 0:
            gmsh.model.add("plate_with_holes")
            occ = gmsh.model.occ
            plate = occ.addRectangle(0, 0, 0, 1, 1)
            holes = [occ.addDisk(0.3, 0.35, 0, 0.12, 0.12), occ.addDisk(0.68, 0.62, 0, 0.1, 0.1)]
            occ.cut([(2, plate)], [(2, d) for d in holes])
            occ.synchronize()
            surfaces = gmsh.model.getEntities(2)
            gmsh.model.addPhysicalGroup(2, [s[1] for s in surfaces], 1)
            outer, inner = [], []
            for _, tag in gmsh.model.getEntities(1):
                x, y, _ = gmsh.model.occ.getCenterOfMass(1, tag)
                on_edge = min(x, y, 1 - x, 1 - y) < 1e-8
                (outer if on_edge else inner).append(tag)
            gmsh.model.addPhysicalGroup(1, outer, 1)
            gmsh.model.addPhysicalGroup(1, inner, 2)
            gmsh.option.setNumber("Mesh.CharacteristicLengthMax", h)
            gmsh.option.setNumber("Mesh.CharacteristicLengthMin", h)
            gmsh.model.mesh.generate(2)
        data = from_gmsh_model(gmsh.model, comm, gdim=2)
    finally:
        if comm.rank == 0:
            gmsh.model.remove()
        if not initialised:
            gmsh.finalize()
    return data
