"""Meshes from gmsh: generators for the demos, built on rank 0 and distributed."""

from __future__ import annotations

import contextlib
import math

from mpi4py import MPI

import dolfinx.io.gmsh
import dolfinx.mesh

__all__ = [
    "LV_CELL_TAGS",
    "LV_DIMENSIONS",
    "LV_TAGS",
    "box_with_cavity",
    "from_gmsh_model",
    "left_ventricle",
    "left_ventricle_volume",
    "plate_with_holes",
]

#: Facet tags of :func:`left_ventricle` (physical group name -> tag).
LV_TAGS = {"BASE": 1, "ENDO": 2, "EPI": 3}
#: Cell tags of :func:`left_ventricle`.
LV_CELL_TAGS = {"MYOCARDIUM": 1}
#: Land et al. (2015) benchmark ventricle, mm: ellipsoid radii and the base plane ``z = z_base``.
LV_DIMENSIONS = {"endo_short": 7.0, "endo_long": 17.0, "epi_short": 10.0, "epi_long": 20.0, "z_base": 5.0}


def _gmsh():
    try:
        import gmsh
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("deepnum_fem.geometry needs gmsh: pip install gmsh") from e
    return gmsh


@contextlib.contextmanager
def _model(name: str, comm: MPI.Comm):
    """A gmsh model named ``name`` on rank 0 (other ranks get None); cleaned up afterwards."""
    gmsh = _gmsh()
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


def _uniform_size(gmsh, h: float) -> None:
    gmsh.option.setNumber("Mesh.CharacteristicLengthMax", h)
    gmsh.option.setNumber("Mesh.CharacteristicLengthMin", h)


def from_gmsh_model(model, comm: MPI.Comm = MPI.COMM_WORLD, *, gdim: int = 2,
                    rank: int = 0) -> dolfinx.io.gmsh.MeshData:
    """Distribute the gmsh ``model`` built on ``rank`` as a DOLFINx mesh with its tags."""
    return dolfinx.io.gmsh.model_to_mesh(model, comm, rank, gdim=gdim)


def plate_with_holes(h: float = 0.05, comm: MPI.Comm = MPI.COMM_WORLD) -> dolfinx.io.gmsh.MeshData:
    """The unit square with two circular holes, triangulated by gmsh (unstructured).

    Facet tags: 1 outer boundary, 2 hole boundaries. Cell tag 1. Deterministic for a given
    ``h`` (gmsh's default Delaunay mesher, one thread).
    """
    with _model("plate_with_holes", comm) as gmsh:
        if comm.rank == 0:
            occ = gmsh.model.occ
            holes = [occ.addDisk(0.3, 0.35, 0, 0.12, 0.12), occ.addDisk(0.68, 0.62, 0, 0.1, 0.1)]
            occ.cut([(2, occ.addRectangle(0, 0, 0, 1, 1))], [(2, d) for d in holes])
            occ.synchronize()
            _tag_box_and_holes(gmsh, dim=2)
            _uniform_size(gmsh, h)
            gmsh.model.mesh.generate(2)
        return from_gmsh_model(gmsh.model, comm, gdim=2)


def box_with_cavity(h: float = 0.05, comm: MPI.Comm = MPI.COMM_WORLD) -> dolfinx.io.gmsh.MeshData:
    """The unit cube minus a sphere (centre 0.5, radius 0.25), tetrahedralised by gmsh.

    Facet tags: 1 cube faces, 2 cavity surface. Cell tag 1. Used by the benchmarks as a 3D
    unstructured mesh whose size is set by ``h``.
    """
    with _model("box_with_cavity", comm) as gmsh:
        if comm.rank == 0:
            occ = gmsh.model.occ
            occ.cut([(3, occ.addBox(0, 0, 0, 1, 1, 1))], [(3, occ.addSphere(0.5, 0.5, 0.5, 0.25))])
            occ.synchronize()
            _tag_box_and_holes(gmsh, dim=3)
            _uniform_size(gmsh, h)
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


