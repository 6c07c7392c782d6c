"""Coastal seas: a coastline polygon with islands, tagged LAND/OPEN_SEA and graded toward the
land, in metres or projected from longitude/latitude; the bundled bay's polygons."""

from __future__ import annotations

import math
import numbers

from mpi4py import MPI

import dolfinx.io.gmsh
import numpy as np

from deepnum_fem.geometry.gmsh_model import from_gmsh_model, gmsh_session, graded_size_field, uniform_size
from deepnum_fem.geometry.polygons import as_points, as_polygon, first_crossing, inside

__all__ = ["BAY_COASTLINE", "BAY_ISLANDS", "BAY_OPEN_SEA", "COAST_CELL_TAGS", "COAST_TAGS", "EARTH_RADIUS",
           "check_coast", "coastal_domain", "coastal_model", "lonlat_to_xy"]

#: Facet tags of :func:`coastal_domain` (physical group name -> tag): ``LAND`` is the coast and
#: the islands' shores, ``OPEN_SEA`` the open-sea edges of the coastline polygon.
COAST_TAGS = {"LAND": 1, "OPEN_SEA": 2}
#: Cell tags of :func:`coastal_domain`.
COAST_CELL_TAGS = {"WATER": 1}
#: Mean Earth radius (m) of the equirectangular projection of :func:`lonlat_to_xy`.
EARTH_RADIUS = 6_371_000.0
#: The bundled idealised bay (``meshes/coast.msh``), metres, x east and y north: the water inside
#: [0, 20000] x [0, 12000], counter-clockwise from the south end of the mouth. Edge 0, the
#: straight segment x = 20000 from y = 1500 to 11000 (9.5 km), is the open sea
#: (:data:`BAY_OPEN_SEA`); the rest is an irregular coast with its head at x = 0 and two headlands
#: narrowing the bay, the northern one at (14000, 9200), the southern one at (11000, 3400).
BAY_COASTLINE = (
    (20000.0, 1500.0), (20000.0, 11000.0), (17000.0, 11700.0), (15000.0, 10600.0), (14000.0, 9200.0),
    (12600.0, 10400.0), (10000.0, 11600.0), (7000.0, 12000.0), (4500.0, 11000.0), (2000.0, 10200.0),
    (700.0, 8200.0), (0.0, 6000.0), (1500.0, 4300.0), (800.0, 2500.0), (2600.0, 900.0), (5500.0, 200.0),
    (8000.0, 900.0), (9800.0, 2500.0), (11000.0, 3400.0), (12200.0, 2200.0), (14500.0, 500.0),
    (17500.0, 0.0),
)
#: Open-sea edges of :data:`BAY_COASTLINE` (edge k joins point k to point k + 1).
BAY_OPEN_SEA = (0,)
#: The island of the bundled bay (one hexagon, about 3 km x 2.5 km, area 5.605 km²), as ``islands``.
BAY_ISLANDS = (
    ((7200.0, 5600.0), (8800.0, 5200.0), (10100.0, 6000.0), (9700.0, 7300.0), (8000.0, 7700.0),
     (6900.0, 6800.0)),
)


def lonlat_to_xy(lonlat, origin) -> np.ndarray:
    """Local plane coordinates (m) of longitude/latitude points (degrees), shape ``(n, 2)``.

    Equirectangular projection about ``origin = (lon0, lat0)`` (degrees):
    ``x = R cos(lat0) (lon - lon0)``, ``y = R (lat - lat0)`` with angles in radians and
    ``R`` = :data:`EARTH_RADIUS`; longitude differences are wrapped to [-180, 180). Distances are
    accurate to about 0.1 % within ~50 km of the origin, less further away.

    Raises:
        ValueError: for points not of shape ``(n, 2)``, non-finite values, latitudes outside
            [-90, 90] or an origin latitude not in (-90, 90).
    """
    points = as_points(lonlat, "lon/lat points")
    lon0, lat0 = as_points([origin], "origin (lon0, lat0)")[0]
    if not -90 < lat0 < 90:
        raise ValueError(f"expected an origin latitude in (-90, 90) degrees, got {lat0}")
    if np.abs(points[:, 1]).max(initial=0.0) > 90:
        raise ValueError(f"expected latitudes in [-90, 90] degrees, got {points[:, 1].min()} ... {points[:, 1].max()}")
    dlon = (points[:, 0] - lon0 + 180.0) % 360.0 - 180.0
    return np.column_stack([EARTH_RADIUS * math.cos(math.radians(lat0)) * np.radians(dlon),
                            EARTH_RADIUS * np.radians(points[:, 1] - lat0)])


