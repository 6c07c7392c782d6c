"""The district in 3D: its volume and boundary areas exact to the prisms, the tags where they
belong, the wind's split of the side wall, a 3D plume that matches the 2D one where it must, and
the checks of the heights."""

from __future__ import annotations

import math

from mpi4py import MPI

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import pytest
import torch
import ufl

import deepnum_fem as dnf
from deepnum_fem.geometry import (
    DISTRICT_BUILDING_HEIGHT,
    DISTRICT_TAGS_3D,
    WIND_TAGS,
    district_domain,
    district_domain_3d,
    wind_boundaries,
)
from deepnum_fem.geometry.district import circle_polygon
from deepnum_fem.geometry.polygons import inside, signed_area
from deepnum_fem.models import Transport, gaussian_source, potential_flow

# four large bundled blocks (8,100-11,800 m²) west, south and south-east of the centre, few
# enough for a coarse 3D mesh in well under a second
BLOCKS = [dnf.io.load_district_footprints()["buildings"][i] for i in (0, 1, 2, 7)]
RADIUS, TOP, H = 280.0, 30.0, 20.0
AREAS = np.array([signed_area(b) for b in BLOCKS])
PERIMETERS = np.array([np.linalg.norm(np.roll(b, -1, axis=0) - b, axis=1).sum() for b in BLOCKS])


def _total(comm, form) -> float:
    return comm.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(form)), op=MPI.SUM)


@pytest.mark.parametrize("heights", [(6.0, 12.0, 18.0, TOP), None], ids=["mixed, one through the top", "default"])
def test_the_volume_and_the_tag_areas_are_exact_to_the_prisms(comm, heights):
    data = district_domain_3d(BLOCKS, radius=RADIUS, height=TOP, building_heights=heights, h=H, comm=comm)
    z = np.full(len(BLOCKS), DISTRICT_BUILDING_HEIGHT) if heights is None else np.array(heights)
    assert {name: g.tag for name, g in data.physical_groups.items()} == {**DISTRICT_TAGS_3D, "AIR": 1}
    outer = circle_polygon(RADIUS, H)
    mesh = data.mesh
    one = dolfinx.fem.Constant(mesh, 1.0)
    ds = ufl.Measure("ds", domain=mesh, subdomain_data=data.facet_tags)
    roofs = z < TOP
    expected = {"OUTER": np.linalg.norm(np.roll(outer, -1, axis=0) - outer, axis=1).sum() * TOP,
                "GROUND": signed_area(outer) - AREAS.sum(),
                "TOP": signed_area(outer) - AREAS[~roofs].sum(),
                "BUILDINGS": PERIMETERS @ z + AREAS[roofs].sum()}
    assert _total(comm, one * ufl.dx) == pytest.approx(signed_area(outer) * TOP - AREAS @ z, rel=1e-10)
    assert {k: _total(comm, one * ds(DISTRICT_TAGS_3D[k])) for k in expected} == pytest.approx(expected, rel=1e-10)
    # every exterior facet is tagged, once; the horizontal tags lie in their planes
    fdim = 2
    mesh.topology.create_connectivity(fdim, 3)
    exterior = dolfinx.mesh.exterior_facet_indices(mesh.topology)
    n_local = mesh.topology.index_map(fdim).size_local
    tagged = data.facet_tags.indices
    assert np.unique(tagged).size == tagged.size
    assert comm.allreduce(np.setxor1d(exterior[exterior < n_local], tagged[tagged < n_local]).size) == 0
    for name, level in (("GROUND", 0.0), ("TOP", TOP)):
        mid = dolfinx.mesh.compute_midpoints(mesh, fdim, data.facet_tags.find(DISTRICT_TAGS_3D[name]))
        assert np.abs(mid[:, 2] - level).max(initial=0.0) < 1e-9 * TOP, name


def test_the_wind_splits_the_side_wall(comm):
    data = district_domain_3d(BLOCKS, radius=RADIUS, height=TOP, building_heights=[TOP] * 4, h=H, h_near=H,
                              comm=comm)
    direction = np.array([math.cos(2.0), math.sin(2.0)])
    split = wind_boundaries(data, direction)
    assert set(split.physical_groups) == {"AIR", "INFLOW", "OUTFLOW", "BUILDINGS", "GROUND", "TOP"}
    ds = ufl.Measure("ds", domain=split.mesh, subdomain_data=split.facet_tags)
    n = ufl.FacetNormal(split.mesh)
    d = dolfinx.fem.Constant(split.mesh, np.append(direction, 0.0))
    one = dolfinx.fem.Constant(split.mesh, 1.0)
    outer = circle_polygon(RADIUS, H)
    side = np.linalg.norm(np.roll(outer, -1, axis=0) - outer, axis=1).sum() * TOP
    inflow, outflow = (_total(comm, one * ds(WIND_TAGS[k])) for k in ("INFLOW", "OUTFLOW"))
    assert inflow + outflow == pytest.approx(side, rel=1e-10)
    assert abs(inflow - outflow) <= 2 * side / len(outer)         # half the wall each, to a panel
    assert _total(comm, ufl.conditional(ufl.gt(ufl.dot(d, n), 0), 1.0, 0.0) * ds(WIND_TAGS["INFLOW"])) == 0.0
    assert _total(comm, ufl.conditional(ufl.lt(ufl.dot(d, n), 0), 1.0, 0.0) * ds(WIND_TAGS["OUTFLOW"])) == 0.0
    for name in ("GROUND", "TOP", "BUILDINGS"):               # kept as they were
        tag = DISTRICT_TAGS_3D[name]
        assert _total(comm, one * ds(tag)) == pytest.approx(
            _total(comm, one * ufl.Measure("ds", domain=data.mesh, subdomain_data=data.facet_tags)(tag)), rel=1e-12)


