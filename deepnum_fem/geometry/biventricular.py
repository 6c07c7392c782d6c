"""An idealised biventricular heart: the Land et al. left ventricle with a right ventricle of
two more truncated ellipsoids, LV_ENDO/RV_ENDO/EPI/BASE facet tags, and its volume."""

from __future__ import annotations

from mpi4py import MPI

import dolfinx.io.gmsh
import numpy as np

from deepnum_fem.geometry.gmsh_model import from_gmsh_model, gmsh_session, uniform_size

__all__ = ["BIV_CELL_TAGS", "BIV_DIMENSIONS", "BIV_TAGS", "biventricle", "biventricle_model", "biventricle_volume",
           "inside_biventricle"]

#: Facet tags of :func:`biventricle` (physical group name -> tag); ``BASE``, ``LV_ENDO`` and
#: ``EPI`` carry the values of the left ventricle's ``BASE``, ``ENDO`` and ``EPI``.
BIV_TAGS = {"BASE": 1, "LV_ENDO": 2, "EPI": 3, "RV_ENDO": 4}
#: Cell tags of :func:`biventricle`.
BIV_CELL_TAGS = {"MYOCARDIUM": 1}
#: Semi-axes ``(x, y, z)`` (mm) of the four ellipsoids, the x of the right ventricle's centre
#: (the left one's is the origin) and the base plane ``z = z_base``.
BIV_DIMENSIONS = {"lv_endo": (7.0, 7.0, 17.0), "lv_epi": (10.0, 10.0, 20.0), "rv_centre_x": 5.0,
                  "rv_endo": (9.0, 12.0, 15.0), "rv_epi": (11.0, 14.0, 17.0), "z_base": 5.0}


def biventricle(h: float = 1.2, comm: MPI.Comm = MPI.COMM_WORLD) -> dolfinx.io.gmsh.MeshData:
    """An idealised biventricular heart, tetrahedralised by gmsh.

    Millimetres, long axis z, apex at negative z, everything below the base plane z = 5
    (:data:`BIV_DIMENSIONS`). The left ventricle is that of Land et al. (2015)
    (:func:`~deepnum_fem.geometry.left_ventricle`): endocardial ellipsoid (7, 7, 17) and
    epicardial (10, 10, 20) about the origin. The right ventricle is a crescent on its +x side:
    its cavity is the ellipsoid (9, 12, 15) about (5, 0, 0) outside the left epicardial
    ellipsoid, so that the septum is the left ventricle's own 3 mm wall; its free wall lies
    between that ellipsoid and (11, 14, 17), about 2 mm thick. The myocardium is
    :func:`inside_biventricle`: (LV epi ∪ RV epi) − LV cavity − RV cavity, below the base.

    Tags, with physical-group names: cells ``MYOCARDIUM`` 1; facets ``BASE`` 1, ``LV_ENDO`` 2,
    ``EPI`` 3, ``RV_ENDO`` 4 (the right cavity's free-wall and septal surfaces) (:data:`BIV_TAGS`).
    Tetrahedra of size about ``h``; deterministic for a given ``h`` (Frontal-Delaunay
    surfaces, Delaunay volume, one thread): h = 2 mm gives 1,423 vertices, 1.5 mm 2,771,
    1.2 mm 4,576, 1 mm 7,484 (and so on as h⁻³). The volume is :func:`biventricle_volume`.
    """
    if not h > 0:
        raise ValueError(f"expected a mesh size h > 0 (mm), got {h}")
    with gmsh_session("biventricle", comm) as gmsh:
        if comm.rank == 0:
            biventricle_model(gmsh, h)
        return from_gmsh_model(gmsh.model, comm, gdim=3)


def inside_biventricle(x: np.ndarray) -> np.ndarray:
    """Whether the points ``x`` (shape ``(n, 3)``) lie in the myocardium of :func:`biventricle`."""
    x = np.asarray(x, dtype=np.float64)
    inside = {name: _ellipsoid(x, name) < 1 for name in ("lv_endo", "lv_epi", "rv_endo", "rv_epi")}
    return ((inside["lv_epi"] | inside["rv_epi"]) & ~inside["lv_endo"] & ~(inside["rv_endo"] & ~inside["lv_epi"])
            & (x[:, 2] < BIV_DIMENSIONS["z_base"]))


def biventricle_volume(n: int = 2000) -> float:
    """The volume (mm³) of the myocardium of :func:`biventricle`, to about 1e-5 relative.

    The four ellipsoids share the plane z = 0 as a plane of symmetry, so along each vertical
    line the myocardium is a union of intervals with closed-form ends; their lengths are
    integrated over the (x, y) plane by the midpoint rule on an ``n`` x ``n`` grid (the
    error falls as n⁻¹·⁵: the lengths have square-root edges). Independent of gmsh.
    """
    d = BIV_DIMENSIONS
    x0 = min(-d["lv_epi"][0], d["rv_centre_x"] - d["rv_epi"][0])
    x1 = max(d["lv_epi"][0], d["rv_centre_x"] + d["rv_epi"][0])
    y1 = max(d["lv_epi"][1], d["rv_epi"][1])
    dx, dy = (x1 - x0) / n, 2 * y1 / n
    y = -y1 + dy * (np.arange(n) + 0.5)
    total = 0.0
    for x in x0 + dx * (np.arange(n) + 0.5):   # one column of the grid at a time
        p = np.column_stack([np.full(n, x), y, np.zeros(n)])
        half = {name: d[name][2] * np.sqrt(np.clip(1 - _ellipsoid(p, name), 0, None))
                for name in ("lv_endo", "lv_epi", "rv_endo", "rv_epi")}
        top = np.maximum(half["lv_epi"], half["rv_epi"])
        # |z| in [LV endo, LV epi) (left wall, septum) or [max(LV epi, RV endo), top) (right wall)
        for lo, hi in ((half["lv_endo"], half["lv_epi"]), (np.maximum(half["lv_epi"], half["rv_endo"]), top)):
            length = np.clip(hi - lo, 0, None)
            above_base = np.clip(np.minimum(hi, d["z_base"]) - lo, 0, None) * (hi > lo)
            total += float(np.sum(length + above_base))   # z < 0 all of it, z > 0 up to the base
    return total * dx * dy