def coastal_domain(coastline, open_sea, *, islands=(), h: float = 500.0, h_coast: float | None = None,
                   grading_distance: float | None = None, lonlat: bool = False, origin=None,
                   comm: MPI.Comm = MPI.COMM_WORLD) -> dolfinx.io.gmsh.MeshData:
    """A 2D coastal sea: the polygon ``coastline`` minus the ``islands``, triangulated by gmsh.

    Tags, with physical-group names (:data:`COAST_TAGS`, :data:`COAST_CELL_TAGS`): cells
    ``WATER`` 1; facets ``LAND`` 1 (the coastline's edges not in ``open_sea`` and all island
    shores), ``OPEN_SEA`` 2 (the ``open_sea`` edges; no such group when ``open_sea`` is empty).

    Args:
        coastline: The closed polyline bounding the water, ``(x, y)`` points in metres (in
            degrees with ``lonlat``), either orientation; a last point repeating the first is
            dropped. Edge ``k`` joins point ``k`` to point ``(k + 1) % n``.
        open_sea: Index ``k`` or indices of the coastline edges that are open sea (``[]``: a
            closed basin); the other edges are land.
        islands: Closed polylines strictly inside the coastline and pairwise disjoint: holes,
            their shores tagged ``LAND``.
        h: Mesh size (m) offshore. The default suits domains of about 10-50 km (the bundled
            bay, :data:`BAY_COASTLINE`).
        h_coast: Mesh size (m) at the ``LAND`` curves, default ``h / 4``; it grows linearly
            to ``h`` at ``grading_distance`` from them (gmsh Distance + Threshold fields).
            Uniform ``h`` when there is no land.
        grading_distance: Distance (m) from the land at which the size reaches ``h``, default
            ``4 h``.
        lonlat: The points are (longitude, latitude) in degrees: they are projected to local
            metres by :func:`lonlat_to_xy` about ``origin`` (equirectangular; fine for a
            regional domain, not for an ocean basin). ``h``, ``h_coast`` and
            ``grading_distance`` stay in metres.
        origin: ``(lon0, lat0)`` in degrees, required with ``lonlat``; project bathymetry
            samples with the same origin.
        comm: Communicator of the mesh (gmsh runs on rank 0).

    Deterministic for given arguments (gmsh built-in kernel, Frontal-Delaunay, one thread). The
    polygons are meshed exactly: the area is the coastline polygon's minus the islands'.

    Raises:
        ValueError: for ``h <= 0``, ``h_coast`` not in (0, h], ``grading_distance <= 0``,
            polygons with fewer than 3 distinct points, repeated points, zero area or
            self-intersections, islands not strictly inside the coastline or touching one
            another, open-sea indices that are not distinct edge indices, or ``lonlat``
            without ``origin``.
    """
    rings, open_sea, h_coast, grading_distance = check_coast(
        coastline, open_sea, islands, h, h_coast, grading_distance, lonlat, origin)
    with gmsh_session("coastal_domain", comm) as gmsh:
        if comm.rank == 0:
            coastal_model(gmsh, rings, open_sea, h, h_coast, grading_distance)
        return from_gmsh_model(gmsh.model, comm, gdim=2)


