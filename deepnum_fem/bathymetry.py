"""Bathymetry for the shallow-water use case: the still-water depth H (m, positive down) as a Function.

An analytic default for the bundled bay (:func:`shelf_bathymetry`), a depth model from the
distance to the shore for any coastline (:func:`shore_bathymetry`, e.g. the bundled Rade de
Brest, which has no real bathymetry), any callable (:func:`bathymetry_function`) and scattered
survey samples (:func:`interpolate_bathymetry`, linear on their Delaunay triangulation). Each
rank evaluates the depth at its own dofs; the ghosts are then updated, so the result is the
same on any number of ranks.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

from mpi4py import MPI

import basix.ufl
import dolfinx.fem
import dolfinx.geometry
import dolfinx.mesh
import numpy as np
import ufl

from deepnum_fem.geometry.gmsh_model import gmsh_module
from deepnum_fem.geometry.polygons import as_polygon, signed_area

__all__ = ["bathymetry_function", "interpolate_bathymetry", "read_soundings", "shelf_bathymetry",
           "shore_bathymetry"]

#: Interpolation methods of :func:`interpolate_bathymetry`.
METHODS = ("linear", "nearest")


def shelf_bathymetry(x, *, depth_coast: float = 5.0, depth_shelf: float = 30.0, depth_ocean: float = 100.0,
                     shelf_scale: float = 8000.0, x_coast: float = 0.0, x_break: float = 16000.0,
                     break_width: float = 1500.0) -> np.ndarray:
    """Depth (m, positive down) of an idealised continental shelf that deepens along +x (offshore).

    ``H = depth_coast + (depth_shelf - depth_coast) tanh(s / shelf_scale)
    + (depth_ocean - depth_shelf) (1 + tanh((x - x_break) / break_width)) / 2`` with
    ``s = max(x - x_coast, 0)``: ``depth_coast`` at the coast, a shelf sloping to about
    ``depth_shelf``, and a shelf break centred at ``x_break`` down to about ``depth_ocean``.
    It depends on x alone, is non-decreasing in x and at least ``depth_coast`` everywhere. The
    defaults fit the bundled bay (:data:`deepnum_fem.geometry.BAY_COASTLINE`: its head at x = 0,
    the open sea at x = 20 km): 5 m at the head, 26 m at x = 10 km, 99 m at the open sea.

    Args:
        x: Points, shape ``(2 or 3, n)`` (DOLFINx's convention: ``x[0]`` is the offshore
            coordinate, m).
        depth_coast, depth_shelf, depth_ocean: Depths (m), ``0 < coast <= shelf <= ocean``.
        shelf_scale: Length (m) over which the shelf deepens from the coast.
        x_coast: Where the shelf starts (m); the depth is ``depth_coast`` shoreward of it.
        x_break, break_width: Centre and half-width (m) of the shelf break.

    Returns:
        The depths, shape ``(n,)``.

    Raises:
        ValueError: for ``x`` of another shape or depths/lengths out of range.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] not in (2, 3):
        raise ValueError(f"expected points x of shape (2 or 3, n) (DOLFINx's convention), got shape {x.shape}")
    if not 0 < depth_coast <= depth_shelf <= depth_ocean:
        raise ValueError(f"expected depths 0 < depth_coast <= depth_shelf <= depth_ocean (m), got "
                         f"{depth_coast}, {depth_shelf}, {depth_ocean}")
    if not (shelf_scale > 0 and break_width > 0):
        raise ValueError(f"expected shelf_scale > 0 and break_width > 0 (m), got {shelf_scale}, {break_width}")
    s = np.maximum(x[0] - x_coast, 0.0)
    return (depth_coast + (depth_shelf - depth_coast) * np.tanh(s / shelf_scale)
            + (depth_ocean - depth_shelf) * 0.5 * (1.0 + np.tanh((x[0] - x_break) / break_width)))


