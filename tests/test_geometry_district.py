"""The bundled Prague-Bubeneč district: footprints and streets as extracted, its mesh exact to
the polygons, the generator's checks, the wind's boundaries and the street emissions."""

from __future__ import annotations

import math

from mpi4py import MPI

import dolfinx.fem
import numpy as np
import pytest
import torch
import ufl

import deepnum_fem as dnf
from deepnum_fem.geometry import DISTRICT_TAGS, WIND_TAGS, district_domain, wind_boundaries
from deepnum_fem.geometry.district import circle_polygon
from deepnum_fem.geometry.polygons import first_crossing, inside, signed_area
from deepnum_fem.models import StreetEmission, Transport, polyline_source, potential_flow, street_sources

FOOTPRINTS = dnf.io.load_district_footprints()
BLOCKS = FOOTPRINTS["buildings"]


def _total(comm, form) -> float:
    return comm.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(form)), op=MPI.SUM)


def _perimeter(ring: np.ndarray) -> float:
    return float(np.linalg.norm(np.roll(ring, -1, axis=0) - ring, axis=1).sum())


def test_the_footprints_are_what_the_extraction_recorded():
    record = FOOTPRINTS["provenance"]["processing"]
    assert record["raw_buildings"] == 144 and record["streets"] == 35 == len(FOOTPRINTS["streets"])
    assert len(BLOCKS) == record["blocks"]
    assert all(signed_area(b) > 0 for b in BLOCKS)                      # counter-clockwise
    assert abs(sum(signed_area(b) for b in BLOCKS) - record["block_area_m2"]) < 1.0   # 1 cm rounding
    assert first_crossing(BLOCKS) is None                               # simple, disjoint, not touching
    assert not any(inside(a[:1], b)[0] for a in BLOCKS for b in BLOCKS if a is not b)
    radius = FOOTPRINTS["radius"]
    assert max(np.linalg.norm(b, axis=1).max() for b in BLOCKS) < radius - dnf.io.BUNDLED_DISTRICT["h"]
    # the street centrelines lie in the street space, and keep their length through simplification
    length = sum(float(np.linalg.norm(np.diff(s, axis=0), axis=1).sum()) for s in FOOTPRINTS["streets"])
    assert abs(length - record["street_length_m"]) < 0.005 * record["street_length_m"]
    vertices = np.concatenate(FOOTPRINTS["streets"])
    assert not any(inside(vertices, b).any() for b in BLOCKS)


def _check_mesh(data, comm, radius: float, h: float):
    outer = circle_polygon(radius, h)
    ds = ufl.Measure("ds", domain=data.mesh, subdomain_data=data.facet_tags)
    one = dolfinx.fem.Constant(data.mesh, 1.0)
    area = signed_area(outer) - sum(signed_area(b) for b in BLOCKS)
    assert _total(comm, one * ufl.dx) == pytest.approx(area, rel=1e-10)
    assert _total(comm, one * ds(DISTRICT_TAGS["OUTER"])) == pytest.approx(_perimeter(outer), rel=1e-10)
    assert _total(comm, one * ds(DISTRICT_TAGS["BUILDINGS"])) == pytest.approx(
        sum(_perimeter(b) for b in BLOCKS), rel=1e-10)


def test_the_bundled_mesh_is_exact_to_the_polygons(comm):
    data = dnf.io.load_district(comm)
    assert set(data.physical_groups) == {"AIR", "OUTER", "BUILDINGS"}
    _check_mesh(data, comm, FOOTPRINTS["radius"], dnf.io.BUNDLED_DISTRICT["h"])
    assert data.mesh.topology.index_map(0).size_global > 10_000


def test_the_generator_meshes_the_footprints_at_another_size(comm):
    data = district_domain(BLOCKS, radius=320.0, h=30.0, comm=comm)
    _check_mesh(data, comm, 320.0, 30.0)


