"""City blocks for pollutant transport: the street level (2D) or the air above the ground (3D)
around rectangular buildings, tagged INFLOW/OUTFLOW/SIDES/BUILDINGS (3D: also GROUND/TOP) and
refined at the walls."""

from __future__ import annotations

from mpi4py import MPI

import dolfinx.io.gmsh

from deepnum_fem.geometry.gmsh_model import from_gmsh_model, gmsh_session, graded_size_field

__all__ = ["CITY_BUILDINGS", "CITY_BUILDING_HEIGHTS", "CITY_CELL_TAGS", "CITY_TAGS", "CITY_TAGS_3D", "check_city",
           "city_blocks", "city_blocks_3d", "city_blocks_3d_model", "city_blocks_model"]

#: Facet tags of :func:`city_blocks` (physical group name -> tag); :func:`city_blocks_3d` adds
#: ``GROUND`` and ``TOP``. ``SIDES`` are the two lateral walls y = 0 and y = width.
CITY_TAGS = {"INFLOW": 1, "OUTFLOW": 2, "SIDES": 3, "BUILDINGS": 4}
#: Facet tags of :func:`city_blocks_3d`.
CITY_TAGS_3D = {**CITY_TAGS, "GROUND": 5, "TOP": 6}
#: Cell tags of :func:`city_blocks` and :func:`city_blocks_3d`.
CITY_CELL_TAGS = {"AIR": 1}
#: Default buildings ``(x0, y0, x1, y1)`` in metres inside [0, 400] x [0, 240]: a street-canyon
#: layout of 3 columns x 2 rows of blocks 40-70 m on a side. The canyon along the wind
#: (between the rows, y = 108...136) and the cross streets (x = 150...184, 234...262) are 22-26 m
#: wide; 96 m of open ground upwind, 70 m downwind, at least 50 m to the lateral walls.
CITY_BUILDINGS = (
    (100.0, 60.0, 160.0, 112.0),
    (184.0, 56.0, 234.0, 110.0),
    (260.0, 64.0, 330.0, 108.0),
    (96.0, 136.0, 150.0, 184.0),
    (176.0, 134.0, 240.0, 190.0),
    (262.0, 132.0, 320.0, 176.0),
)
#: Default heights (m) of the :data:`CITY_BUILDINGS` in :func:`city_blocks_3d`.
CITY_BUILDING_HEIGHTS = (24.0, 36.0, 18.0, 30.0, 45.0, 21.0)


def city_blocks(h: float = 8.0, *, length: float = 400.0, width: float = 240.0,
                buildings=CITY_BUILDINGS, h_near: float | None = None,
                comm: MPI.Comm = MPI.COMM_WORLD) -> dolfinx.io.gmsh.MeshData:
    """A 2D city block for pollutant transport: the street level of [0, length] x [0, width] (m).

    The rectangle minus the ``buildings`` (holes, ``(x0, y0, x1, y1)`` in metres, default
    :data:`CITY_BUILDINGS`), triangulated by gmsh. The wind blows along +x: it enters at x = 0
    and leaves at x = length.

    Tags, with physical-group names (:data:`CITY_TAGS`, :data:`CITY_CELL_TAGS`): cells ``AIR`` 1;
    facets ``INFLOW`` 1 (x = 0), ``OUTFLOW`` 2 (x = length), ``SIDES`` 3 (y = 0 and y = width),
    ``BUILDINGS`` 4 (all building walls).

    Args:
        h: Mesh size (m) away from the buildings.
        length, width: Size (m) of the domain along and across the wind.
        buildings: Axis-aligned rectangles strictly inside the domain, pairwise disjoint
            (not touching).
        h_near: Mesh size (m) at the building walls, default ``h / 3``; it grows linearly to
            ``h`` at a distance of ``3 h`` from the walls (gmsh Distance + Threshold fields).
        comm: Communicator of the mesh (gmsh runs on rank 0).

    Deterministic for given arguments (Frontal-Delaunay, one thread). The polygonal boundary is
    meshed exactly: the area is ``length * width`` minus the buildings' areas.

    Raises:
        ValueError: for ``h <= 0``, ``h_near`` not in (0, h], or buildings that are degenerate,
            not strictly inside the domain, or overlapping/touching one another.
    """
    h_near = check_city(h, h_near, length, width, buildings, h_near_default=h / 3)
    with gmsh_session("city_blocks", comm) as gmsh:
        if comm.rank == 0:
            city_blocks_model(gmsh, h, h_near, length, width, buildings)
        return from_gmsh_model(gmsh.model, comm, gdim=2)


