"""The city-block domains (2D and 3D) for pollutant transport and the bundled ``meshes/city.msh``."""

from __future__ import annotations

from mpi4py import MPI

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import pytest
import ufl

import deepnum_fem.io
from deepnum_fem.geometry import (
    CITY_BUILDING_HEIGHTS,
    CITY_BUILDINGS,
    CITY_CELL_TAGS,
    CITY_TAGS,
    CITY_TAGS_3D,
    city_blocks,
    city_blocks_3d,
)
from deepnum_fem.io import BUNDLED_CITY_H, load_city

L, W, H_TOP = 400.0, 240.0, 100.0   # the defaults of city_blocks / city_blocks_3d
BOXES = np.array(CITY_BUILDINGS)
FOOTPRINTS = (BOXES[:, 2] - BOXES[:, 0]) * (BOXES[:, 3] - BOXES[:, 1])
PERIMETERS = 2 * ((BOXES[:, 2] - BOXES[:, 0]) + (BOXES[:, 3] - BOXES[:, 1]))
# meshes/README.md records these.
BUNDLED_VERTICES, BUNDLED_CELLS = 3301, 5960
BUNDLED_FACETS = {"INFLOW": 30, "OUTFLOW": 30, "SIDES": 100, "BUILDINGS": 492}
H_TEST = 16.0   # coarse, for the geometry checks


@pytest.fixture(scope="module")
def city():
    return city_blocks(H_TEST, comm=MPI.COMM_WORLD)


def _integral(form, comm) -> float:
    return comm.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(form)), op=MPI.SUM)


def _owned(tags, value) -> np.ndarray:
    entities = tags.find(value)
    return entities[entities < tags.topology.index_map(tags.dim).size_local]


def _distance_to_buildings(p: np.ndarray) -> np.ndarray:
    """Distance (m) of the points ``p`` (n, >= 2) outside the buildings to the nearest one."""
    x, y = p[:, None, 0], p[:, None, 1]
    dx = np.maximum(np.maximum(BOXES[:, 0] - x, x - BOXES[:, 2]), 0)
    dy = np.maximum(np.maximum(BOXES[:, 1] - y, y - BOXES[:, 3]), 0)
    return np.hypot(dx, dy).min(axis=1)


def test_default_layout_is_a_street_canyon_grid():
    """3 columns x 2 rows inside the domain; neighbours are 20-30 m apart, no two blocks closer."""
    assert len(CITY_BUILDINGS) == 6 == len(CITY_BUILDING_HEIGHTS)
    assert np.all(BOXES[:, :2] > 0) and np.all(BOXES[:, 2] < L) and np.all(BOXES[:, 3] < W)

    def gap(i: int, j: int) -> float:   # street width between two blocks (Chebyshev distance)
        a, b = BOXES[i], BOXES[j]
        return max(a[0] - b[2], b[0] - a[2], a[1] - b[3], b[1] - a[3])

    neighbours = [(0, 1), (1, 2), (3, 4), (4, 5), (0, 3), (1, 4), (2, 5)]   # rows 0-2 south, 3-5 north
    assert all(20 <= gap(i, j) <= 30 for i, j in neighbours)
    assert all(gap(i, j) >= 20 for i in range(6) for j in range(i))