def check_coast(coastline, open_sea, islands, h, h_coast, grading_distance, lonlat, origin):
    """Validate the :func:`coastal_domain` arguments (every rank alike).

    Returns the polygons in metres (coastline first, then the islands), the open-sea edge indices
    (sorted tuple), ``h_coast`` and ``grading_distance``.
    """
    if not (isinstance(h, numbers.Real) and math.isfinite(h) and h > 0):
        raise ValueError(f"expected a mesh size h > 0 (m), got {h!r}")
    h_coast = h / 4 if h_coast is None else h_coast
    if not 0 < h_coast <= h:
        raise ValueError(f"expected a coastal mesh size 0 < h_coast <= h = {h} (m), got {h_coast}")
    grading_distance = 4 * h if grading_distance is None else grading_distance
    if not (math.isfinite(grading_distance) and grading_distance > 0):
        raise ValueError(f"expected a grading distance > 0 (m), got {grading_distance}")

    rings = [as_polygon(coastline, "the coastline")]
    try:
        islands = list(islands)
    except TypeError:
        raise ValueError(f"expected islands as a sequence of closed polylines, got {islands!r}") from None
    rings += [as_polygon(island, f"island {k}") for k, island in enumerate(islands)]
    if lonlat:
        if origin is None:
            raise ValueError("expected origin=(lon0, lat0) in degrees with lonlat=True, got None")
        rings = [as_polygon(lonlat_to_xy(ring, origin), name)
                 for ring, name in zip(rings, ["the coastline", *(f"island {k}" for k in range(len(islands)))],
                                       strict=True)]
    elif origin is not None:
        raise ValueError(f"expected origin only with lonlat=True, got origin={origin!r} and lonlat=False")

    n = len(rings[0])
    indices = [open_sea] if isinstance(open_sea, int) and not isinstance(open_sea, bool) else open_sea
    try:
        indices = list(indices)
    except TypeError:
        raise ValueError(f"expected open_sea as a coastline edge index or a list of them, got {open_sea!r}") from None
    if not all(isinstance(k, int | np.integer) and not isinstance(k, bool) and 0 <= k < n for k in indices) \
            or len(set(indices)) != len(indices):
        raise ValueError(f"expected open_sea as distinct coastline edge indices k in 0..{n - 1} (edge k joins "
                         f"point k to point (k + 1) % {n}), got {open_sea!r}")

    def name(ring: int, edge: int) -> str:
        points = rings[ring][[edge, (edge + 1) % len(rings[ring])]].tolist()
        return f"{'the coastline' if ring == 0 else f'island {ring - 1}'} edge {edge} {points}"

    crossing = first_crossing(rings)
    if crossing is not None:
        (ra, ea), (rb, eb) = crossing
        if ra == rb:
            expected = f"a simple polygon for {'the coastline' if ra == 0 else f'island {ra - 1}'}"
        elif ra == 0:
            expected = "islands strictly inside the coastline"
        else:
            expected = "disjoint islands"
        raise ValueError(f"expected {expected} (no edges crossing or touching), got {name(ra, ea)} "
                         f"crossing or touching {name(rb, eb)}")
    for k, island in enumerate(rings[1:]):
        if not inside(island[:1], rings[0])[0]:
            raise ValueError(f"expected island {k} inside the coastline, got it outside (its point "
                             f"{island[0].tolist()} is not inside the coastline polygon)")
        for j, other in enumerate(rings[1:]):
            if j != k and inside(island[:1], other)[0]:
                raise ValueError(f"expected disjoint islands, got island {k} inside island {j}")
    return rings, tuple(sorted(int(k) for k in indices)), float(h_coast), float(grading_distance)


def coastal_model(gmsh, rings: list[np.ndarray], open_sea: tuple[int, ...], h: float, h_coast: float,
                   grading_distance: float) -> None:
    """Build and mesh the :func:`coastal_domain` geometry in gmsh's current model (rank 0 only)."""
    geo = gmsh.model.geo
    loops, groups = [], {"LAND": [], "OPEN_SEA": []}
    for r, ring in enumerate(rings):
        points = [geo.addPoint(float(x), float(y), 0.0) for x, y in ring]
        lines = [geo.addLine(points[k], points[(k + 1) % len(points)]) for k in range(len(points))]
        for k, line in enumerate(lines):
            groups["OPEN_SEA" if r == 0 and k in open_sea else "LAND"].append(line)
        loops.append(geo.addCurveLoop(lines))
    water = geo.addPlaneSurface(loops)
    geo.synchronize()
    gmsh.model.addPhysicalGroup(2, [water], COAST_CELL_TAGS["WATER"], name="WATER")
    for name, lines in groups.items():
        if lines:
            gmsh.model.addPhysicalGroup(1, lines, COAST_TAGS[name], name=name)
    if groups["LAND"]:
        graded_size_field(gmsh, 1, groups["LAND"], h, h_coast, grading_distance)
    else:
        uniform_size(gmsh, h)
    gmsh.option.setNumber("Mesh.Algorithm", 6)   # Frontal-Delaunay
    gmsh.model.mesh.generate(2)