def city_blocks_3d(h: float = 20.0, *, length: float = 400.0, width: float = 240.0, height: float = 100.0,
                   buildings=CITY_BUILDINGS, building_heights=CITY_BUILDING_HEIGHTS, h_near: float | None = None,
                   comm: MPI.Comm = MPI.COMM_WORLD) -> dolfinx.io.gmsh.MeshData:
    """The 3D city block: the box [0, length] x [0, width] x [0, height] (m) minus the buildings.

    Building ``i`` is the box ``buildings[i]`` x [0, ``building_heights[i]``] standing on the
    ground z = 0 (defaults :data:`CITY_BUILDINGS`, :data:`CITY_BUILDING_HEIGHTS`). Tetrahedra;
    the default coarse ``h`` meshes in about a second.

    Tags (:data:`CITY_TAGS_3D`, :data:`CITY_CELL_TAGS`): cells ``AIR`` 1; facets ``INFLOW`` 1
    (x = 0), ``OUTFLOW`` 2 (x = length), ``SIDES`` 3 (y = 0 and y = width), ``BUILDINGS`` 4
    (walls and roofs), ``GROUND`` 5 (z = 0 between the buildings), ``TOP`` 6 (z = height).

    Args:
        h: Mesh size (m) away from the buildings.
        length, width, height: Size (m) of the box.
        buildings: Footprints ``(x0, y0, x1, y1)``, as for :func:`city_blocks`.
        building_heights: One height (m) per building, in (0, height).
        h_near: Mesh size (m) at the building walls and roofs, default ``h / 2``; it grows to
            ``h`` at a distance of ``2 h``.
        comm: Communicator of the mesh (gmsh runs on rank 0).

    Deterministic for given arguments (Delaunay surfaces and volume, one thread).

    Raises:
        ValueError: as :func:`city_blocks`, and for building heights not in (0, height) or not
            one per building.
    """
    h_near = check_city(h, h_near, length, width, buildings, h_near_default=h / 2)
    heights = [float(z) for z in building_heights]
    if len(heights) != len(buildings):
        raise ValueError(f"expected one building height per building ({len(buildings)}), "
                         f"got {len(heights)}: {heights}")
    if not height > 0 or not all(0 < z < height for z in heights):
        raise ValueError(f"expected building heights in (0, height={height}) m, got {heights}")
    with gmsh_session("city_blocks_3d", comm) as gmsh:
        if comm.rank == 0:
            city_blocks_3d_model(gmsh, h, h_near, length, width, height, buildings, heights)
        return from_gmsh_model(gmsh.model, comm, gdim=3)


def check_city(h, h_near, length, width, buildings, *, h_near_default: float) -> float:
    """Validate the :func:`city_blocks` arguments (every rank alike); the mesh size at the walls."""
    if not h > 0:
        raise ValueError(f"expected a mesh size h > 0 (m), got {h}")
    h_near = h_near_default if h_near is None else h_near
    if not 0 < h_near <= h:
        raise ValueError(f"expected a wall mesh size 0 < h_near <= h = {h} (m), got {h_near}")
    if not (length > 0 and width > 0):
        raise ValueError(f"expected a domain length > 0 and width > 0 (m), got {length} x {width}")
    boxes = []
    for i, b in enumerate(buildings):
        if len(b) != 4:
            raise ValueError(f"expected building {i} as (x0, y0, x1, y1), got {b!r}")
        x0, y0, x1, y1 = (float(c) for c in b)
        if not (0 < x0 < x1 < length and 0 < y0 < y1 < width):
            raise ValueError(f"expected building {i} = (x0, y0, x1, y1) with 0 < x0 < x1 < {length} and "
                             f"0 < y0 < y1 < {width} (strictly inside the domain), got {tuple(b)}")
        boxes.append((x0, y0, x1, y1))
    for i, a in enumerate(boxes):
        for j in range(i):
            b = boxes[j]
            if a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]:
                raise ValueError(f"expected disjoint buildings (a street between any two), got "
                                 f"building {j} = {b} and building {i} = {a} overlapping or touching")
    if not boxes:
        raise ValueError("expected at least one building, got none")
    return float(h_near)


