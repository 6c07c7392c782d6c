"""The district in 3D: the air over the street space, a polygonal prism about the origin minus
each building's footprint extruded to its height. The outer polygon and the footprints are those
of :func:`~deepnum_fem.geometry.district_domain`, so the 2D mesh is a horizontal section of this
one's domain; :func:`~deepnum_fem.geometry.wind_boundaries` splits its side wall by the wind."""

from __future__ import annotations

import math

from mpi4py import MPI

import dolfinx.io.gmsh
import numpy as np

from deepnum_fem.geometry.district import DISTRICT_CELL_TAGS, DISTRICT_TAGS, check_district
from deepnum_fem.geometry.gmsh_model import from_gmsh_model, gmsh_session, graded_size_field

__all__ = ["DISTRICT_BUILDING_HEIGHT", "DISTRICT_TAGS_3D", "check_heights", "district_domain_3d",
           "district_model_3d"]

#: Facet tags of :func:`district_domain_3d`: ``OUTER`` the prism's side wall (split by
#: :func:`~deepnum_fem.geometry.wind_boundaries`), ``BUILDINGS`` every wall and roof, ``GROUND``
#: the street space at z = 0, ``TOP`` the lid at z = ``height``. The cell tag is ``AIR``
#: (:data:`~deepnum_fem.geometry.DISTRICT_CELL_TAGS`).
DISTRICT_TAGS_3D = {**DISTRICT_TAGS, "GROUND": 5, "TOP": 6}
#: The height (m) :func:`district_domain_3d` gives every building when ``building_heights`` is
#: None: a rule, six storeys of 3 m, not data (the bundled footprints carry no heights).
DISTRICT_BUILDING_HEIGHT = 18.0


def district_domain_3d(buildings, *, radius: float, height: float, building_heights=None, h: float = 20.0,
                       h_near: float | None = None, comm: MPI.Comm = MPI.COMM_WORLD) -> dolfinx.io.gmsh.MeshData:
    """The air over a district: the prism of the polygon :func:`~deepnum_fem.geometry.district.circle_polygon`
    ``(radius, h)`` from z = 0 to ``height``, minus each footprint extruded from the ground to its
    building's height (an OpenCASCADE boolean cut), meshed with tetrahedra by gmsh.

    Args:
        buildings: Footprints, as for :func:`~deepnum_fem.geometry.district_domain` (and checked
            alike).
        radius: Of the circle about the origin that the outer polygon is inscribed in (m).
        height: The domain's top (m).
        building_heights: One height (m) per building, each in ``(0, height - h_near]`` (at
            least ``h_near`` of air above a roof) or equal to ``height`` (through the top: no
            roof); None gives every building :data:`DISTRICT_BUILDING_HEIGHT`.
        h: Mesh size (m) away from the buildings.
        h_near: Mesh size at the walls and roofs (default ``h / 2``), growing linearly to ``h`` at
            ``2 h`` from them.
        comm: Communicator of the mesh (gmsh runs on rank 0).

    Tags (:data:`DISTRICT_TAGS_3D`): cells ``AIR`` 1; facets ``OUTER`` 1, ``BUILDINGS`` 2,
    ``GROUND`` 5, ``TOP`` 6. The boundary is polyhedral and meshed exactly: the volume is the
    outer polygon's area times ``height`` minus the building prisms'.

    Raises:
        ValueError: as :func:`~deepnum_fem.geometry.district_domain`, and for a ``height`` or
            building heights out of range, or not one height per building.
    """
    h_near = h / 2 if h_near is None else h_near
    outer, rings, h_near, _ = check_district(buildings, radius, h, h_near, 2 * h, caller="district_domain_3d")
    heights = check_heights(building_heights, len(rings), height, h_near)
    with gmsh_session("district_3d", comm) as gmsh:
        if comm.rank == 0:
            district_model_3d(gmsh, outer, rings, heights, float(height), h, h_near)
        return from_gmsh_model(gmsh.model, comm, gdim=3)


def check_heights(building_heights, n: int, height: float, h_near: float) -> list[float]:
    """Validate :func:`district_domain_3d`'s heights: one per building (:data:`DISTRICT_BUILDING_HEIGHT`
    each for None), or ValueError naming what was expected and what came."""
    if not (math.isfinite(height) and height > 0):
        raise ValueError(f"district_domain_3d: expected a domain height > 0 (m), got {height}")
    if building_heights is None:
        building_heights = [DISTRICT_BUILDING_HEIGHT] * n
    heights = np.asarray(building_heights, dtype=np.float64).reshape(-1)
    if heights.size != n:
        raise ValueError(f"district_domain_3d: expected one building height per building ({n}), "
                         f"got {heights.size}")
    bad = np.flatnonzero(~(((heights > 0) & (heights <= height - h_near)) | (heights == height)))
    if bad.size:
        raise ValueError(f"district_domain_3d: expected each building height in (0, height - h_near] = "
                         f"(0, {height - h_near:g}] m or equal to height = {height:g} m (through the top); "
                         f"got {heights[bad[0]]:g} m for building {bad[0]}")
    return heights.tolist()


def district_model_3d(gmsh, outer: np.ndarray, rings: list[np.ndarray], heights: list[float], height: float,
                      h: float, h_near: float) -> None:
    """Build and mesh the :func:`district_domain_3d` geometry in gmsh's current model (rank 0 only)."""
    occ = gmsh.model.occ

    def prism(ring: np.ndarray, top: float) -> tuple[int, int]:
        points = [occ.addPoint(float(x), float(y), 0.0) for x, y in ring]
        lines = [occ.addLine(points[k], points[(k + 1) % len(points)]) for k in range(len(points))]
        face = occ.addPlaneSurface([occ.addCurveLoop(lines)])
        return next(e for e in occ.extrude([(2, face)], 0.0, 0.0, top) if e[0] == 3)

    air, _ = occ.cut([prism(outer, height)], [prism(ring, z) for ring, z in zip(rings, heights, strict=True)])
    occ.synchronize()
    groups: dict[str, list[int]] = {name: [] for name in DISTRICT_TAGS_3D}
    tol = 1e-9 * max(height, float(np.linalg.norm(outer[0])))
    # the side wall's faces have their centres at r cos(π/n) > r - h/2 from the axis; every
    # building lies within r - h (check_district)
    side = float(np.linalg.norm(outer[0])) - h / 2
    for _, face in gmsh.model.getBoundary(air, oriented=False):
        x, y, z = occ.getCenterOfMass(2, face)
        name = ("GROUND" if abs(z) < tol else "TOP" if abs(z - height) < tol
                else "OUTER" if math.hypot(x, y) > side else "BUILDINGS")
        groups[name].append(face)
    empty = [name for name, faces in groups.items() if not faces]
    if empty:  # pragma: no cover - a change of gmsh/OCC behaviour
        raise RuntimeError(f"district_domain_3d: no gmsh boundary face found for {empty}")
    gmsh.model.addPhysicalGroup(3, [t for _, t in air], DISTRICT_CELL_TAGS["AIR"], name="AIR")
    for name, faces in groups.items():
        gmsh.model.addPhysicalGroup(2, sorted(faces), DISTRICT_TAGS_3D[name], name=name)
    graded_size_field(gmsh, 2, groups["BUILDINGS"], h, h_near, 2 * h)
    gmsh.option.setNumber("Mesh.Algorithm", 6)     # Frontal-Delaunay surfaces
    gmsh.option.setNumber("Mesh.Algorithm3D", 1)   # Delaunay volume
    gmsh.model.mesh.generate(3)
