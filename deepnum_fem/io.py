"""Meshes from files: Gmsh ``.msh`` and the formats meshio reads, distributed with their tags."""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from mpi4py import MPI

import basix.ufl
import dolfinx.fem
import dolfinx.io
import dolfinx.io.gmsh
import dolfinx.mesh
import numpy as np
import ufl
from dolfinx.graph import adjacencylist
from dolfinx.io.gmsh import MeshData, PhysicalGroup

from deepnum_fem.errors import MeshError
from deepnum_fem.fem.field_files import load_functions, save_functions
from deepnum_fem.geometry import (
    BAY_COASTLINE,
    BAY_ISLANDS,
    BAY_OPEN_SEA,
    BIV_CELL_TAGS,
    BIV_TAGS,
    CITY_CELL_TAGS,
    CITY_TAGS,
    COAST_CELL_TAGS,
    COAST_TAGS,
    DISTRICT_CELL_TAGS,
    DISTRICT_TAGS,
    LV_CELL_TAGS,
    LV_TAGS,
    biventricle,
    city_blocks,
    coastal_domain,
    district_domain,
    left_ventricle,
)
from deepnum_fem.geometry.gmsh_model import gmsh_session

__all__ = ["MESH_DIR", "bundled_mesh_path", "load_biventricle", "load_brest_bay", "load_brest_bay_outline", "load_city",
           "load_coast", "load_district", "load_district_footprints", "load_functions", "save_functions",
           "load_left_ventricle", "load_mesh", "write_frames"]

#: Where the bundled meshes live (the repository's ``meshes/``; the package is installed editable).
MESH_DIR = Path(__file__).resolve().parents[1] / "meshes"
#: Mesh size (mm) of ``meshes/left_ventricle.msh``, and of the fallback when that file is absent.
BUNDLED_LV_H = 1.0
#: Mesh size (mm) of ``meshes/biventricle.msh``, and of the fallback when that file is absent.
BUNDLED_BIV_H = 1.2
#: Mesh size (m, away from the buildings) of ``meshes/city.msh``, and of the fallback when it is absent.
BUNDLED_CITY_H = 8.0
#: Offshore mesh size (m) of ``meshes/coast.msh``, and of the fallback when it is absent.
BUNDLED_COAST_H = 500.0
#: Domain radius and mesh sizes (m) of ``meshes/bubenec_district.msh``.
BUNDLED_DISTRICT = {"radius": 350.0, "h": 10.0, "h_near": 2.0}
#: Mesh sizes (m) of ``meshes/brest_bay.msh``: ``h`` offshore, ``h_coast`` at the land, reached
#: ``h`` at ``grading_distance`` from it (:func:`~deepnum_fem.geometry.coastal_domain`'s defaults for this h).
BUNDLED_BREST_BAY = {"h": 800.0, "h_coast": 200.0, "grading_distance": 3200.0}

#: Integer cell-data arrays meshio uses for tags, tried in this order when ``tag_name`` is not given.
_TAG_ARRAYS = ("gmsh:physical", "medit:ref")
#: Linear simplices: meshio name of the cells and of their facets, DOLFINx cell name, by dimension.
_SIMPLICES = {3: ("tetra", "triangle", "tetrahedron"), 2: ("triangle", "line", "triangle")}
#: gmsh element type of the linear simplices, by dimension (4-node tetrahedron, 3-node triangle).
_GMSH_SIMPLEX = {3: 4, 2: 2}
#: A cell is degenerate when its volume is at most this times (bounding-box diameter)**tdim.
_DEGENERATE_VOLUME = 1e-12