def left_ventricle(h: float = 1.0, comm: MPI.Comm = MPI.COMM_WORLD) -> dolfinx.io.gmsh.MeshData:
    """The truncated-ellipsoid left ventricle of Land et al. (2015), tetrahedralised by gmsh.

    Millimetres. The myocardium lies between the endocardial ellipsoid (radii 7, 7, 17) and the
    epicardial one (10, 10, 20), both centred at the origin with the long axis along z and the
    apex at negative z, below the base plane z = 5 (see :data:`LV_DIMENSIONS`).

    Tags, with physical-group names: cells ``MYOCARDIUM`` 1; facets ``BASE`` 1, ``ENDO`` 2,
    ``EPI`` 3 (:data:`LV_TAGS`). Tetrahedra of size about ``h``; deterministic for a given ``h``
    (Frontal-Delaunay surfaces, Delaunay volume, one thread).

    Reference: S. Land et al., Proc. R. Soc. A 471: 20150641 (2015), problems 2 and 3.
    """
    if not h > 0:
        raise ValueError(f"expected a mesh size h > 0, got {h}")
    with _model("left_ventricle", comm) as gmsh:
        if comm.rank == 0:
            _left_ventricle_model(gmsh, h)
        return from_gmsh_model(gmsh.model, comm, gdim=3)


def left_ventricle_volume() -> float:
    """The exact volume (mm³) of the myocardium of :func:`left_ventricle`."""
    d = LV_DIMENSIONS

    def cap(r_short: float, r_long: float) -> float:  # ellipsoid below z = z_base
        z = d["z_base"]
        return math.pi * r_short**2 * ((z + r_long) - (z**3 + r_long**3) / (3 * r_long**2))

    return cap(d["epi_short"], d["epi_long"]) - cap(d["endo_short"], d["endo_long"])


def _left_ventricle_model(gmsh, h: float) -> None:
    """Build and mesh the :func:`left_ventricle` geometry in gmsh's current model (rank 0 only)."""
    d = LV_DIMENSIONS
    occ = gmsh.model.occ

    def ellipsoid(r_short: float, r_long: float) -> int:
        tag = occ.addSphere(0, 0, 0, 1)
        occ.dilate([(3, tag)], 0, 0, 0, r_short, r_short, r_long)
        return tag

    epi, endo = ellipsoid(d["epi_short"], d["epi_long"]), ellipsoid(d["endo_short"], d["endo_long"])
    r, z_apex = d["epi_short"] + 1, -d["epi_long"] - 1
    below_base = occ.addBox(-r, -r, z_apex, 2 * r, 2 * r, d["z_base"] - z_apex)
    shell, _ = occ.cut([(3, epi)], [(3, endo)])
    myocardium, _ = occ.intersect(shell, [(3, below_base)])
    occ.synchronize()

    groups: dict[str, list[int]] = {name: [] for name in LV_TAGS}
    for _, tag in gmsh.model.getEntities(2):
        groups[_classify_lv_surface(gmsh, tag)].append(tag)
    empty = [name for name, tags in groups.items() if not tags]
    if empty:  # pragma: no cover - a change of gmsh/OCC behaviour
        raise RuntimeError(f"left_ventricle: no gmsh surface found for {empty}")
    gmsh.model.addPhysicalGroup(3, [tag for _, tag in myocardium], LV_CELL_TAGS["MYOCARDIUM"],
                                name="MYOCARDIUM")
    for name, tags in groups.items():
        gmsh.model.addPhysicalGroup(2, tags, LV_TAGS[name], name=name)

    _uniform_size(gmsh, h)
    gmsh.option.setNumber("Mesh.Algorithm", 6)     # Frontal-Delaunay surfaces
    gmsh.option.setNumber("Mesh.Algorithm3D", 1)   # Delaunay volume
    gmsh.model.mesh.generate(3)


def _classify_lv_surface(gmsh, tag: int) -> str:
    """``BASE``, ``ENDO`` or ``EPI`` for a boundary surface, from a point inside it."""
    d = LV_DIMENSIONS
    lo, hi = gmsh.model.getParametrizationBounds(2, tag)
    x, y, z = gmsh.model.getValue(2, tag, [(a + b) / 2 for a, b in zip(lo, hi, strict=True)])
    z_min, z_max = gmsh.model.getBoundingBox(2, tag)[2::3]
    if abs(z - d["z_base"]) < 1e-6 and z_max - z_min < 1e-3 * d["epi_long"]:
        return "BASE"
    on_endo = (x * x + y * y) / d["endo_short"] ** 2 + z * z / d["endo_long"] ** 2
    on_epi = (x * x + y * y) / d["epi_short"] ** 2 + z * z / d["epi_long"] ** 2
    return "ENDO" if abs(on_endo - 1) < abs(on_epi - 1) else "EPI"
