"""The left ventricle of Land et al. (2015): a truncated ellipsoidal shell with BASE/ENDO/EPI
facet tags, and its exact volume."""

from __future__ import annotations

import math

from mpi4py import MPI

import dolfinx.io.gmsh

from deepnum_fem.geometry.gmsh_model import from_gmsh_model, gmsh_session, uniform_size

__all__ = ["LV_CELL_TAGS", "LV_DIMENSIONS", "LV_TAGS", "left_ventricle", "left_ventricle_model",
           "left_ventricle_volume"]

#: Facet tags of :func:`left_ventricle` (physical group name -> tag).
LV_TAGS = {"BASE": 1, "ENDO": 2, "EPI": 3}
#: Cell tags of :func:`left_ventricle`.
LV_CELL_TAGS = {"MYOCARDIUM": 1}
#: Land et al. (2015) benchmark ventricle, mm: ellipsoid radii and the base plane ``z = z_base``.
LV_DIMENSIONS = {"endo_short": 7.0, "endo_long": 17.0, "epi_short": 10.0, "epi_long": 20.0, "z_base": 5.0}


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
    with gmsh_session("left_ventricle", comm) as gmsh:
        if comm.rank == 0:
            left_ventricle_model(gmsh, h)
        return from_gmsh_model(gmsh.model, comm, gdim=3)


def left_ventricle_volume() -> float:
    """The exact volume (mm³) of the myocardium of :func:`left_ventricle`."""
    d = LV_DIMENSIONS

    def cap(r_short: float, r_long: float) -> float:  # ellipsoid below z = z_base
        z = d["z_base"]
        return math.pi * r_short**2 * ((z + r_long) - (z**3 + r_long**3) / (3 * r_long**2))

    return cap(d["epi_short"], d["epi_long"]) - cap(d["endo_short"], d["endo_long"])


def left_ventricle_model(gmsh, h: float) -> None:
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

    uniform_size(gmsh, h)
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