def shore_bathymetry(coastline, open_sea=(), islands=(), *, depth_shore: float = 2.0,
                     depth_offshore: float = 40.0, length: float = 2000.0) -> Callable[[np.ndarray], np.ndarray]:
    """A depth model (m, positive down) that deepens with the distance ``d`` to the land.

    ``H = depth_shore + (depth_offshore - depth_shore) tanh(d / length)``, with ``d`` the
    distance to the nearest land edge: the edges of ``coastline`` not in ``open_sea`` and
    every island shore. It is a model, not a survey: ``depth_shore`` along the land, about
    ``depth_offshore`` from ``2 length`` away, and nothing of real channels or banks. Use it
    where no bathymetry is at hand, e.g. for the bundled Rade de Brest
    (:func:`deepnum_fem.io.load_brest_bay_outline`), and replace it by
    :func:`interpolate_bathymetry` of soundings when there are some.

    Args:
        coastline: The closed polyline bounding the water, ``(n, 2)`` (m), as for
            :func:`~deepnum_fem.geometry.coastal_domain`; edge ``k`` joins point ``k`` to
            point ``(k + 1) % n``.
        open_sea: Index or indices of the coastline's open-sea edges: no shore there.
        islands: Closed polylines ``(m, 2)``: their shores are land.
        depth_shore, depth_offshore: Depths (m) at the land and far from it,
            ``0 < depth_shore <= depth_offshore``.
        length: Distance (m) over which the depth grows (76 % of the way at ``d = length``).

    Returns:
        ``fn(x)``: the depths ``(n,)`` at points ``x`` of shape ``(2 or 3, n)`` (DOLFINx's
        convention), for :func:`bathymetry_function`.

    Raises:
        ValueError: for polygons with fewer than 3 distinct points, open-sea indices that are
            not edges of the coastline or that leave no land, or depths and lengths out of range.
    """
    ring = as_polygon(coastline, "the coastline")
    edges = [open_sea] if isinstance(open_sea, int | np.integer) else list(open_sea)
    if not all(isinstance(k, int | np.integer) and 0 <= k < len(ring) for k in edges):
        raise ValueError(f"expected open_sea as coastline edge indices in 0..{len(ring) - 1}, got {open_sea!r}")
    if not 0 < depth_shore <= depth_offshore:
        raise ValueError(f"expected depths 0 < depth_shore <= depth_offshore (m), got {depth_shore}, {depth_offshore}")
    if not (math.isfinite(length) and length > 0):
        raise ValueError(f"expected a length > 0 (m), got {length}")
    land = np.setdiff1d(np.arange(len(ring)), edges)
    starts = [ring[land]]
    ends = [np.roll(ring, -1, axis=0)[land]]
    for k, island in enumerate(islands):
        island = as_polygon(island, f"island {k}")
        starts.append(island)
        ends.append(np.roll(island, -1, axis=0))
    a, b = np.concatenate(starts), np.concatenate(ends)
    if len(a) == 0:
        raise ValueError("expected some land: every coastline edge is open sea and there are no islands")
    d = b - a
    dd = np.maximum((d * d).sum(axis=1), 1e-300)

    def depth(x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] not in (2, 3):
            raise ValueError(f"expected points x of shape (2 or 3, n) (DOLFINx's convention), got shape {x.shape}")
        p = np.ascontiguousarray(x[:2].T)
        distance = np.empty(len(p))
        chunk = max(1, 2_000_000 // len(a))
        for i in range(0, len(p), chunk):
            r = p[i:i + chunk, None, :] - a[None]
            t = np.clip((r * d).sum(axis=-1) / dd, 0.0, 1.0)
            distance[i:i + chunk] = np.sqrt(((r - t[..., None] * d) ** 2).sum(axis=-1).min(axis=1))
        return depth_shore + (depth_offshore - depth_shore) * np.tanh(distance / length)

    return depth


def bathymetry_function(V: dolfinx.fem.FunctionSpace, fn: Callable[[np.ndarray], np.ndarray], *,
                        min_depth: float | None = 0.0) -> dolfinx.fem.Function:
    """The depth ``fn(x)`` (m, positive down) at the dofs of the scalar Lagrange space ``V``.

    Args:
        V: A scalar space whose dofs are point values (Lagrange, any degree, continuous or not).
        fn: Depth at points ``x`` of shape ``(3, n)`` (m; DOLFINx's convention), returning
            shape ``(n,)``, e.g. :func:`shelf_bathymetry`.
        min_depth: Every depth must exceed it (m; default 0: the water is wet everywhere, as
            the shallow-water equations without wetting and drying need). None: no check.

    Returns:
        A Function ``H`` on ``V``, ghosts updated.

    Raises:
        ValueError: on every rank together, for a vector space or one without point-value
            dofs, ``fn`` returning another shape or non-finite values, or depths
            ``<= min_depth``.
    """
    x = _owned_dof_coordinates(V)
    values = np.asarray(fn(np.ascontiguousarray(x.T)), dtype=np.float64)
    error = None
    if values.shape not in ((len(x),), (1, len(x))):
        error = f"expected fn(x) to return one depth per point, shape ({len(x)},), got shape {values.shape}"
        values = np.full(len(x), np.nan)
    return _depth_function(V, x, values.reshape(-1), error, min_depth, "fn(x)")


def interpolate_bathymetry(V: dolfinx.fem.FunctionSpace, points, depths, method: str = "linear", *,
                           min_depth: float | None = 0.0) -> dolfinx.fem.Function:
    """Depths (m, positive down) sampled at scattered points, interpolated at the dofs of ``V``.

    ``method="linear"``: piecewise linear on the Delaunay triangulation of the samples (gmsh's
    ``algorithm.triangulate``), so a linear depth is reproduced exactly inside their convex hull;
    outside it, the depth of the nearest sample. ``"nearest"``: the nearest sample everywhere.
    (What scipy's ``LinearNDInterpolator`` / ``NearestNDInterpolator`` do, without scipy.)

    Parallel: pass the same samples on every rank; each rank evaluates at its owned dofs (the
    samples are triangulated on each rank, located with a DOLFINx bounding-box tree) and the
    ghosts are then updated. The nearest-sample search is brute force: O(dofs x samples) for
    the dofs outside the hull.

    Args:
        V: A scalar space whose dofs are point values (Lagrange, any degree), on a mesh in the
            same coordinates (m) as ``points``; only the dofs' x and y are used.
        points: Sample positions ``(n, 2)``, m, pairwise distinct.
        depths: Depths ``(n,)`` at the samples, m, finite (negative values: land).
        method: ``"linear"`` or ``"nearest"``.
        min_depth: Every interpolated depth must exceed it (m, default 0: wet everywhere).
            None: no check (e.g. for a wetting-and-drying model).

    Returns:
        A Function ``H`` on ``V``, ghosts updated.

    Raises:
        ValueError: for samples of the wrong shapes, non-finite or repeated, fewer than 3
            samples or all collinear with ``"linear"``, an unknown ``method``; and, on every
            rank together, for a vector space or interpolated depths ``<= min_depth``.
    """
    if method not in METHODS:
        raise ValueError(f"expected method in {METHODS}, got {method!r}")
    points = np.asarray(points, dtype=np.float64)
    depths = np.asarray(depths, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(f"expected sample points of shape (n, 2), n >= 1, got shape {points.shape}")
    if depths.shape != (len(points),):
        raise ValueError(f"expected one depth per sample point, shape ({len(points)},), got shape {depths.shape}")
    for name, array in (("sample points", points), ("depths", depths)):
        bad = np.flatnonzero(~np.isfinite(array.reshape(len(points), -1)).all(axis=1))
        if bad.size:
            raise ValueError(f"expected finite {name}, got {array[bad[0]]} at sample {bad[0]} "
                             f"({bad.size} non-finite samples)")
    _, first, counts = np.unique(points, axis=0, return_index=True, return_counts=True)
    if np.any(counts > 1):
        k = first[np.argmax(counts > 1)]
        raise ValueError(f"expected distinct sample points, got {points[k].tolist()} (sample {k}) "
                         f"{counts.max()} times")

    x = _owned_dof_coordinates(V)
    # Shift and scale the samples to [0, 1]^2 for the triangulation and the location.
    lo, scale = points.min(axis=0), max(float(np.ptp(points, axis=0).max()), 1e-300)
    samples, targets = (points - lo) / scale, (x[:, :2] - lo) / scale
    if method == "nearest":
        values = depths[_nearest(samples, targets)]
    else:
        values = _linear(samples, depths, targets)
    return _depth_function(V, x, values, None, min_depth, "the interpolated depth")


def read_soundings(path, *, depth_sign: float = 1.0,
                   comm: MPI.Comm = MPI.COMM_WORLD) -> tuple[np.ndarray, np.ndarray]:
    """Scattered soundings from an "xyz" text file, for :func:`interpolate_bathymetry`.

    One sample per line, ``x y z`` separated by spaces, tabs or commas (the plain ASCII that
    survey software and GIS tools export); blank lines and lines starting with ``#`` are
    skipped, and a first line that is not numbers is taken for a header. ``x, y`` must be in
    the mesh's coordinates (m). ``z`` becomes the depth, positive down, as ``depth_sign · z``:
    pass ``depth_sign=-1`` for elevations (negative below the datum, as many grids store them).
    Rank 0 reads; every rank gets the samples.

    Returns:
        ``(points (n, 2), depths (n,))``.

    Raises:
        ValueError: on every rank, naming the file and line, for a line that is not three
            numbers, or a file without samples; OSError for a file that cannot be read.
    """
    result, error = None, None
    if comm.rank == 0:
        try:
            rows = []
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, start=1):
                    text = line.split("#", 1)[0].strip()
                    if not text:
                        continue
                    fields = text.replace(",", " ").replace("\t", " ").split()
                    try:
                        values = [float(v) for v in fields]
                    except ValueError:
                        if not rows and number == 1:
                            continue      # a header
                        raise ValueError(f"{path}, line {number}: three numbers 'x y z' expected, "
                                         f"got {text!r}") from None
                    if len(values) != 3 or not all(math.isfinite(v) for v in values):
                        raise ValueError(f"{path}, line {number}: three finite numbers 'x y z' expected, "
                                         f"got {text!r}")
                    rows.append(values)
            if not rows:
                raise ValueError(f"{path}: no soundings found")
            data = np.array(rows, dtype=np.float64)
            result = (data[:, :2].copy(), depth_sign * data[:, 2])
        except (OSError, ValueError) as e:
            error = (type(e).__name__, str(e))
    error = comm.bcast(error, root=0)
    if error is not None:
        raise (OSError if error[0] != "ValueError" else ValueError)(error[1])
    return comm.bcast(result, root=0)


def _owned_dof_coordinates(V: dolfinx.fem.FunctionSpace) -> np.ndarray:
    """Coordinates ``(n_owned, 3)`` of the dofs ``V`` owns on this rank; ValueError (collective) if not scalar."""
    error = None
    if V.dofmap.index_map_bs != 1 or V.value_size != 1:
        error = f"expected a scalar function space for the depth, got value shape {V.value_shape}"
    else:
        try:
            x = V.tabulate_dof_coordinates()[:V.dofmap.index_map.size_local]
        except RuntimeError as e:
            error = f"expected a Lagrange space (dofs at points) for the depth: {e}"
    errors = V.mesh.comm.allgather(error)
    if any(errors):
        raise ValueError(next(e for e in errors if e))
    return x


def _depth_function(V, x: np.ndarray, values: np.ndarray, error: str | None, min_depth: float | None,
                    what: str) -> dolfinx.fem.Function:
    """``values`` at the owned dofs as a Function, after collective checks of finiteness and ``min_depth``."""
    comm = V.mesh.comm
    if error is None:
        finite = np.isfinite(values)
        if not finite.all():
            k = np.argmin(finite)
            error = f"expected finite values of {what}, got {values[k]} at {x[k, :2].tolist()}"
    shallow = None
    if error is None and min_depth is not None and values.size and values.min() <= min_depth:
        k = int(np.argmin(values))
        shallow = (int(np.count_nonzero(values <= min_depth)), float(values[k]), x[k, :2].tolist())
    reports = comm.allgather((error, shallow))
    errors = [e for e, _ in reports if e]
    if errors:
        raise ValueError(errors[0])
    shallows = [s for _, s in reports if s]
    if shallows:
        count = sum(s[0] for s in shallows)
        _, depth, where = min(shallows, key=lambda s: s[1])
        raise ValueError(f"expected {what} > min_depth = {min_depth} m at every dof (the water must be wet), "
                         f"got {count} dofs at or below it, the shallowest {depth:.6g} m at {where}; pass "
                         f"min_depth=None to accept dry points")
    H = dolfinx.fem.Function(V, name="H")
    H.x.array[:len(values)] = values
    H.x.scatter_forward()
    return H


def _nearest(samples: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the nearest of ``samples`` ``(n, 2)`` to each of ``targets`` ``(m, 2)`` (brute force, chunked)."""
    nearest = np.empty(len(targets), dtype=np.int64)
    chunk = max(1, 1_000_000 // len(samples))
    for i in range(0, len(targets), chunk):
        d2 = ((targets[i:i + chunk, None, :] - samples[None, :, :]) ** 2).sum(axis=-1)
        nearest[i:i + chunk] = d2.argmin(axis=1)
    return nearest


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Indices of the convex hull of ``points`` ``(n, 2)``, counter-clockwise, collinear boundary points kept.

    Andrew's monotone chain; for points all on one line it returns them twice (zero area).
    """
    order = np.lexsort((points[:, 1], points[:, 0]))

    def chain(indices) -> list[int]:
        kept: list[int] = []
        for i in indices:
            while len(kept) >= 2:
                o, a, p = points[kept[-2]], points[kept[-1]], points[i]
                if (a[0] - o[0]) * (p[1] - o[1]) - (a[1] - o[1]) * (p[0] - o[0]) < 0:
                    kept.pop()
                else:
                    break
            kept.append(int(i))
        return kept

    lower, upper = chain(order), chain(order[::-1])
    return np.array(lower[:-1] + upper[:-1], dtype=np.int64)


def _triangulate(samples: np.ndarray) -> np.ndarray:
    """Delaunay triangles ``(t, 3)`` (0-based sample indices) of ``samples`` in [0, 1]^2, covering their hull.

    gmsh's ``algorithm.triangulate`` with the convex hull's edges constrained (without them it
    drops triangles near the hull); degenerate triangles (collinear hull points) are removed.
    Empty when the samples span no area.
    """
    hull = _convex_hull(samples)
    hull_area = signed_area(samples[hull])   # counter-clockwise: > 0
    if len(samples) < 3 or hull_area < 1e-12:
        return np.empty((0, 3), dtype=np.int64)
    with _gmsh_api() as gmsh:
        edges = np.column_stack([hull, np.roll(hull, -1)]) + 1
        triangles = gmsh.algorithm.triangulate(samples.ravel(), edges.ravel())
    triangles, covered = _nondegenerate(samples, np.asarray(triangles, dtype=np.int64).reshape(-1, 3) - 1)
    if not math.isclose(covered, hull_area, rel_tol=1e-9):
        # algorithm.triangulate leaves holes for some point sets: mesh the hull with the
        # samples embedded instead, sized so that gmsh adds no point of its own
        triangles, covered = _nondegenerate(samples, _mesh_samples(samples, hull))
    if not math.isclose(covered, hull_area, rel_tol=1e-9):
        raise RuntimeError(f"gmsh's triangulation of {len(samples)} samples covers {covered:.12g} of "
                           f"their convex hull's {hull_area:.12g} (normalised area)")
    return triangles


def _nondegenerate(samples: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, float]:
    """The triangles of non-zero area, and the area they cover."""
    a, b, c = (samples[triangles[:, k]] for k in range(3))
    area = 0.5 * np.abs((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))
    keep = area > 1e-14
    return triangles[keep], float(area[keep].sum())


@contextlib.contextmanager
def _gmsh_api():
    """gmsh's API, initialised (quietly) for the block unless it already was."""
    gmsh = gmsh_module()
    initialised = gmsh.isInitialized()
    if not initialised:
        gmsh.initialize(interruptible=False)
        gmsh.option.setNumber("General.Terminal", 0)
    try:
        yield gmsh
    finally:
        if not initialised:
            gmsh.finalize()


def _mesh_samples(samples: np.ndarray, hull: np.ndarray) -> np.ndarray:
    """Triangles of the samples by gmsh's 2D mesher: the hull polygon as the boundary (one
    segment per edge), every other sample an embedded point, a mesh size larger than the
    domain so that no point is added. Returns 0-based sample indices."""
    with _gmsh_api() as gmsh:
        gmsh.model.add("soundings")
        try:
            geo = gmsh.model.geo
            size = 10.0                                   # the samples lie in [0, 1]^2
            tag = {int(i): geo.addPoint(*samples[i], 0.0, size) for i in range(len(samples))}
            lines = [geo.addLine(tag[int(a)], tag[int(b)]) for a, b in zip(hull, np.roll(hull, -1), strict=True)]
            surface = geo.addPlaneSurface([geo.addCurveLoop(lines)])
            geo.synchronize()
            on_hull = set(int(i) for i in hull)
            gmsh.model.mesh.embed(0, [tag[i] for i in range(len(samples)) if i not in on_hull], 2, surface)
            gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
            gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 1)
            gmsh.option.setNumber("Mesh.Algorithm", 5)    # Delaunay
            gmsh.model.mesh.generate(2)
            node_tags, coords, _ = gmsh.model.mesh.getNodes()
            _, elements = gmsh.model.mesh.getElementsByType(2)
            position = np.asarray(coords).reshape(-1, 3)[:, :2]
            if len(node_tags) != len(samples):
                raise RuntimeError(f"gmsh added {len(node_tags) - len(samples)} points while triangulating the samples")
            # gmsh numbers nodes by its own order: map them back to the samples by position
            index = {t: i for t, i in zip(np.asarray(node_tags).tolist(), _match(position, samples), strict=True)}
            return np.array([index[t] for t in np.asarray(elements).tolist()], dtype=np.int64).reshape(-1, 3)
        finally:
            gmsh.model.remove()


def _match(points: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Index of the sample at each point: gmsh keeps the coordinates it was given, so they
    match exactly; a point that does not is matched to its nearest sample."""
    where = {tuple(q): i for i, q in enumerate(samples.tolist())}
    return np.array([where[tuple(q)] if tuple(q) in where else int(np.argmin(((samples - q) ** 2).sum(1)))
                     for q in points.tolist()], dtype=np.int64)


def _linear(samples: np.ndarray, depths: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolant of the samples at ``targets``; nearest sample outside the hull."""
    triangles = _triangulate(samples)
    if len(triangles) == 0:
        raise ValueError(f"expected at least 3 sample points not all on one line for method='linear', got "
                         f"{len(samples)} samples spanning no triangle; use method='nearest'")
    used = np.unique(triangles)   # gmsh may leave out samples; they do not matter inside the hull
    index = np.full(len(samples), -1, dtype=np.int64)
    index[used] = np.arange(used.size)
    element = basix.ufl.element("Lagrange", "triangle", 1, shape=(2,), dtype=np.float64)
    mesh = dolfinx.mesh.create_mesh(MPI.COMM_SELF, index[triangles], ufl.Mesh(element), samples[used])
    node_sample = used[np.asarray(mesh.geometry.input_global_indices, dtype=np.int64)]
    cell_nodes = mesh.geometry.dofmaps[0]

    points = np.zeros((len(targets), 3))
    points[:, :2] = targets
    tree = dolfinx.geometry.bb_tree(mesh, 2)
    cells = dolfinx.geometry.compute_colliding_cells(
        mesh, dolfinx.geometry.compute_collisions_points(tree, points), points)
    found = np.flatnonzero(np.diff(cells.offsets) > 0)
    values = np.empty(len(targets))
    if found.size:
        cell = cells.array[cells.offsets[found]]
        vertices = mesh.geometry.x[cell_nodes[cell]][:, :, :2]   # (k, 3, 2)
        e1, e2, r = vertices[:, 1] - vertices[:, 0], vertices[:, 2] - vertices[:, 0], targets[found] - vertices[:, 0]
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        l1 = (r[:, 0] * e2[:, 1] - r[:, 1] * e2[:, 0]) / det
        l2 = (e1[:, 0] * r[:, 1] - e1[:, 1] * r[:, 0]) / det
        d = depths[node_sample[cell_nodes[cell]]]
        values[found] = (1 - l1 - l2) * d[:, 0] + l1 * d[:, 1] + l2 * d[:, 2]
    outside = np.setdiff1d(np.arange(len(targets)), found)
    if outside.size:
        values[outside] = depths[_nearest(samples, targets[outside])]
    return values