def load_mesh(path: str | Path, comm: MPI.Comm = MPI.COMM_WORLD, *, gdim: int = 3,
              required_tags: Sequence[str | int] = (), tag_name: str | None = None) -> MeshData:
    """Read a mesh file on rank 0 and distribute it over ``comm`` with its cell and facet tags.

    ``.msh`` files are read by gmsh and converted as :func:`dolfinx.io.gmsh.read_from_msh` does:
    the cells of the highest-dimensional physical groups form the mesh, lower-dimensional
    physical groups become tags. Other files (``.vtu``, ``.xdmf``, Medit ``.mesh``, ...) are read
    by meshio: the linear tetrahedra (else triangles) form the mesh, and an integer cell-data
    array (``tag_name``, else ``gmsh:physical`` or ``medit:ref``) gives the cell tags and, on
    the triangles (lines) present, the facet tags. Tag names come from meshio's ``field_data``
    (``{name: [tag, dim]}``) when the file has them.

    Args:
        path: The file, the same on every rank (only rank 0 reads it).
        comm: Communicator of the mesh.
        gdim: Geometric dimension of the mesh.
        required_tags: Physical-group names (``str``) or tag values (``int``) that must be
            present; checked before the mesh is distributed.
        tag_name: Cell-data array holding the tags in meshio formats (not used for ``.msh``).

    Returns:
        ``MeshData``; ``cell_tags`` / ``facet_tags`` are ``None`` where the file has no tags of
        that dimension.

    Raises:
        MeshError: on every rank together, when the file is missing or does not parse, has no
            triangle or tetrahedron cells, mixes cell types (mixed topology), has NaN or Inf
            coordinates or degenerate (zero-volume) simplices, has cells of higher dimension
            than ``gdim`` or points off a ``gdim``-dimensional plane, or lacks one of
            ``required_tags``; in meshio formats also when its cells are not linear simplices
            or refer to points the file does not have.
    """
    path = Path(path)
    if path.suffix.lower() == ".msh":
        if tag_name not in (None, "gmsh:physical"):
            raise ValueError(f"tag_name={tag_name!r} is for meshio formats; a .msh file is tagged by its "
                             "physical groups")
        return _load_msh(path, comm, gdim, required_tags)
    return _load_meshio(path, comm, gdim, required_tags, tag_name)


def bundled_mesh_path(name: str = "left_ventricle") -> Path:
    """Path of the bundled mesh ``meshes/<name>.msh`` (it may not exist; see ``meshes/README.md``)."""
    return MESH_DIR / f"{name}.msh"


def _bundled_or_generated(name: str, comm: MPI.Comm, *, gdim: int, required_tags: Sequence[str | int], what: str,
                          sizes: str, script: str, generate: Callable[[], MeshData]) -> MeshData:
    """The bundled mesh ``meshes/<name>.msh`` (:func:`load_mesh`); when the file is absent (rank 0
    looks, every rank follows), ``generate()`` instead, with a warning naming ``what``, its
    ``sizes`` and the ``scripts/<script>`` that writes the file again."""
    path = bundled_mesh_path(name)
    if comm.bcast(path.is_file() if comm.rank == 0 else None, root=0):
        return load_mesh(path, comm, gdim=gdim, required_tags=required_tags)
    warnings.warn(f"{path} is missing; generating {what} with gmsh ({sizes}). "
                  f"Run `python scripts/{script}` to write it.", stacklevel=3)
    return generate()


def load_left_ventricle(comm: MPI.Comm = MPI.COMM_WORLD) -> MeshData:
    """The bundled Land et al. (2015) left ventricle (``meshes/left_ventricle.msh``), distributed.

    Same geometry and tags as :func:`deepnum_fem.geometry.left_ventricle` with ``h = 1`` mm.
    When the file is absent (e.g. an installed copy without the repository) the mesh is
    generated instead with :func:`~deepnum_fem.geometry.left_ventricle` (``h = 1``, under a
    second), with a warning; ``python scripts/make_lv_mesh.py`` writes the file again.
    """
    return _bundled_or_generated("left_ventricle", comm, gdim=3, required_tags=[*LV_CELL_TAGS, *LV_TAGS],
                                 what="the left ventricle", sizes=f"h={BUNDLED_LV_H}", script="make_lv_mesh.py",
                                 generate=lambda: left_ventricle(BUNDLED_LV_H, comm))