def test_the_generator_refuses_bad_footprints(comm):
    square = np.array([[0.0, 0.0], [20.0, 0.0], [20.0, 20.0], [0.0, 20.0]])
    with pytest.raises(ValueError, match="building 1 lies inside building 0"):
        district_domain([square, 0.25 * square + 5.0], radius=100.0, h=10.0, comm=comm)
    with pytest.raises(ValueError, match="buildings 0 and 1 cross"):
        district_domain([square, square + [15.0, -5.0]], radius=100.0, h=10.0, comm=comm)
    with pytest.raises(ValueError, match="reaches 92.2 m from the centre"):
        district_domain([square + [70.0, 0.0]], radius=100.0, h=10.0, comm=comm)


@pytest.mark.parametrize("angle", [0.0, 2.0])
def test_the_wind_splits_the_circle_into_inflow_and_outflow(comm, angle):
    direction = np.array([math.cos(angle), math.sin(angle)])
    data = wind_boundaries(dnf.io.load_district(comm), direction)
    assert set(data.physical_groups) == {"AIR", "INFLOW", "OUTFLOW", "BUILDINGS"}
    ds = ufl.Measure("ds", domain=data.mesh, subdomain_data=data.facet_tags)
    n = ufl.FacetNormal(data.mesh)
    d = dolfinx.fem.Constant(data.mesh, direction)
    one = dolfinx.fem.Constant(data.mesh, 1.0)
    outer = circle_polygon(FOOTPRINTS["radius"], dnf.io.BUNDLED_DISTRICT["h"])
    inflow, outflow = (_total(comm, one * ds(WIND_TAGS[k])) for k in ("INFLOW", "OUTFLOW"))
    assert inflow + outflow == pytest.approx(_perimeter(outer), rel=1e-10)
    edge = _perimeter(outer) / len(outer)
    assert abs(inflow - outflow) <= 2 * edge                       # half the circle each, to an edge
    # the wind enters through every INFLOW facet and leaves through every OUTFLOW facet: the
    # flux of the direction is negative on one and positive on the other, and they balance
    flux_in, flux_out = (_total(comm, ufl.dot(d, n) * ds(WIND_TAGS[k])) for k in ("INFLOW", "OUTFLOW"))
    assert flux_in < 0 < flux_out and flux_in + flux_out == pytest.approx(0.0, abs=1e-9 * flux_out)
    assert _total(comm, ufl.conditional(ufl.gt(ufl.dot(d, n), 0), 1.0, 0.0) * ds(WIND_TAGS["INFLOW"])) == 0.0
    with pytest.raises(ValueError, match="no OUTER boundary"):
        wind_boundaries(data, -direction)                     # split again: from the original only


def test_a_polyline_source_emits_its_rate_per_metre():
    """Over the plane: rate (length + sqrt(2π) width) for a straight line, and a right-angle bend
    neither doubles nor drops the emission at the corner (it loses only the inner corner's
    overlap, a fraction of width² of the total)."""
    xs = np.linspace(-60.0, 160.0, 441)
    grid = torch.tensor(np.stack(np.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2))
    cell = (xs[1] - xs[0]) ** 2
    width, rate = 3.0, 2.5
    straight = polyline_source(grid, [[0.0, 0.0], [50.0, 0.0], [100.0, 0.0]], rate, width)
    assert float(straight.sum()) * cell == pytest.approx(rate * (100.0 + math.sqrt(2 * math.pi) * width), rel=1e-6)
    bend = polyline_source(grid, [[0.0, 0.0], [50.0, 0.0], [50.0, 50.0]], rate, width)
    exact_ends = rate * (100.0 + math.sqrt(2 * math.pi) * width)
    assert abs(float(bend.sum()) * cell - exact_ends) < rate * width * 2
    r = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    polyline_source(grid[:5], [[0.0, 0.0], [1.0, 0.0]], r, width).sum().backward()
    assert r.grad is not None and r.grad > 0