def test_city_area_and_tag_lengths(city, comm):
    mesh = city.mesh
    area = _integral(1.0 * ufl.dx(domain=mesh), comm)
    assert area == pytest.approx(L * W - FOOTPRINTS.sum(), rel=1e-10)
    assert {name: g.tag for name, g in city.physical_groups.items()} == {**CITY_TAGS, **CITY_CELL_TAGS}
    assert city.physical_groups["AIR"].dim == 2

    ds = ufl.Measure("ds", domain=mesh, subdomain_data=city.facet_tags)
    expected = {"INFLOW": W, "OUTFLOW": W, "SIDES": 2 * L, "BUILDINGS": PERIMETERS.sum()}
    lengths = {name: _integral(1.0 * ds(tag), comm) for name, tag in CITY_TAGS.items()}
    assert lengths == pytest.approx(expected, rel=1e-10)
    # Every exterior facet is tagged exactly once.
    mesh.topology.create_connectivity(1, 2)
    exterior = dolfinx.mesh.exterior_facet_indices(mesh.topology)
    n_local = mesh.topology.index_map(1).size_local
    tagged = city.facet_tags.indices
    assert np.unique(tagged).size == tagged.size
    assert comm.allreduce(np.setxor1d(exterior[exterior < n_local], tagged[tagged < n_local]).size) == 0


def test_city_facets_lie_on_their_boundaries(city, comm):
    mesh = city.mesh
    checks = {"INFLOW": lambda p: np.abs(p[:, 0]),
              "OUTFLOW": lambda p: np.abs(p[:, 0] - L),
              "SIDES": lambda p: np.minimum(np.abs(p[:, 1]), np.abs(p[:, 1] - W)),
              "BUILDINGS": _distance_to_buildings}
    for name, distance in checks.items():
        facets = _owned(city.facet_tags, CITY_TAGS[name])
        assert comm.allreduce(facets.size) > 0, name
        midpoints = dolfinx.mesh.compute_midpoints(mesh, 1, facets)
        assert distance(midpoints).max(initial=0.0) < 1e-8, name
        assert np.all((midpoints[:, 0] >= 0) & (midpoints[:, 0] <= L) & (midpoints[:, 1] >= 0)
                      & (midpoints[:, 1] <= W)), name


def test_city_refined_near_buildings(city, comm):
    """Cells touching the walls have diameter ~ h/3; cells far from every building ~ h."""
    mesh = city.mesh
    cells = np.arange(mesh.topology.index_map(2).size_local, dtype=np.int32)
    x = mesh.geometry.x[dolfinx.mesh.entities_to_geometry(mesh, 2, cells)]
    diameter = np.max([np.linalg.norm(x[:, i] - x[:, j], axis=1) for i, j in ((0, 1), (1, 2), (2, 0))], axis=0)
    distance = _distance_to_buildings(x.mean(axis=1))

    def mean(mask) -> float:
        total, count = comm.allreduce(np.array([diameter[mask].sum(), mask.sum()]), op=MPI.SUM)
        assert count > 10
        return total / count

    near, far = mean(distance < H_TEST / 3), mean(distance > 4 * H_TEST)
    assert near < 0.5 * far
    assert 0.7 * H_TEST < far < 1.5 * H_TEST
    assert near < 0.7 * H_TEST


def test_bundled_city(comm):
    data = load_city(comm)
    mesh = data.mesh
    assert mesh.geometry.index_map().size_global == BUNDLED_VERTICES
    assert mesh.topology.index_map(2).size_global == BUNDLED_CELLS
    assert {name: g.tag for name, g in data.physical_groups.items()} == {**CITY_TAGS, **CITY_CELL_TAGS}
    counts = {name: comm.allreduce(_owned(data.facet_tags, tag).size) for name, tag in CITY_TAGS.items()}
    assert counts == BUNDLED_FACETS
    assert comm.allreduce(_owned(data.cell_tags, CITY_CELL_TAGS["AIR"]).size) == BUNDLED_CELLS
    assert _integral(1.0 * ufl.dx(domain=mesh), comm) == pytest.approx(L * W - FOOTPRINTS.sum(), rel=1e-10)