def load_biventricle(comm: MPI.Comm = MPI.COMM_WORLD) -> MeshData:
    """The bundled idealised biventricular heart (``meshes/biventricle.msh``), distributed.

    Same geometry and tags as :func:`deepnum_fem.geometry.biventricle` with ``h = 1.2`` mm
    (:data:`BUNDLED_BIV_H`): 4,576 vertices; facets ``BASE``, ``LV_ENDO``, ``EPI``, ``RV_ENDO``
    (:data:`~deepnum_fem.geometry.BIV_TAGS`). When the file is absent the mesh is generated
    instead (a few seconds), with a warning; ``python scripts/make_biv_mesh.py`` writes the
    file again, and ``--h`` makes finer ones.
    """
    return _bundled_or_generated("biventricle", comm, gdim=3, required_tags=[*BIV_CELL_TAGS, *BIV_TAGS],
                                 what="the biventricle", sizes=f"h={BUNDLED_BIV_H}", script="make_biv_mesh.py",
                                 generate=lambda: biventricle(BUNDLED_BIV_H, comm))


def load_city(comm: MPI.Comm = MPI.COMM_WORLD) -> MeshData:
    """The bundled 2D city block (``meshes/city.msh``), distributed.

    Same geometry and tags as :func:`deepnum_fem.geometry.city_blocks` with its defaults and
    ``h = 8`` m (:data:`BUNDLED_CITY_H`; ``h / 3`` at the building walls): about 3,300 vertices.
    When the file is absent the mesh is generated instead (well under a second), with a
    warning; ``python scripts/make_city_mesh.py`` writes the file again.
    """
    return _bundled_or_generated("city", comm, gdim=2, required_tags=[*CITY_CELL_TAGS, *CITY_TAGS],
                                 what="the city block", sizes=f"h={BUNDLED_CITY_H}", script="make_city_mesh.py",
                                 generate=lambda: city_blocks(BUNDLED_CITY_H, comm=comm))


def load_coast(comm: MPI.Comm = MPI.COMM_WORLD) -> MeshData:
    """The bundled idealised bay with an island (``meshes/coast.msh``), distributed.

    Same geometry and tags as :func:`deepnum_fem.geometry.coastal_domain` of
    :data:`~deepnum_fem.geometry.BAY_COASTLINE`, :data:`~deepnum_fem.geometry.BAY_OPEN_SEA`
    and :data:`~deepnum_fem.geometry.BAY_ISLANDS` with ``h = 500`` m offshore
    (:data:`BUNDLED_COAST_H`; ``h / 4`` at the land): about 3,100 vertices. When the file is
    absent the mesh is generated instead (well under a second), with a warning;
    ``python scripts/make_coast_mesh.py`` writes the file again.
    """
    return _bundled_or_generated("coast", comm, gdim=2, required_tags=[*COAST_CELL_TAGS, *COAST_TAGS],
                                 what="the bay", sizes=f"h={BUNDLED_COAST_H}", script="make_coast_mesh.py",
                                 generate=lambda: coastal_domain(
                                     BAY_COASTLINE, BAY_OPEN_SEA, islands=BAY_ISLANDS, h=BUNDLED_COAST_H, comm=comm))


def load_district_footprints() -> dict:
    """The bundled Prague-Bubeneč district (``meshes/bubenec_district.json``, extracted from
    momepy's dataset by ``scripts/make_district_mesh.py``; provenance in ``meshes/README.md``).

    Returns:
        ``buildings``: the merged footprints, each an ``(n, 2)`` array (metres, counter-clockwise,
        about the district's centre); ``streets``: the street centrelines, ``(m, 2)`` arrays;
        ``radius``: of the bundled mesh's circular domain; and the file's ``provenance`` (source,
        licence, projection, processing).
    """
    record = json.loads(bundled_mesh_path("bubenec_district").with_suffix(".json").read_text(encoding="utf-8"))
    return {"buildings": [np.array(b, dtype=np.float64) for b in record["buildings"]],
            "streets": [np.array(s, dtype=np.float64) for s in record["streets"]],
            "radius": float(record["mesh"]["radius"]),
            "provenance": {k: v for k, v in record.items() if k not in ("buildings", "streets")}}