def test_the_street_traffic_lies_in_the_street_space(comm):
    """A steady plume over the real district: the streets' emission stays in the air (the
    centrelines are in the street space), and the concentration it makes is positive."""
    data = wind_boundaries(dnf.io.load_district(comm), (1.0, 0.3))
    wind = potential_flow(data, inflow="INFLOW", outflow="OUTFLOW", speed=2.0)
    model = Transport(data, wind, dt=math.inf, theta=1.0, diffusivity=1.0, dirichlet={"INFLOW": 0.0})
    basis = street_sources(model.coordinates, FOOTPRINTS["streets"], width=4.0)
    rates = torch.ones(len(FOOTPRINTS["streets"]), dtype=torch.float64)
    emitted = dnf.parallel.sum(model.mass_weights @ (rates @ basis), comm)
    nominal = sum(float(np.linalg.norm(np.diff(s, axis=0), axis=1).sum()) for s in FOOTPRINTS["streets"])
    assert 0.9 * nominal < float(emitted) < 1.1 * nominal
    with torch.no_grad():
        c = model.step(model.zeros(), source=rates @ basis)
    lowest = comm.allreduce(float(c.min()), op=MPI.MIN)
    highest = comm.allreduce(float(c.max()), op=MPI.MAX)
    assert highest > 0 and lowest > -0.05 * highest, (lowest, highest)
    model.destroy()


def test_a_street_emission_is_never_negative_and_its_gradient_is_exact(comm):
    """StreetEmission on the real district: >= 0 whatever its parameters (here pushed far
    negative), the inventory at the start, and a Taylor test of its parameters through a
    10-step rollout to the sensors."""
    data = wind_boundaries(dnf.io.load_district(comm), (1.0, 0.3))
    wind = potential_flow(data, inflow="INFLOW", outflow="OUTFLOW", speed=2.0)
    model = Transport(data, wind, dt=10.0, diffusivity=1.0, decay=1e-4, dirichlet={"INFLOW": 0.0})
    streets = FOOTPRINTS["streets"]
    basis = street_sources(model.coordinates, streets, width=4.0)
    inventory = torch.linspace(0.5, 2.0, len(streets), dtype=torch.float64)
    emission = StreetEmission(model.coordinates, basis, inventory, ((-350, -350), (350, 350)), scale=0.05)
    dnf.parallel.broadcast_parameters(emission)
    start = emission.field().detach()
    floor = 0.05 * torch.nn.functional.softplus(torch.tensor(-4.0, dtype=torch.float64))
    assert torch.allclose(start, inventory @ basis + floor, rtol=1e-12, atol=1e-15)
    with torch.no_grad():
        for p in emission.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 20.0 - 10.0)
        assert comm.allreduce(float(emission.field().min()), op=MPI.MIN) >= 0.0
        for p, original in zip(emission.parameters(), StreetEmission(
                model.coordinates, basis, inventory, ((-350, -350), (350, 350)), scale=0.05).parameters(),
                strict=True):
            p.copy_(original + 0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
    dnf.parallel.broadcast_parameters(emission)
    sensors = model.sensors([s[len(s) // 2] for s in streets[:6]])

    def loss() -> torch.Tensor:
        _, series = model.simulate(10, source=lambda k: emission(model.time(k)),
                                   observe=lambda c, k: sensors.local(c))
        return dnf.parallel.sum(series.square().sum(), comm)

    rates = dnf.taylor_test_parameters(loss, emission, h0=0.05, comm=comm)
    assert min(rates) >= 1.9, rates
    with pytest.raises(ValueError, match="must be >= 0"):
        StreetEmission(model.coordinates, basis, -inventory, ((-350, -350), (350, 350)), comm=comm)
    negative_here = basis.clone()
    if comm.rank == comm.size - 1:                 # one rank's fields only: every rank raises
        negative_here[0, :1] = -1.0
    with pytest.raises(ValueError, match="must be >= 0"):
        StreetEmission(model.coordinates, negative_here, inventory, ((-350, -350), (350, 350)), comm=comm)
    model.destroy()
