"""Meshes from gmsh: generators for the demos, built on rank 0 and distributed."""

from __future__ import annotations

import contextlib
import math
import numbers
import tempfile
from pathlib import Path

from mpi4py import MPI

import dolfinx.io.gmsh
import dolfinx.mesh
import numpy as np

__all__ = [
    "BAY_COASTLINE",
    "BAY_ISLANDS",
    "BAY_OPEN_SEA",
    "CITY_BUILDINGS",
    "CITY_BUILDING_HEIGHTS",
    "CITY_CELL_TAGS",
    "CITY_TAGS",
    "CITY_TAGS_3D",
    "COAST_CELL_TAGS",
    "COAST_TAGS",
    "EARTH_RADIUS",
    "LV_CELL_TAGS",
    "LV_DIMENSIONS",
    "LV_TAGS",
    "box_with_cavity",
    "city_blocks",
    "city_blocks_3d",
    "coastal_domain",
    "from_gmsh_model",
    "left_ventricle",
    "left_ventricle_volume",
    "lonlat_to_xy",
    "plate_with_holes",
    "write_msh",
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


def write_msh(gmsh, path: Path) -> dict:
    """Write gmsh's current model (rank 0's) to ``path`` as MSH 4.1, only the elements of
    physical groups, in ASCII or binary, whichever is smaller (both are deterministic).

    Returns what a provenance record needs: ``binary``, ``vertices``, element ``counts`` per
    physical-group name, ``megabytes``.
    """
    path = Path(path)
    gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
    gmsh.option.setNumber("Mesh.SaveAll", 0)
    with tempfile.TemporaryDirectory() as tmp:
        candidates = []
        for binary in (0, 1):
            gmsh.option.setNumber("Mesh.Binary", binary)
            candidates.append(Path(tmp) / f"mesh{binary}.msh")
            gmsh.write(str(candidates[-1]))
        best = min(candidates, key=lambda p: p.stat().st_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(best.read_bytes())
    counts = {gmsh.model.getPhysicalName(dim, tag): sum(gmsh.model.mesh.getElements(dim, e)[1][0].size
                                                        for e in gmsh.model.getEntitiesForPhysicalGroup(dim, tag))
              for dim, tag in gmsh.model.getPhysicalGroups()}
    return {"binary": best.name == "mesh1.msh", "vertices": int(gmsh.model.mesh.getNodes()[0].size),
            "counts": counts, "megabytes": path.stat().st_size / 1e6}


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
    h_near = _check_city(h, h_near, length, width, buildings, h_near_default=h / 3)
    with _model("city_blocks", comm) as gmsh:
        if comm.rank == 0:
            _city_blocks_model(gmsh, h, h_near, length, width, buildings)
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
    h_near = _check_city(h, h_near, length, width, buildings, h_near_default=h / 2)
    heights = [float(z) for z in building_heights]
    if len(heights) != len(buildings):
        raise ValueError(f"expected one building height per building ({len(buildings)}), "
                         f"got {len(heights)}: {heights}")
    if not height > 0 or not all(0 < z < height for z in heights):
        raise ValueError(f"expected building heights in (0, height={height}) m, got {heights}")
    with _model("city_blocks_3d", comm) as gmsh:
        if comm.rank == 0:
            _city_blocks_3d_model(gmsh, h, h_near, length, width, height, buildings, heights)
        return from_gmsh_model(gmsh.model, comm, gdim=3)


def _check_city(h, h_near, length, width, buildings, *, h_near_default: float) -> float:
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


def _city_size_field(gmsh, dim: int, walls: list[int], h: float, h_near: float, dist_max: float) -> None:
    """Mesh size ``h_near`` on the ``walls`` (entities of dimension ``dim``) growing to ``h`` at ``dist_max``."""
    field = gmsh.model.mesh.field
    distance = field.add("Distance")
    field.setNumbers(distance, "CurvesList" if dim == 1 else "SurfacesList", walls)
    boxes = [gmsh.model.getBoundingBox(dim, w) for w in walls]
    longest = max(b[k + 3] - b[k] for b in boxes for k in range(3))
    field.setNumber(distance, "Sampling", math.ceil(2 * longest / h_near) + 1)
    threshold = field.add("Threshold")
    field.setNumber(threshold, "InField", distance)
    field.setNumber(threshold, "SizeMin", h_near)
    field.setNumber(threshold, "SizeMax", h)
    field.setNumber(threshold, "DistMin", 0.0)
    field.setNumber(threshold, "DistMax", dist_max)
    field.setAsBackgroundMesh(threshold)
    # gmsh's advice when the size comes from fields alone.
    gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
    gmsh.option.setNumber("Mesh.MeshSizeMax", h)


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


def _city_blocks_model(gmsh, h: float, h_near: float, length: float, width: float, buildings) -> None:
    """Build and mesh the :func:`city_blocks` geometry in gmsh's current model (rank 0 only)."""
    occ = gmsh.model.occ
    holes = [(2, occ.addRectangle(x0, y0, 0, x1 - x0, y1 - y0)) for x0, y0, x1, y1 in buildings]
    air, _ = occ.cut([(2, occ.addRectangle(0, 0, 0, length, width))], holes)
    occ.synchronize()
    groups = _tag_city(gmsh, 2, [t for _, t in air], length, width, None)
    _city_size_field(gmsh, 1, groups["BUILDINGS"], h, h_near, 3 * h)
    gmsh.option.setNumber("Mesh.Algorithm", 6)   # Frontal-Delaunay
    gmsh.model.mesh.generate(2)


def _city_blocks_3d_model(gmsh, h: float, h_near: float, length: float, width: float, height: float,
                          buildings, heights) -> None:
    """Build and mesh the :func:`city_blocks_3d` geometry in gmsh's current model (rank 0 only)."""
    occ = gmsh.model.occ
    blocks = [(3, occ.addBox(x0, y0, 0, x1 - x0, y1 - y0, z))
              for (x0, y0, x1, y1), z in zip(buildings, heights, strict=True)]
    air, _ = occ.cut([(3, occ.addBox(0, 0, 0, length, width, height))], blocks)
    occ.synchronize()
    groups = _tag_city(gmsh, 3, [t for _, t in air], length, width, height)
    _city_size_field(gmsh, 2, groups["BUILDINGS"], h, h_near, 2 * h)
    gmsh.option.setNumber("Mesh.Algorithm", 5)     # Delaunay surfaces
    gmsh.option.setNumber("Mesh.Algorithm3D", 1)   # Delaunay volume
    gmsh.model.mesh.generate(3)


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
    points = _as_points(lonlat, "lon/lat points")
    lon0, lat0 = _as_points([origin], "origin (lon0, lat0)")[0]
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
    rings, open_sea, h_coast, grading_distance = _check_coast(
        coastline, open_sea, islands, h, h_coast, grading_distance, lonlat, origin)
    with _model("coastal_domain", comm) as gmsh:
        if comm.rank == 0:
            _coastal_model(gmsh, rings, open_sea, h, h_coast, grading_distance)
        return from_gmsh_model(gmsh.model, comm, gdim=2)


def _as_points(points, what: str) -> np.ndarray:
    """``points`` as a finite float array of shape ``(n, 2)``; ValueError naming ``what`` otherwise."""
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"expected {what} as an (n, 2) array of numbers, got {points!r} ({e})") from None
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"expected {what} as an (n, 2) array of (x, y) points, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = np.flatnonzero(~np.all(np.isfinite(array), axis=1))
        raise ValueError(f"expected finite coordinates in {what}, got {array[bad[0]].tolist()} at point {bad[0]}")
    return array


def _polygon(points, what: str) -> np.ndarray:
    """A validated polygon ``(n, 2)``: >= 3 points, no repeated point, not all collinear (not yet simple)."""
    ring = _as_points(points, what)
    if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
        ring = ring[:-1]   # explicitly closed
    if len(ring) < 3:
        raise ValueError(f"expected {what} as a closed polyline of at least 3 distinct points, got {len(ring)}")
    _, first, counts = np.unique(ring, axis=0, return_index=True, return_counts=True)
    if np.any(counts > 1):
        k = first[np.argmax(counts > 1)]
        raise ValueError(f"expected distinct points in {what}, got {ring[k].tolist()} (point {k}) "
                         f"{counts.max()} times")
    d = ring - ring[0]
    far = d[np.argmax((d * d).sum(axis=1))]
    if np.abs(d[:, 0] * far[1] - d[:, 1] * far[0]).max() <= 1e-12 * (far @ far):
        raise ValueError(f"expected {what} to enclose a non-zero area, got collinear points {ring.tolist()}")
    return ring


def _signed_area(ring: np.ndarray) -> float:
    """Shoelace area of a polygon ``(n, 2)``: positive when counter-clockwise."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(x @ np.roll(y, -1) - y @ np.roll(x, -1))


def _inside(points: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Whether each of ``points`` ``(m, 2)`` is inside the polygon ``ring`` (even-odd rule)."""
    a, b = ring, np.roll(ring, -1, axis=0)
    x, y = points[:, None, 0], points[:, None, 1]
    straddles = (a[:, 1] > y) != (b[:, 1] > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
    return np.count_nonzero(straddles & (x < x_cross), axis=1) % 2 == 1


def _first_crossing(rings: list[np.ndarray]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The first pair of edges ``((ring, edge), (ring, edge))`` that cross, touch or overlap; None if none.

    Edges adjacent in a ring share a vertex and only count when they fold back onto each other.
    """
    starts = np.concatenate(rings)
    ends = np.concatenate([np.roll(r, -1, axis=0) for r in rings])
    ring_of = np.concatenate([np.full(len(r), i) for i, r in enumerate(rings)])
    edge_of = np.concatenate([np.arange(len(r)) for r in rings])
    size_of = np.array([len(r) for r in rings])[ring_of]

    def orient(p, q, r):   # sign of the cross product (q - p) x (r - p)
        return np.sign((q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1])
                       - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0]))

    m = len(starts)
    chunk = max(1, 2_000_000 // m)
    for i0 in range(0, m, chunk):
        i = np.arange(i0, min(i0 + chunk, m))[:, None]
        p1, q1, p2, q2 = starts[i], ends[i], starts[None, :], ends[None, :]
        o1, o2, o3, o4 = orient(p1, q1, p2), orient(p1, q1, q2), orient(p2, q2, p1), orient(p2, q2, q1)
        collinear = (o1 == 0) & (o2 == 0)
        lo1, hi1 = np.minimum(p1, q1), np.maximum(p1, q1)
        lo2, hi2 = np.minimum(p2, q2), np.maximum(p2, q2)
        boxes = np.all((np.maximum(lo1, lo2) <= np.minimum(hi1, hi2)), axis=-1)
        hit = np.where(collinear, boxes, (o1 * o2 <= 0) & (o3 * o4 <= 0))
        same = ring_of[i] == ring_of[None, :]
        step = (edge_of[None, :] - edge_of[i]) % size_of[i]
        adjacent = same & ((step == 1) | (step == size_of[i] - 1))
        # Adjacent edges e -> e + 1 share a vertex: they overlap only if collinear and folding back.
        fold = adjacent & collinear & (np.sum((q1 - p1) * (q2 - p2), axis=-1) < 0)
        hit = np.where(adjacent, fold, hit) & (np.arange(m)[None, :] > i)
        if np.any(hit):
            a, b = np.argwhere(hit)[0]
            a += i0
            return (int(ring_of[a]), int(edge_of[a])), (int(ring_of[b]), int(edge_of[b]))
    return None


def _check_coast(coastline, open_sea, islands, h, h_coast, grading_distance, lonlat, origin):
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

    rings = [_polygon(coastline, "the coastline")]
    try:
        islands = list(islands)
    except TypeError:
        raise ValueError(f"expected islands as a sequence of closed polylines, got {islands!r}") from None
    rings += [_polygon(island, f"island {k}") for k, island in enumerate(islands)]
    if lonlat:
        if origin is None:
            raise ValueError("expected origin=(lon0, lat0) in degrees with lonlat=True, got None")
        rings = [_polygon(lonlat_to_xy(ring, origin), name)
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

    crossing = _first_crossing(rings)
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
        if not _inside(island[:1], rings[0])[0]:
            raise ValueError(f"expected island {k} inside the coastline, got it outside (its point "
                             f"{island[0].tolist()} is not inside the coastline polygon)")
        for j, other in enumerate(rings[1:]):
            if j != k and _inside(island[:1], other)[0]:
                raise ValueError(f"expected disjoint islands, got island {k} inside island {j}")
    return rings, tuple(sorted(int(k) for k in indices)), float(h_coast), float(grading_distance)


def _coastal_model(gmsh, rings: list[np.ndarray], open_sea: tuple[int, ...], h: float, h_coast: float,
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
        _city_size_field(gmsh, 1, groups["LAND"], h, h_coast, grading_distance)
    else:
        _uniform_size(gmsh, h)
    gmsh.option.setNumber("Mesh.Algorithm", 6)   # Frontal-Delaunay
    gmsh.model.mesh.generate(2)