def load_district(comm: MPI.Comm = MPI.COMM_WORLD) -> MeshData:
    """The bundled street space of Prague-Bubeneč (``meshes/bubenec_district.msh``), distributed.

    :func:`deepnum_fem.geometry.district_domain` of :func:`load_district_footprints` with
    :data:`BUNDLED_DISTRICT` (a 350 m circle, h = 10 m, 2 m at the walls). Tags: cells ``AIR``;
    facets ``OUTER`` (the circle) and ``BUILDINGS``. When the file is absent the mesh is
    generated from the footprints instead, with a warning.
    """
    return _bundled_or_generated("bubenec_district", comm, gdim=2, required_tags=[*DISTRICT_CELL_TAGS, *DISTRICT_TAGS],
                                 what="the district", sizes=str(BUNDLED_DISTRICT), script="make_district_mesh.py",
                                 generate=lambda: district_domain(
                                     load_district_footprints()["buildings"], comm=comm, **BUNDLED_DISTRICT))


def load_brest_bay_outline() -> dict:
    """The bundled Rade de Brest (``meshes/brest_bay.json``, extracted from the GSHHG 2.3.6
    shoreline by ``scripts/make_bay_mesh.py``; provenance and licence, LGPL-3.0-or-later, in
    ``meshes/README.md``).

    Returns:
        ``coastline``: the closed polyline bounding the water, ``(n, 2)`` (metres, x east,
        y north, counter-clockwise, not repeating its first point); ``open_sea``: its open-sea
        edge indices, ``(0,)`` (edge k joins point k to point k + 1); ``open_sea_segment``:
        that edge's end points ``(2, 2)``, Pointe Saint-Mathieu to Pointe du Toulinguet;
        ``islands``: ``(m, 2)`` arrays; ``goulet``: the end points ``(2, 2)`` of the
        narrowest section of the Goulet de Brest, coastline points ``goulet_vertices``;
        ``origin`` (lon0, lat0, degrees) and ``metres_per_degree`` ``(kx, ky)``: the projection,
        ``x = kx (lon - lon0)``, ``y = ky (lat - lat0)``; ``mesh``: the bundled mesh's
        :func:`~deepnum_fem.geometry.coastal_domain` sizes; and the file's ``provenance``.
        ``coastal_domain(outline["coastline"], outline["open_sea"], islands=outline["islands"],
        **outline["mesh"])`` makes the bundled mesh again.
    """
    record = json.loads(bundled_mesh_path("brest_bay").with_suffix(".json").read_text(encoding="utf-8"))
    coastline = np.array(record["coastline"], dtype=np.float64)
    goulet = tuple(int(k) for k in record["goulet"]["vertices"])
    open_sea = tuple(int(k) for k in record["open_sea"])
    return {"coastline": coastline, "open_sea": open_sea,
            "open_sea_segment": coastline[[open_sea[0], (open_sea[0] + 1) % len(coastline)]],
            "islands": [np.array(r, dtype=np.float64) for r in record["islands"]],
            "goulet": coastline[list(goulet)], "goulet_vertices": goulet,
            "origin": tuple(record["projection"]["origin"]),
            "metres_per_degree": tuple(record["projection"]["metres_per_degree"]),
            "mesh": dict(record["mesh"]),
            "provenance": {k: v for k, v in record.items() if k not in ("coastline", "islands")}}


