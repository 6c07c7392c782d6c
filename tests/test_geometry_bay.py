"""The bundled Rade de Brest: the outline as extracted from GSHHG, its mesh exact to the
polygons and tagged on every boundary facet, the bay's size, and a depth model over it."""

from __future__ import annotations

import shutil

from mpi4py import MPI

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import pytest
import ufl

import deepnum_fem as dnf
from deepnum_fem.bathymetry import bathymetry_function, shore_bathymetry
from deepnum_fem.geometry import COAST_CELL_TAGS, COAST_TAGS
from deepnum_fem.geometry.coast import check_coast
from deepnum_fem.geometry.polygons import first_crossing, inside, signed_area

OUTLINE = dnf.io.load_brest_bay_outline()
COAST, ISLANDS = OUTLINE["coastline"], OUTLINE["islands"]
RECORD = OUTLINE["provenance"]["processing"]
# meshes/README.md records these.
BUNDLED_VERTICES, BUNDLED_CELLS = 4690, 7765
BUNDLED_FACETS = {"LAND": 1596, "OPEN_SEA": 27}


def _total(comm, form) -> float:
    return comm.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(form)), op=MPI.SUM)


def _edges(ring: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.roll(ring, -1, axis=0) - ring, axis=1)


WATER = signed_area(COAST) - sum(abs(signed_area(r)) for r in ISLANDS)
OPEN_SEA = float(np.linalg.norm(np.diff(OUTLINE["open_sea_segment"], axis=0)))
LAND = float(_edges(COAST).sum()) - OPEN_SEA + sum(float(_edges(r).sum()) for r in ISLANDS)


def test_the_outline_is_a_simple_polygon_as_recorded():
    assert OUTLINE["open_sea"] == (0,) and len(COAST) == RECORD["coast_vertices"]
    assert [len(r) for r in ISLANDS] == RECORD["island_vertices"]
    assert signed_area(COAST) > 0                                  # counter-clockwise
    assert first_crossing([COAST]) is None                          # simple: no edges crossing or touching
    assert first_crossing([COAST, *ISLANDS]) is None                # islands disjoint from the coast and each other
    assert all(inside(r, COAST).all() for r in ISLANDS)
    check_coast(COAST, OUTLINE["open_sea"], ISLANDS, 800.0, None, None, False, None)   # what the generator checks
    assert WATER == pytest.approx(RECORD["water_area_m2"], abs=1.0)
    assert OPEN_SEA == pytest.approx(RECORD["open_sea_length_m"], abs=0.01)
    # the mouth joins the two headlands, as the projection of their GSHHG vertices puts them
    (kx, ky), (lon0, lat0) = OUTLINE["metres_per_degree"], OUTLINE["origin"]
    mouth = OUTLINE["provenance"]["processing"]["mouth"]
    ends = [[kx * (v[0] - lon0), ky * (v[1] - lat0)] for v in (mouth[k]["vertex"] for k in mouth)]
    assert np.abs(OUTLINE["open_sea_segment"] - np.array(ends)).max() < 0.01
    used = [p["id"] for p in OUTLINE["provenance"]["processing"]["polygons"] if p["use"] == "island"]
    assert len(used) == len(ISLANDS) and used[0] == "24632"


def test_the_water_is_the_size_of_the_rade_de_brest():
    """The inner bay (east of the Goulet's narrowest section) is 157.1 km² here, between the
    published 150 km² (15,000 ha; Trésor des régions, MGM) and 180-184 km² (French Wikipedia,
    'Rade de Brest'); GSHHG cuts the Élorn and Aulne estuaries short. The Goulet is 1.48 km
    wide here (published: 1.8 km from Portzic to Pointe des Espagnols, 1.5 km at its narrowest)."""
    i, j = OUTLINE["goulet_vertices"]
    inner_ring = COAST[i:j + 1]
    inner = signed_area(inner_ring) - sum(abs(signed_area(r)) for r in ISLANDS if inside(r[:1], inner_ring)[0])
    assert inner == pytest.approx(RECORD["inner_bay_area_m2"], abs=1.0)
    assert 150e6 < inner < 184e6
    assert 1300.0 < float(np.linalg.norm(OUTLINE["goulet"][1] - OUTLINE["goulet"][0])) < 1900.0
    assert 220e6 < WATER < 240e6                                    # with the Iroise approach to the mouth


