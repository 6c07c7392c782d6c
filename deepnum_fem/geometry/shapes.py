"""Simple unstructured test domains: a plate with two holes (2D) and a box with a spherical
cavity (3D), both tagged 1 on the outer boundary and 2 on the holes."""

from __future__ import annotations

from mpi4py import MPI

import dolfinx.io.gmsh

from deepnum_fem.geometry.gmsh_model import from_gmsh_model, gmsh_session, uniform_size

__all__ = ["box_with_cavity", "plate_with_holes"]


def plate_with_holes(h: float = 0.05, comm: MPI.Comm = MPI.COMM_WORLD) -> dolfinx.io.gmsh.MeshData:
    """The unit square with two circular holes, triangulated by gmsh (unstructured).

    Facet tags: 1 outer boundary, 2 hole boundaries. Cell tag 1. Deterministic for a given
    ``h`` (gmsh's default Delaunay mesher, one thread).
    """
    with gmsh_session("plate_with_holes", comm) as gmsh:
        if comm.rank == 0:
            occ = gmsh.model.occ
            holes = [occ.addDisk(0.3, 0.35, 0, 0.12, 0.12), occ.addDisk(0.68, 0.62, 0, 0.1, 0.1)]
            occ.cut([(2, occ.addRectangle(0, 0, 0, 1, 1))], [(2, d) for d in holes])
            occ.synchronize()
            _tag_box_and_holes(gmsh, dim=2)
            uniform_size(gmsh, h)
            gmsh.model.mesh.generate(2)
        return from_gmsh_model(gmsh.model, comm, gdim=2)


def box_with_cavity(h: float = 0.05, comm: MPI.Comm = MPI.COMM_WORLD) -> dolfinx.io.gmsh.MeshData:
    """The unit cube minus a sphere (centre 0.5, radius 0.25), tetrahedralised by gmsh.

    Facet tags: 1 cube faces, 2 cavity surface. Cell tag 1. Used by the benchmarks as a 3D
    unstructured mesh whose size is set by ``h``.
    """
    with gmsh_session("box_with_cavity", comm) as gmsh:
        if comm.rank == 0:
            occ = gmsh.model.occ
            occ.cut([(3, occ.addBox(0, 0, 0, 1, 1, 1))], [(3, occ.addSphere(0.5, 0.5, 0.5, 0.25))])
            occ.synchronize()
            _tag_box_and_holes(gmsh, dim=3)
            uniform_size(gmsh, h)
            gmsh.model.mesh.generate(3)
        return from_gmsh_model(gmsh.model, comm, gdim=3)


def _tag_box_and_holes(gmsh, dim: int) -> None:
    """Cell tag 1; facet tag 1 on the faces of the unit box, 2 on the other (hole) boundaries."""
    gmsh.model.addPhysicalGroup(dim, [e[1] for e in gmsh.model.getEntities(dim)], 1)
    outer, inner = [], []
    for _, tag in gmsh.model.getEntities(dim - 1):
        centre = gmsh.model.occ.getCenterOfMass(dim - 1, tag)[:dim]
        on_box = min(min(c, 1 - c) for c in centre) < 1e-8
        (outer if on_box else inner).append(tag)
    gmsh.model.addPhysicalGroup(dim - 1, outer, 1)
    gmsh.model.addPhysicalGroup(dim - 1, inner, 2)