def load_brest_bay(comm: MPI.Comm = MPI.COMM_WORLD) -> MeshData:
    """The bundled Rade de Brest (``meshes/brest_bay.msh``), distributed: a real macrotidal bay.

    :func:`deepnum_fem.geometry.coastal_domain` of :func:`load_brest_bay_outline` with
    :data:`BUNDLED_BREST_BAY` (800 m offshore, 200 m at the land): about 4,700 vertices. Tags
    as :data:`~deepnum_fem.geometry.COAST_TAGS`: cells ``WATER``; facets ``LAND`` (coast and
    island shores) and ``OPEN_SEA`` (the segment across the Iroise). When the file is absent
    the mesh is generated from the outline instead (about a second), with a warning.
    """
    def generate() -> MeshData:
        outline = load_brest_bay_outline()
        return coastal_domain(outline["coastline"], outline["open_sea"], islands=outline["islands"], comm=comm,
                              **BUNDLED_BREST_BAY)

    return _bundled_or_generated("brest_bay", comm, gdim=2, required_tags=[*COAST_CELL_TAGS, *COAST_TAGS],
                                 what="the Rade de Brest", sizes=str(BUNDLED_BREST_BAY), script="make_bay_mesh.py",
                                 generate=generate)


def _load_msh(path: Path, comm: MPI.Comm, gdim: int, required_tags: Sequence[str | int]) -> MeshData:
    with gmsh_session("load_mesh", comm) as gmsh:
        error = None
        if comm.rank == 0:
            try:
                error = _merge_msh(gmsh, path, required_tags, gdim)
            except MeshError as e:
                error = str(e)
            except Exception as e:   # reported on every rank rather than left to hang the others
                error = f"cannot use {path} as a mesh: {type(e).__name__}: {e}"
        error = comm.bcast(error, root=0)
        if error is not None:
            raise MeshError(error)
        try:   # model_to_mesh's own checks (e.g. cells tagged twice) raise on every rank alike
            return dolfinx.io.gmsh.model_to_mesh(gmsh.model if comm.rank == 0 else None, comm, 0, gdim=gdim)
        except RuntimeError as e:
            raise MeshError(f"cannot build a DOLFINx mesh from {path}: {e}") from e


def _merge_msh(gmsh, path: Path, required_tags: Sequence[str | int], gdim: int) -> str | None:
    """Load ``path`` into gmsh's current model; the error message, or None if it can be converted.

    Raises:
        MeshError: when the cells are of several types, degenerate, or do not fit ``gdim``.
    """
    if not path.is_file():
        return f"mesh file {path} not found"
    try:
        gmsh.merge(str(path))
    except Exception as e:
        return f"gmsh could not read {path}: {e}"
    groups = gmsh.model.getPhysicalGroups()
    tdim = max((dim for dim, _ in groups), default=-1)
    if tdim < 2:
        return (f"{path} has no triangle or tetrahedron cells in a physical group (physical groups: "
                f"{groups}); DOLFINx keeps only the cells of physical groups, so add one in gmsh")
    for dim in range(tdim + 1, 4):
        if any(len(tags) for tags in gmsh.model.mesh.getElements(dim)[1]):
            return (f"{path} has cells of dimension {dim} but its physical groups stop at dimension "
                    f"{tdim}; add a physical group for the dimension-{dim} cells")
    gmsh.model.mesh.renumberNodes()   # DOLFINx needs node tags 1..N; files written without SaveAll skip some
    _check_msh_cells(gmsh, path, tdim, gdim)
    names = {gmsh.model.getPhysicalName(dim, tag) for dim, tag in groups} - {""}
    return _missing_tags(path, required_tags, names, {tag for _, tag in groups})


def _check_msh_cells(gmsh, path: Path, tdim: int, gdim: int) -> None:
    """MeshError unless the ``tdim`` cells in gmsh's model have one type, fit ``gdim`` and have volume."""
    types, cells, nodes = gmsh.model.mesh.getElements(tdim)
    found = {gmsh.model.mesh.getElementProperties(t)[0]: len(c) for t, c in zip(types, cells, strict=True) if len(c)}
    if len(found) > 1:
        raise MeshError(_mixed_topology(
            path, tdim, found, "so load_mesh takes one cell type per mesh",
            "mesh every volume with one element type" if tdim == 3
            else "mesh every surface with one element type (recombine all of them or none)"))
    tags, coords, _ = gmsh.model.mesh.getNodes()
    points = _fit_points(path, coords.reshape(-1, 3), gdim, tdim)
    if len(types) == 1 and types[0] == _GMSH_SIMPLEX[tdim]:
        index = np.zeros(int(tags.max()) + 1, dtype=np.int64)
        index[tags.astype(np.int64)] = np.arange(tags.size)
        _check_volumes(path, "tetrahedron" if tdim == 3 else "triangle", points,
                       index[nodes[0].astype(np.int64)].reshape(-1, tdim + 1))


