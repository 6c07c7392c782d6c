"""Simple unstructured test domains: a plate with two holes (2D) and a box with a spherical
cavity (3D), both tagged 1 on the outer boundary and 2 on the holes; the channel with a
cylinder of the DFG flow benchmark (2D)."""

from __future__ import annotations

from mpi4py import MPI

import dolfinx.io.gmsh

from deepnum_fem.geometry.gmsh_model import from_gmsh_model, gmsh_session, graded_size_field, uniform_size

__all__ = ["CHANNEL_TAGS", "box_with_cavity", "channel_with_cylinder", "plate_with_holes"]

#: Facet tags of :func:`channel_with_cylinder`.
CHANNEL_TAGS = {"INFLOW": 1, "OUTFLOW": 2, "WALLS": 3, "CYLINDER": 4}


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



def channel_with_cylinder(h: float = 0.04, h_cylinder: float | None = None,
                          comm: MPI.Comm = MPI.COMM_WORLD) -> dolfinx.io.gmsh.MeshData:
    """The channel [0, 2.2] x [0, 0.41] minus the cylinder of radius 0.05 about (0.2, 0.2): the
    geometry of the DFG benchmark "flow around a cylinder" (Schäfer & Turek 1996).

    Tags (:data:`CHANNEL_TAGS`): cells ``FLUID`` 1; facets ``INFLOW`` 1 (x = 0), ``OUTFLOW`` 2
    (x = 2.2), ``WALLS`` 3 (y = 0 and y = 0.41), ``CYLINDER`` 4. Mesh size ``h``, graded to
    ``h_cylinder`` (default ``h / 8``) at the cylinder over a distance of 0.15.
    """
    h_cylinder = h / 8 if h_cylinder is None else h_cylinder
    if not (h > 0 and 0 < h_cylinder <= h):
        raise ValueError(f"channel_with_cylinder: expected h > 0 and 0 < h_cylinder <= h, got {h}, {h_cylinder}")
    with gmsh_session("channel_with_cylinder", comm) as gmsh:
        if comm.rank == 0:
            occ = gmsh.model.occ
            fluid, _ = occ.cut([(2, occ.addRectangle(0, 0, 0, 2.2, 0.41))], [(2, occ.addDisk(0.2, 0.2, 0, 0.05, 0.05))])
            occ.synchronize()
            gmsh.model.addPhysicalGroup(2, [fluid[0][1]], 1, name="FLUID")
            groups = {name: [] for name in CHANNEL_TAGS}
            for _, tag in gmsh.model.getEntities(1):
                x, y, _ = occ.getCenterOfMass(1, tag)
                name = ("INFLOW" if abs(x) < 1e-8 else "OUTFLOW" if abs(x - 2.2) < 1e-8
                        else "WALLS" if min(abs(y), abs(y - 0.41)) < 1e-8 else "CYLINDER")
                groups[name].append(tag)
            for name, tags in groups.items():
                gmsh.model.addPhysicalGroup(1, tags, CHANNEL_TAGS[name], name=name)
            graded_size_field(gmsh, 1, groups["CYLINDER"], h, h_cylinder, 0.15)
            gmsh.option.setNumber("Mesh.Algorithm", 6)
            gmsh.model.mesh.generate(2)
        return from_gmsh_model(gmsh.model, comm, gdim=2)