SOURCE = (-200.0, -20.0)     # upwind of the blocks, in the street space
SENSORS = np.array([[-40.0, 0.0], [120.0, 40.0], [180.0, 0.0], [40.0, 60.0], [0.0, -40.0]])
LEVELS = (3.0, 15.0, 27.0)


def _plume(data, comm) -> tuple[np.ndarray, float]:
    """Steady concentration at the sensors (``(levels, sensors)`` in 3D) and its integral, for a
    2 m/s potential flow toward 17° and a z-independent Gaussian source at :data:`SOURCE`."""
    data = wind_boundaries(data, (1.0, 0.3))
    wind = potential_flow(data, inflow="INFLOW", outflow="OUTFLOW", speed=2.0)
    model = Transport(data, wind, dt=math.inf, theta=1.0, diffusivity=5.0, decay=1e-3, dirichlet={"INFLOW": 0.0})
    source = gaussian_source(torch.as_tensor(model.coordinates[:, :2]), SOURCE, 100.0, 15.0)   # µg/m³/s
    with torch.no_grad():
        c = model.step(model.zeros(), source=source)
    three = data.mesh.geometry.dim == 3
    points = np.vstack([np.column_stack([SENSORS, np.full(len(SENSORS), z)]) for z in LEVELS]) if three else SENSORS
    values = model.sensors(points)(c).numpy()
    total = float(dnf.parallel.sum(model.mass_weights @ c, comm))
    model.destroy()
    return (values.reshape(len(LEVELS), -1) if three else values), total


def test_a_plume_between_buildings_through_the_top_is_the_2d_plume(comm):
    """Every building reaches the top and the source does not depend on z: the 3D problem's
    solution is the 2D one's at every height. The 3D mesh (h = 20 m, 10 m at the walls; 2,965
    vertices) is far coarser than the 2D one (10 m, 2.5 m; 4,884): measured, the 3D sensors
    differ from the 2D values by 3.7 % of the largest, spread over the height by 0.6 %, and the
    integral over the height is 2.2 % below 2D's (the sensors differ by 3.4–4.4 % at 3D sizes
    h = 15–25 m: the error of the coarse 3D mesh). The bounds are about twice those. With one
    building left out of the 3D mesh the sensors differ by 16 %; with the lid or the ground
    tagged as the side wall (then split into inflow and outflow), by 98 %. A lid tagged as a
    wall is the same no-flux boundary: the tag test catches that."""
    assert not any(inside(np.array([SOURCE, *SENSORS]), b).any() for b in BLOCKS)
    flat, flat_total = _plume(district_domain(BLOCKS, radius=RADIUS, h=10.0, comm=comm), comm)
    data = district_domain_3d(BLOCKS, radius=RADIUS, height=TOP, building_heights=[TOP] * len(BLOCKS), h=H,
                              comm=comm)
    tall, tall_total = _plume(data, comm)
    peak = np.abs(flat).max()
    assert peak > 0.1, flat                                      # the plume reaches the sensors
    assert np.abs(tall - flat).max() < 0.075 * peak, (tall, flat)
    assert np.abs(tall - tall.mean(axis=0)).max() < 0.015 * peak, tall
    assert tall_total / TOP == pytest.approx(flat_total, rel=0.045)
    if comm.size > 1:     # the same mesh on one rank: the distributed solve agrees
        serial, serial_total = _plume(district_domain_3d(
            BLOCKS, radius=RADIUS, height=TOP, building_heights=[TOP] * len(BLOCKS), h=H, comm=MPI.COMM_SELF),
            MPI.COMM_SELF)
        assert np.abs(serial - tall).max() < 1e-8 * peak and tall_total == pytest.approx(serial_total, rel=1e-10)


def test_bad_heights_are_refused(comm):
    def build(heights, height=TOP, blocks=BLOCKS):
        district_domain_3d(blocks, radius=RADIUS, height=height, building_heights=heights, h=H, comm=comm)

    with pytest.raises(ValueError, match=r"one building height per building \(4\), got 3"):
        build([10.0, 10.0, 10.0])
    with pytest.raises(ValueError, match=r"\(0, 20\] m or equal to height = 30 m .*got -1 m for building 2"):
        build([10.0, 10.0, -1.0, 10.0])
    with pytest.raises(ValueError, match="got 0 m for building 0"):
        build([0.0, 10.0, 10.0, 10.0])
    with pytest.raises(ValueError, match="got 31 m for building 3"):
        build([10.0, 10.0, 10.0, 31.0])
    with pytest.raises(ValueError, match="got 25 m for building 1"):       # a layer of air thinner than h_near
        build([10.0, 25.0, 10.0, 10.0])
    with pytest.raises(ValueError, match="got nan m for building 0"):
        build([math.nan, 10.0, 10.0, 10.0])
    with pytest.raises(ValueError, match=r"expected a domain height > 0 \(m\), got -5"):
        build(None, height=-5.0)
    with pytest.raises(ValueError, match=rf"got {DISTRICT_BUILDING_HEIGHT:g} m for building 0"):   # the
        build(None, height=DISTRICT_BUILDING_HEIGHT + 5.0)    # rule's default, too close to this top
    square = np.array([[0.0, 0.0], [20.0, 0.0], [20.0, 20.0], [0.0, 20.0]])
    with pytest.raises(ValueError, match="district_domain_3d: buildings 0 and 1 cross"):   # as in 2D
        build(None, blocks=[square, square + [15.0, -5.0]])