def _load_meshio(path: Path, comm: MPI.Comm, gdim: int, required_tags: Sequence[str | int],
                 tag_name: str | None) -> MeshData:
    data, report = None, None
    if comm.rank == 0:
        try:
            data = _read_meshio(path, gdim, tag_name)
            error = _missing_tags(path, required_tags, set(data["groups"]), data["values"])
            report = (error, data["tdim"], data["groups"], data["cell_tags"] is not None,
                      data["facet_tags"] is not None)
        except MeshError as e:
            report = (str(e), None, None, None, None)
        except Exception as e:   # reported on every rank rather than left to hang the others
            report = (f"cannot use {path} as a mesh: {type(e).__name__}: {e}", None, None, None, None)
    error, tdim, groups, has_cell_tags, has_facet_tags = comm.bcast(report, root=0)
    if error is not None:
        raise MeshError(error)

    cell_name = _SIMPLICES[tdim][2]
    if comm.rank == 0:
        x, cells = data["points"], data["cells"]
    else:
        x, cells = np.empty((0, gdim)), np.empty((0, tdim + 1), dtype=np.int64)
    element = basix.ufl.element("Lagrange", cell_name, 1, shape=(gdim,), dtype=dolfinx.default_real_type)
    mesh = dolfinx.mesh.create_mesh(comm, cells, ufl.Mesh(element), x.astype(dolfinx.default_real_type))

    tags = {}
    for key, dim, present in (("cell_tags", tdim, has_cell_tags), ("facet_tags", tdim - 1, has_facet_tags)):
        if not present:
            tags[key] = None
            continue
        if comm.rank == 0:
            entities, values = data[key]
        else:
            entities, values = np.empty((0, dim + 1), dtype=np.int64), np.empty(0, dtype=np.int32)
        local_entities, local_values = dolfinx.io.distribute_entity_data(mesh, dim, entities, values)
        mesh.topology.create_connectivity(dim, tdim)
        tags[key] = dolfinx.mesh.meshtags_from_entities(
            mesh, dim, adjacencylist(local_entities), local_values.astype(np.int32, copy=False))
        tags[key].name = key
    return MeshData(mesh, tags["cell_tags"], tags["facet_tags"], None, None, groups)


def _read_meshio(path: Path, gdim: int, tag_name: str | None) -> dict:
    """Read ``path`` with meshio (rank 0): points, cells and tags as arrays; MeshError if unusable."""
    msh = _meshio_read(path)
    tdim = _meshio_dimension(path, msh.cells)
    cell_type, facet_type, _ = _SIMPLICES[tdim]
    types = [block.type for block in msh.cells]

    key = tag_name
    if key is None:
        key = next((k for k in _TAG_ARRAYS if k in msh.cell_data), None)
    elif key not in msh.cell_data:
        raise MeshError(f"{path} has no cell data {key!r}; it has {sorted(msh.cell_data)}")

    def blocks(kind: str) -> tuple[np.ndarray, np.ndarray | None]:
        index = [i for i, t in enumerate(types) if t == kind]
        entities = np.concatenate([msh.cells[i].data for i in index]).astype(np.int64)
        _check_indices(path, kind, entities, len(msh.points))
        if key is None:
            return entities, None
        values = np.concatenate([np.asarray(msh.cell_data[key][i]).reshape(-1) for i in index])
        if not np.array_equal(values, np.round(values)):
            raise MeshError(f"cell data {key!r} of {path} holds non-integer values; expected integer tags")
        return entities, values.astype(np.int32)

    cells, cell_values = blocks(cell_type)
    facets, facet_values = blocks(facet_type) if facet_type in types else (None, None)
    points = _fit_points(path, np.asarray(msh.points, dtype=np.float64), gdim, tdim)
    _check_volumes(path, cell_type, points, cells)

    groups = {name: PhysicalGroup(int(v[1]), int(v[0])) for name, v in msh.field_data.items()
              if np.size(v) == 2 and np.issubdtype(np.asarray(v).dtype, np.integer)}
    values = set() if key is None else {int(v) for v in np.unique(np.concatenate(
        [a for a in (cell_values, facet_values) if a is not None]))}
    return {"tdim": tdim, "points": np.ascontiguousarray(points), "cells": cells, "groups": groups,
            "values": values,
            "cell_tags": None if cell_values is None else (cells, cell_values),
            "facet_tags": None if facet_values is None else (facets, facet_values)}


