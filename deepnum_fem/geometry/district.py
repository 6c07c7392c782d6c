"""A real city district at street level: building footprints (polygons, metres) as holes in a
circular domain, so that a wind from any direction enters and leaves through the one outer
boundary; refined at the walls. The bundled district (Prague-Bubeneč) is read by
:func:`deepnum_fem.io.load_district`."""

from __future__ import annotations

import math

from mpi4py import MPI

import dolfinx.io.gmsh
import dolfinx.mesh
import numpy as np

from deepnum_fem.geometry.gmsh_model import from_gmsh_model, gmsh_session, graded_size_field
from deepnum_fem.geometry.polygons import as_polygon, first_crossing, inside, signed_area

__all__ = ["DISTRICT_CELL_TAGS", "DISTRICT_TAGS", "WIND_TAGS", "check_district", "circle_polygon", "district_domain",
           "district_model", "wind_boundaries"]

#: Facet tags of :func:`district_domain`: ``OUTER`` the circle (inflow and outflow, by the
#: wind's direction), ``BUILDINGS`` every wall.
DISTRICT_TAGS = {"OUTER": 1, "BUILDINGS": 2}
#: Cell tags of :func:`district_domain`.
DISTRICT_CELL_TAGS = {"AIR": 1}


def circle_polygon(radius: float, h: float) -> np.ndarray:
    """The regular polygon of edge length at most ``h`` inscribed in the circle of ``radius``
    about the origin, counter-clockwise from (radius, 0): the domain's outer boundary. Its area
    is ``n r² sin(2π/n) / 2`` for its ``n`` vertices."""
    n = max(8, math.ceil(2 * math.pi * radius / h))
    angles = 2 * math.pi * np.arange(n) / n
    return radius * np.column_stack([np.cos(angles), np.sin(angles)])


def district_domain(buildings, *, radius: float, h: float = 10.0, h_near: float | None = None,
                    grading_distance: float | None = None,
                    comm: MPI.Comm = MPI.COMM_WORLD) -> dolfinx.io.gmsh.MeshData:
    """The street space of a district: the polygon :func:`circle_polygon` ``(radius, h)`` minus
    the ``buildings``, triangulated by gmsh.

    Args:
        buildings: Footprints, each a closed polyline ``(n, 2)`` in metres (simple, pairwise
            disjoint and not touching, inside the circle by at least ``h``), e.g.
            ``dnf.io.load_district_footprints()["buildings"]``.
        radius: Of the circular domain (m), centred at the origin.
        h: Mesh size (m) away from the buildings.
        h_near: Mesh size at the walls (default ``h / 4``), growing linearly to ``h`` at
            ``grading_distance`` (default ``3 h``) from them.
        comm: Communicator of the mesh (gmsh runs on rank 0).

    Tags (:data:`DISTRICT_TAGS`, :data:`DISTRICT_CELL_TAGS`): cells ``AIR`` 1; facets
    ``OUTER`` 1, ``BUILDINGS`` 2. The boundary is polygonal and meshed exactly: the area is the
    outer polygon's minus the footprints'.

    Raises:
        ValueError: for sizes out of range, a footprint that is degenerate, outside the circle
            (with a margin of ``h``), inside another, or crossing or touching another.
    """
    outer, rings, h_near, grading_distance = check_district(buildings, radius, h, h_near, grading_distance)
    with gmsh_session("district", comm) as gmsh:
        if comm.rank == 0:
            district_model(gmsh, outer, rings, h, h_near, grading_distance)
        return from_gmsh_model(gmsh.model, comm, gdim=2)


def check_district(buildings, radius: float, h: float, h_near: float | None,
                   grading_distance: float | None, *,
                   caller: str = "district_domain") -> tuple[np.ndarray, list[np.ndarray], float, float]:
    """Validate :func:`district_domain`'s arguments: ``(outer polygon, footprints, h_near,
    grading_distance)``, or ValueError naming what is wrong (and the ``caller``)."""
    h_near = h / 4 if h_near is None else float(h_near)
    grading_distance = 3 * h if grading_distance is None else float(grading_distance)
    if not (h > 0 and 0 < h_near <= h and grading_distance > 0 and radius > 2 * h):
        raise ValueError(f"{caller}: expected h > 0, 0 < h_near <= h, grading_distance > 0 and "
                         f"radius > 2 h; got h={h}, h_near={h_near}, grading_distance={grading_distance}, "
                         f"radius={radius}")
    rings = [as_polygon(b, f"building {i}") for i, b in enumerate(buildings)]
    if not rings:
        raise ValueError(f"{caller}: no buildings given")
    for i, ring in enumerate(rings):
        far = float(np.max(np.linalg.norm(ring, axis=1)))
        if far > radius - h:
            raise ValueError(f"{caller}: building {i} reaches {far:.1f} m from the centre; the circle "
                             f"of radius {radius} m must clear every building by h = {h} m")
        if abs(signed_area(ring)) <= 0:
            raise ValueError(f"{caller}: building {i} has no area")
    for i, ring in enumerate(rings):
        within = [j for j, other in enumerate(rings) if j != i and inside(ring[:1], other)[0]]
        if within:
            raise ValueError(f"{caller}: building {i} lies inside building {within[0]}; drop it (a "
                             "footprint inside another's outline is no street space)")
    crossing = first_crossing(rings)
    if crossing is not None:
        (a, _), (b, _) = crossing
        raise ValueError(f"{caller}: buildings {a} and {b} cross, touch or overlap (an edge of "
                         "one meets an edge of the other); merge them first")
    return circle_polygon(radius, h), rings, h_near, grading_distance