def test_bundled_city_matches_the_generator(comm, mpi_tmp_path, monkeypatch):
    """Without the file, load_city warns and generates a mesh with the bundled counts."""
    monkeypatch.setattr(deepnum_fem.io, "MESH_DIR", mpi_tmp_path)
    with pytest.warns(UserWarning, match=r"city\.msh is missing.*make_city_mesh\.py"):
        data = load_city(comm)
    assert data.mesh.geometry.index_map().size_global == BUNDLED_VERTICES
    assert data.mesh.topology.index_map(2).size_global == BUNDLED_CELLS
    counts = {name: comm.allreduce(_owned(data.facet_tags, tag).size) for name, tag in CITY_TAGS.items()}
    assert counts == BUNDLED_FACETS
    assert BUNDLED_CITY_H == 8.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"h": 0.0}, r"expected a mesh size h > 0 \(m\), got 0\.0"),
    ({"h": -1.0}, r"h > 0 \(m\), got -1\.0"),
    ({"h": 8.0, "h_near": 10.0}, r"0 < h_near <= h = 8\.0 \(m\), got 10\.0"),
    ({"buildings": [(10, 10, 50, 50), (40, 40, 80, 80)]},
     r"expected disjoint buildings.*building 0 = \(10\.0, 10\.0, 50\.0, 50\.0\) and building 1 = "
     r"\(40\.0, 40\.0, 80\.0, 80\.0\) overlapping"),
    ({"buildings": [(10, 10, 50, 50), (50, 10, 80, 50)]}, r"disjoint buildings.*touching"),
    ({"buildings": [(350, 10, 420, 50)]}, r"building 0 .* 0 < x0 < x1 < 400\.0 .*got \(350, 10, 420, 50\)"),
    ({"buildings": [(0, 10, 50, 50)]}, r"strictly inside the domain\), got \(0, 10, 50, 50\)"),
    ({"buildings": [(60, 10, 50, 50)]}, r"x0 < x1"),
    ({"buildings": [(10, 10, 50)]}, r"building 0 as \(x0, y0, x1, y1\), got \(10, 10, 50\)"),
    ({"buildings": []}, r"at least one building"),
])
def test_city_invalid_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        city_blocks(**kwargs)


def test_city_3d_invalid_heights():
    with pytest.raises(ValueError, match=r"one building height per building \(6\), got 2"):
        city_blocks_3d(building_heights=(10.0, 20.0))
    with pytest.raises(ValueError, match=r"heights in \(0, height=40\.0\) m, got \[24\.0, 36\.0"):
        city_blocks_3d(height=40.0)
    with pytest.raises(ValueError, match=r"h > 0"):
        city_blocks_3d(h=-5.0)


def test_city_3d_volume_and_tags(comm):
    data = city_blocks_3d(comm=comm)   # default h = 20 m: a few thousand vertices
    mesh = data.mesh
    heights = np.array(CITY_BUILDING_HEIGHTS)
    volume = _integral(1.0 * ufl.dx(domain=mesh), comm)
    assert volume == pytest.approx(L * W * H_TOP - (FOOTPRINTS * heights).sum(), rel=1e-10)
    assert {name: g.tag for name, g in data.physical_groups.items()} == {**CITY_TAGS_3D, **CITY_CELL_TAGS}

    ds = ufl.Measure("ds", domain=mesh, subdomain_data=data.facet_tags)
    expected = {"INFLOW": W * H_TOP, "OUTFLOW": W * H_TOP, "SIDES": 2 * L * H_TOP,
                "BUILDINGS": (PERIMETERS * heights + FOOTPRINTS).sum(),
                "GROUND": L * W - FOOTPRINTS.sum(), "TOP": L * W}
    areas = {name: _integral(1.0 * ds(tag), comm) for name, tag in CITY_TAGS_3D.items()}
    assert areas == pytest.approx(expected, rel=1e-10)
    for name, axis, value in (("GROUND", 2, 0.0), ("TOP", 2, H_TOP), ("INFLOW", 0, 0.0), ("OUTFLOW", 0, L)):
        midpoints = dolfinx.mesh.compute_midpoints(mesh, 2, _owned(data.facet_tags, CITY_TAGS_3D[name]))
        assert np.abs(midpoints[:, axis] - value).max(initial=0.0) < 1e-8, name