def _meshio_read(path: Path):
    """``meshio.read(path)``, with meshio's printed complaints and ``sys.exit`` turned into a MeshError."""
    import meshio

    if not path.is_file():
        raise MeshError(f"mesh file {path} not found")
    messages = io.StringIO()
    try:   # meshio prints its parser's complaint and calls sys.exit when no reader accepts a file
        with contextlib.redirect_stdout(messages), contextlib.redirect_stderr(messages):
            return meshio.read(path)
    except (Exception, SystemExit) as e:
        said = " ".join(messages.getvalue().split())
        detail = f"{type(e).__name__}: {e}" if not isinstance(e, SystemExit) else ""
        raise MeshError(f"meshio could not read {path}: {'; '.join(filter(None, (said, detail)))}") from None


def _meshio_dimension(path: Path, blocks) -> int:
    """Dimension (2 or 3) of the meshio cell ``blocks``; MeshError unless its cells are all linear simplices."""
    counts, dims = {}, {}
    for block in blocks:
        counts[block.type] = counts.get(block.type, 0) + len(block.data)
        dims[block.type] = block.dim
    tdim = max((d for d in dims.values() if d >= 2), default=None)
    if tdim is None:
        raise MeshError(f"{path} has no volume cells: expected linear 'tetra' or 'triangle' cells, found "
                        f"{list(counts)}")
    found = {t: n for t, n in counts.items() if dims[t] == tdim}
    simplex = _SIMPLICES[tdim][0]
    if len(found) > 1:
        raise MeshError(_mixed_topology(
            path, tdim, found, "and load_mesh reads only linear 'tetra' (3D) or 'triangle' (2D) cells from "
            "meshio formats", f"convert all cells to {simplex!r} (e.g. re-mesh with simplices only)"))
    if simplex not in found:
        raise MeshError(f"{path} has no linear {simplex!r} cells: its {tdim}D cells are {_listed(found)}; "
                        "load_mesh reads only linear 'tetra' (3D) or 'triangle' (2D) cells from meshio formats: "
                        f"convert the mesh to {simplex!r} cells")
    return tdim


def _mixed_topology(path: Path, tdim: int, found: dict[str, int], supported: str, remedy: str) -> str:
    """The message refusing a mesh whose ``tdim`` cells are of the types and counts in ``found``."""
    return (f"{path} is a mixed-topology mesh: its {tdim}D cells are {_listed(found)}; deepnum-fem's solvers "
            f"do not handle mixed topologies, {supported}. To load it, {remedy}, or split the file into one "
            "mesh per cell type")


def _listed(found: dict[str, int]) -> str:
    return " and ".join(f"{n} {t!r}" for t, n in found.items())


def _check_indices(path: Path, kind: str, entities: np.ndarray, n_points: int) -> None:
    """MeshError if a ``kind`` cell of ``entities`` refers to a point outside ``0 .. n_points - 1``."""
    bad = (entities < 0) | (entities >= n_points)
    rows = np.flatnonzero(bad.any(axis=1))
    if rows.size:
        first = rows[0]
        raise MeshError(f"{path} has {rows.size} {kind!r} cell(s) with point indices out of range: {kind!r} "
                        f"cell {first} refers to point {entities[first][bad[first]][0]}, but the file has "
                        f"{n_points} points (indices 0 to {n_points - 1}); fix the connectivity of the file")