def biventricle_model(gmsh, h: float) -> None:
    """Build and mesh the :func:`biventricle` geometry in gmsh's current model (rank 0 only)."""
    groups = _build(gmsh)
    volumes = [tag for _, tag in gmsh.model.getEntities(3)]
    gmsh.model.addPhysicalGroup(3, volumes, BIV_CELL_TAGS["MYOCARDIUM"], name="MYOCARDIUM")
    for name, tags in groups.items():
        gmsh.model.addPhysicalGroup(2, tags, BIV_TAGS[name], name=name)
    uniform_size(gmsh, h)
    gmsh.option.setNumber("Mesh.Algorithm", 6)     # Frontal-Delaunay surfaces
    gmsh.option.setNumber("Mesh.Algorithm3D", 1)   # Delaunay volume
    gmsh.model.mesh.generate(3)


def _build(gmsh) -> dict[str, list[int]]:
    """The myocardium in gmsh's current model (OCC, synchronised); its surfaces by tag name."""
    d = BIV_DIMENSIONS
    occ = gmsh.model.occ

    def ellipsoid(name: str) -> tuple[int, int]:
        tag = occ.addSphere(0, 0, 0, 1)
        occ.dilate([(3, tag)], 0, 0, 0, *d[name])
        if name.startswith("rv"):
            occ.translate([(3, tag)], d["rv_centre_x"], 0, 0)
        return (3, tag)

    rv_cavity, _ = occ.cut([ellipsoid("rv_endo")], [ellipsoid("lv_epi")])
    outer, _ = occ.fuse([ellipsoid("lv_epi")], [ellipsoid("rv_epi")])
    walls, _ = occ.cut(outer, [ellipsoid("lv_endo"), *rv_cavity])
    lo = np.array([-d["lv_epi"][0], -d["rv_epi"][1], -d["lv_epi"][2]]) - 1
    hi = np.array([d["rv_centre_x"] + d["rv_epi"][0] + 1, d["rv_epi"][1] + 1, d["z_base"]])
    below_base = occ.addBox(*lo, *(hi - lo))
    occ.intersect(walls, [(3, below_base)])
    occ.synchronize()
    if len(gmsh.model.getEntities(3)) != 1:  # pragma: no cover - a change of gmsh/OCC behaviour
        raise RuntimeError(f"biventricle: expected one volume, OCC made {gmsh.model.getEntities(3)}")

    groups: dict[str, list[int]] = {name: [] for name in BIV_TAGS}
    for _, tag in gmsh.model.getEntities(2):
        groups[_classify(gmsh, tag)].append(tag)
    empty = [name for name, tags in groups.items() if not tags]
    if empty:  # pragma: no cover - a change of gmsh/OCC behaviour
        raise RuntimeError(f"biventricle: no gmsh surface found for {empty}")
    return groups


def _ellipsoid(x: np.ndarray, name: str) -> np.ndarray:
    """``Σ ((x_i - c_i) / r_i)²`` of the :data:`BIV_DIMENSIONS` ellipsoid ``name`` (1 on its surface)."""
    d = BIV_DIMENSIONS
    centre = np.array([d["rv_centre_x"] if name.startswith("rv") else 0.0, 0.0, 0.0])
    return np.sum(((x - centre) / np.array(d[name])) ** 2, axis=-1)


def _classify(gmsh, tag: int) -> str:
    """The :data:`BIV_TAGS` name of a boundary surface, from a point inside it."""
    x, normal = _point_on(gmsh, tag)
    if abs(x[2] - BIV_DIMENSIONS["z_base"]) < 1e-6 and abs(abs(normal[2]) - 1) < 1e-9:
        return "BASE"
    names = ("lv_endo", "lv_epi", "rv_endo", "rv_epi")
    on = names[int(np.argmin([abs(_ellipsoid(x, name) - 1) for name in names]))]
    if on == "lv_epi":   # the septum's right side faces the right cavity
        return "RV_ENDO" if _ellipsoid(x, "rv_endo") < 1 else "EPI"
    return {"lv_endo": "LV_ENDO", "rv_endo": "RV_ENDO", "rv_epi": "EPI"}[on]


def _point_on(gmsh, tag: int) -> tuple[np.ndarray, np.ndarray]:
    """A point of the (trimmed) surface ``tag`` and the unit normal there: the first point
    inside it of a grid of parameters."""
    lo, hi = gmsh.model.getParametrizationBounds(2, tag)
    for s in (0.5, 0.3, 0.7, 0.1, 0.9):
        for t in (0.5, 0.3, 0.7, 0.1, 0.9):
            uv = [lo[0] + s * (hi[0] - lo[0]), lo[1] + t * (hi[1] - lo[1])]
            if gmsh.model.isInside(2, tag, uv, parametric=True):
                return np.array(gmsh.model.getValue(2, tag, uv)), np.array(gmsh.model.getNormal(tag, uv))
    raise RuntimeError(f"biventricle: found no point inside gmsh surface {tag}")  # pragma: no cover