def district_model(gmsh, outer: np.ndarray, rings: list[np.ndarray], h: float, h_near: float,
                   grading_distance: float) -> None:
    """Build and mesh the :func:`district_domain` geometry in gmsh's current model (rank 0 only)."""
    geo = gmsh.model.geo
    loops, walls = [], []
    for r, ring in enumerate([outer, *rings]):
        points = [geo.addPoint(float(x), float(y), 0.0) for x, y in ring]
        lines = [geo.addLine(points[k], points[(k + 1) % len(points)]) for k in range(len(points))]
        if r == 0:
            outer_lines = lines
        else:
            walls += lines
        loops.append(geo.addCurveLoop(lines))
    air = geo.addPlaneSurface(loops)
    geo.synchronize()
    gmsh.model.addPhysicalGroup(2, [air], DISTRICT_CELL_TAGS["AIR"], name="AIR")
    gmsh.model.addPhysicalGroup(1, outer_lines, DISTRICT_TAGS["OUTER"], name="OUTER")
    gmsh.model.addPhysicalGroup(1, walls, DISTRICT_TAGS["BUILDINGS"], name="BUILDINGS")
    graded_size_field(gmsh, 1, walls, h, h_near, grading_distance)
    gmsh.option.setNumber("Mesh.Algorithm", 6)   # Frontal-Delaunay
    gmsh.model.mesh.generate(2)


#: Facet tags after :func:`wind_boundaries`: the circle split by the wind, the walls unchanged.
WIND_TAGS = {"INFLOW": 3, "OUTFLOW": 4, "BUILDINGS": DISTRICT_TAGS["BUILDINGS"]}


def wind_boundaries(data: dolfinx.io.gmsh.MeshData, direction) -> dolfinx.io.gmsh.MeshData:
    """The district's ``OUTER`` circle split for a wind blowing along ``direction`` (a 2-vector,
    any length; ``(1, 0)`` blows toward the east): ``INFLOW`` where the wind enters
    (``direction · n < 0`` at the facet's midpoint, ``n`` the circle's outward normal) and
    ``OUTFLOW`` elsewhere on it (:data:`WIND_TAGS`). Returns a copy of ``data`` with the new
    facet tags and physical groups, for ``potential_flow(..., inflow="INFLOW",
    outflow="OUTFLOW")`` and ``Transport(..., dirichlet={"INFLOW": c_background})``.
    On a :func:`~deepnum_fem.geometry.district_domain_3d` mesh the side wall is split alike, by
    the facets' horizontal position (the wind is horizontal), and ``GROUND`` and ``TOP`` stay.
    Collective only in that every rank tags its own facets."""
    d = np.asarray(direction, dtype=np.float64).reshape(-1)
    if d.shape != (2,) or not np.all(np.isfinite(d)) or not np.any(d):
        raise ValueError(f"wind_boundaries: a non-zero 2-vector direction expected, got {direction!r}")
    if "OUTER" not in data.physical_groups:
        raise ValueError("wind_boundaries: the mesh has no OUTER boundary (it is not a district_domain, or it "
                         "was split already: split the original for another direction)")
    mesh, tags = data.mesh, data.facet_tags
    fdim = mesh.topology.dim - 1
    outer = tags.find(DISTRICT_TAGS["OUTER"])
    mid = dolfinx.mesh.compute_midpoints(mesh, fdim, outer)[:, :2]
    values = tags.values.copy()
    positions = np.searchsorted(tags.indices, outer)
    values[positions] = np.where(mid @ d < 0, WIND_TAGS["INFLOW"], WIND_TAGS["OUTFLOW"])
    facet_tags = dolfinx.mesh.meshtags(mesh, fdim, tags.indices, values.astype(np.int32))
    facet_tags.name = tags.name
    groups = {name: g for name, g in data.physical_groups.items() if name != "OUTER"}
    groups.update({name: dolfinx.io.gmsh.PhysicalGroup(dim=fdim, tag=tag) for name, tag in WIND_TAGS.items()
                   if name != "BUILDINGS"})
    return data._replace(facet_tags=facet_tags, physical_groups=groups)