def _fit_points(path: Path, points: np.ndarray, gdim: int, tdim: int) -> np.ndarray:
    """``points`` with ``gdim`` coordinates each; MeshError if not finite or if dropping coordinates moves them."""
    bad = ~np.isfinite(points)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise MeshError(f"{path} has {int(bad.sum())} NaN or Inf coordinate(s) in {rows.size} point(s) (the "
                        f"first: point {rows[0]}, {points[rows[0]].tolist()}); every coordinate must be finite: "
                        "fix or remove those points")
    dim = points.shape[1]
    if gdim < tdim:
        raise MeshError(f"gdim={gdim} is smaller than the topological dimension {tdim} of the cells of {path} "
                        f"(its points are {dim}D); pass gdim={max(tdim, dim)}")
    if dim > gdim:
        spread = np.ptp(points[:, gdim:], axis=0)
        if spread.max() > 0:
            axis = "xyz"[gdim + int(spread.argmax())]
            raise MeshError(f"{path} has {dim}D points that do not lie in a {gdim}D plane (its {axis} coordinates "
                            f"span {spread.max():.6g}), so gdim={gdim} would flatten the mesh; pass gdim={dim}")
        return points[:, :gdim]
    return np.hstack([points, np.zeros((points.shape[0], gdim - dim))])


def _check_volumes(path: Path, kind: str, points: np.ndarray, cells: np.ndarray) -> None:
    """MeshError if a simplex of ``cells`` has volume <= 1e-12 (bounding-box diameter)**tdim."""
    tdim = cells.shape[1] - 1
    edges = points[cells[:, 1:]] - points[cells[:, :1]]   # (cells, tdim, gdim)
    if edges.shape[2] == tdim:
        volumes = np.abs(np.linalg.det(edges))
    else:   # a surface in 3D: sqrt of the Gram determinant
        volumes = np.sqrt(np.abs(np.linalg.det(edges @ edges.transpose(0, 2, 1))))
    volumes /= math.factorial(tdim)
    diameter = float(np.linalg.norm(np.ptp(points, axis=0))) if len(points) else 0.0
    tol = _DEGENERATE_VOLUME * diameter**tdim
    flat = np.flatnonzero(volumes <= tol)
    if flat.size:
        first = flat[0]
        raise MeshError(f"{path} has {flat.size} degenerate (zero-volume) {kind!r} cell(s) of {len(cells)}: "
                        f"volume <= {_DEGENERATE_VOLUME:g} * (bounding-box diameter {diameter:.6g})^{tdim}; the "
                        f"first is cell {first}, points {cells[first].tolist()}, volume {volumes[first]:.3g}. "
                        "Remove or repair those cells (e.g. merge duplicate points, or re-mesh)")


def _missing_tags(path: Path, required: Sequence[str | int], names: set[str], values: set[int]) -> str | None:
    missing = [t for t in required if t not in (names if isinstance(t, str) else values)]
    if not missing:
        return None
    return (f"{path} lacks the required tags {missing} (required: {list(required)}); it has the named "
            f"tags {sorted(names)} and the tag values {sorted(values)}")


def write_frames(path: str | Path, V, frames, name: str = "u") -> None:
    """Write ``(time, owned dofs)`` frames of a field on ``V`` to an XDMF file (collective).

    Each tensor or array holds the owned dofs, as ``dnf.to_torch`` gives them; ghosts are
    refreshed before writing.
    """
    f = dolfinx.fem.Function(V, name=name)
    n = V.dofmap.index_map.size_local * V.dofmap.index_map_bs
    with dolfinx.io.XDMFFile(V.mesh.comm, str(path), "w") as xdmf:
        xdmf.write_mesh(V.mesh)
        for t, values in frames:
            values = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
            f.x.array[:n] = values
            f.x.scatter_forward()
            xdmf.write_function(f, t)