def _check_mesh(data, comm):
    mesh = data.mesh
    assert {name: g.tag for name, g in data.physical_groups.items()} == {**COAST_CELL_TAGS, **COAST_TAGS}
    assert comm.allreduce(np.count_nonzero(data.cell_tags.indices < mesh.topology.index_map(2).size_local)) \
        == mesh.topology.index_map(2).size_global
    one = dolfinx.fem.Constant(mesh, 1.0)
    ds = ufl.Measure("ds", domain=mesh, subdomain_data=data.facet_tags)
    assert _total(comm, one * ufl.dx) == pytest.approx(WATER, rel=1e-10)          # polygonal: exact
    assert _total(comm, one * ds(COAST_TAGS["OPEN_SEA"])) == pytest.approx(OPEN_SEA, rel=1e-10)
    assert _total(comm, one * ds(COAST_TAGS["LAND"])) == pytest.approx(LAND, rel=1e-10)
    # every boundary facet tagged, once, and nothing else tagged
    mesh.topology.create_connectivity(1, 2)
    n_local = mesh.topology.index_map(1).size_local
    exterior = dolfinx.mesh.exterior_facet_indices(mesh.topology)
    tagged = data.facet_tags.indices
    assert np.unique(tagged).size == tagged.size
    assert comm.allreduce(np.setxor1d(exterior[exterior < n_local], tagged[tagged < n_local]).size) == 0
    return {name: comm.allreduce(int(np.count_nonzero(data.facet_tags.find(tag) < n_local)))
            for name, tag in COAST_TAGS.items()}


def test_the_bundled_mesh_is_exact_to_the_outline(comm):
    data = dnf.io.load_brest_bay(comm)
    assert _check_mesh(data, comm) == BUNDLED_FACETS
    assert data.mesh.topology.index_map(0).size_global == BUNDLED_VERTICES
    assert data.mesh.topology.index_map(2).size_global == BUNDLED_CELLS


def _vertices(mesh, comm) -> np.ndarray:
    x = np.concatenate(comm.allgather(mesh.geometry.x[:mesh.geometry.index_map().size_local, :2]))
    return x[np.lexsort(x.T[::-1])]


def test_without_the_file_the_outline_makes_the_same_mesh(comm, mpi_tmp_path, monkeypatch):
    """load_brest_bay meshes the JSON's outline with coastal_domain when the .msh is absent, with a
    warning: the same vertices, to the ASCII file's rounding."""
    assert OUTLINE["mesh"] == dnf.io.BUNDLED_BREST_BAY
    loaded = dnf.io.load_brest_bay(comm)
    if comm.rank == 0:
        shutil.copy(dnf.io.bundled_mesh_path("brest_bay").with_suffix(".json"), mpi_tmp_path)
    comm.Barrier()
    monkeypatch.setattr(dnf.io, "MESH_DIR", mpi_tmp_path)
    with pytest.warns(UserWarning, match=r"brest_bay\.msh is missing.*make_bay_mesh\.py"):
        generated = dnf.io.load_brest_bay(comm)
    assert _check_mesh(generated, comm) == BUNDLED_FACETS
    assert generated.mesh.topology.index_map(0).size_global == BUNDLED_VERTICES
    assert np.abs(_vertices(loaded.mesh, comm) - _vertices(generated.mesh, comm)).max() < 1e-6


def test_a_shore_distance_depth_over_the_bay(comm):
    """The model's depth is depth_shore on the land and grows with the distance to it (the open
    sea is not shore: the mouth is deep in its middle), below depth_offshore."""
    data = dnf.io.load_brest_bay(comm)
    model = shore_bathymetry(COAST, OUTLINE["open_sea"], ISLANDS, depth_shore=2.0, depth_offshore=40.0,
                             length=1500.0)
    H = bathymetry_function(dolfinx.fem.functionspace(data.mesh, ("Lagrange", 1)), model)
    n = H.function_space.dofmap.index_map.size_local
    lowest = comm.allreduce(float(H.x.array[:n].min()), op=MPI.MIN)
    highest = comm.allreduce(float(H.x.array[:n].max()), op=MPI.MAX)
    assert lowest == pytest.approx(2.0, abs=1e-9)                   # vertices on the land
    assert 30.0 < highest < 40.0
    # against the distance to the land sampled every metre or less, at the middles of the mouth
    # and of the Goulet and at a few points of the bay
    land = [COAST[1:]] + [np.vstack([r, r[:1]]) for r in ISLANDS]   # the coast without the mouth, edge 0
    samples = np.concatenate([np.concatenate([np.linspace(a, b, int(np.linalg.norm(b - a)) + 2)
                                              for a, b in zip(ring[:-1], ring[1:], strict=True)]) for ring in land])
    points = np.array([OUTLINE["open_sea_segment"].mean(axis=0), OUTLINE["goulet"].mean(axis=0),
                       [0.0, 0.0], [-15000.0, -2000.0], [5000.0, -4000.0]])
    distance = np.array([np.linalg.norm(samples - p, axis=1).min() for p in points])
    assert distance[0] > 3000.0 and distance[1] == pytest.approx(740.0, abs=5.0)
    assert model(points.T) == pytest.approx(2.0 + 38.0 * np.tanh(distance / 1500.0), abs=0.02)