def _classify_city(centre, length: float, width: float, height: float | None) -> str:
    """The :data:`CITY_TAGS_3D` name of a boundary entity from its centre of mass."""
    x, y = centre[0], centre[1]
    tol = 1e-8 * max(length, width, height or 0.0)
    if abs(x) < tol:
        return "INFLOW"
    if abs(x - length) < tol:
        return "OUTFLOW"
    if abs(y) < tol or abs(y - width) < tol:
        return "SIDES"
    if height is not None and abs(centre[2]) < tol:
        return "GROUND"
    if height is not None and abs(centre[2] - height) < tol:
        return "TOP"
    return "BUILDINGS"


def _tag_city(gmsh, dim: int, air: list[int], length: float, width: float, height: float | None) -> dict:
    """Physical groups of the city models; ``{name: [boundary entity tags]}``."""
    names = CITY_TAGS if dim == 2 else CITY_TAGS_3D
    groups: dict[str, list[int]] = {name: [] for name in names}
    for _, tag in gmsh.model.getBoundary([(dim, t) for t in air], oriented=False):
        centre = gmsh.model.occ.getCenterOfMass(dim - 1, tag)
        groups[_classify_city(centre, length, width, height)].append(tag)
    empty = [name for name, tags in groups.items() if not tags]
    if empty:  # pragma: no cover - a change of gmsh/OCC behaviour
        raise RuntimeError(f"city_blocks: no gmsh boundary entity found for {empty}")
    gmsh.model.addPhysicalGroup(dim, air, CITY_CELL_TAGS["AIR"], name="AIR")
    for name, tags in groups.items():
        gmsh.model.addPhysicalGroup(dim - 1, sorted(tags), names[name], name=name)
    return groups


def city_blocks_model(gmsh, h: float, h_near: float, length: float, width: float, buildings) -> None:
    """Build and mesh the :func:`city_blocks` geometry in gmsh's current model (rank 0 only)."""
    occ = gmsh.model.occ
    holes = [(2, occ.addRectangle(x0, y0, 0, x1 - x0, y1 - y0)) for x0, y0, x1, y1 in buildings]
    air, _ = occ.cut([(2, occ.addRectangle(0, 0, 0, length, width))], holes)
    occ.synchronize()
    groups = _tag_city(gmsh, 2, [t for _, t in air], length, width, None)
    graded_size_field(gmsh, 1, groups["BUILDINGS"], h, h_near, 3 * h)
    gmsh.option.setNumber("Mesh.Algorithm", 6)   # Frontal-Delaunay
    gmsh.model.mesh.generate(2)


def city_blocks_3d_model(gmsh, h: float, h_near: float, length: float, width: float, height: float,
                          buildings, heights) -> None:
    """Build and mesh the :func:`city_blocks_3d` geometry in gmsh's current model (rank 0 only)."""
    occ = gmsh.model.occ
    blocks = [(3, occ.addBox(x0, y0, 0, x1 - x0, y1 - y0, z))
              for (x0, y0, x1, y1), z in zip(buildings, heights, strict=True)]
    air, _ = occ.cut([(3, occ.addBox(0, 0, 0, length, width, height))], blocks)
    occ.synchronize()
    groups = _tag_city(gmsh, 3, [t for _, t in air], length, width, height)
    graded_size_field(gmsh, 2, groups["BUILDINGS"], h, h_near, 2 * h)
    gmsh.option.setNumber("Mesh.Algorithm", 5)     # Delaunay surfaces
    gmsh.option.setNumber("Mesh.Algorithm3D", 1)   # Delaunay volume
    gmsh.model.mesh.generate(3)

