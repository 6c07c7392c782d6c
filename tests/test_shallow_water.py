"""Shallow water: lake at rest, gravity-wave speed, volume conservation, gradients, 1 vs 2 ranks, errors."""

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
from deepnum_fem.errors import ShapeError
from deepnum_fem.models.shallow_water import ShallowWater, tidal_elevation


def _box_tags(mesh, open_sea: bool):
    """Facet tags: 2 (open sea) at x = x_max when ``open_sea``, 1 (land) elsewhere."""
    fdim = mesh.topology.dim - 1
    x_max = mesh.comm.allreduce(mesh.geometry.x[:, 0].max(), op=MPI.MAX)
    mesh.topology.create_connectivity(fdim, fdim + 1)
    facets = dolfinx.mesh.exterior_facet_indices(mesh.topology)
    mid = dolfinx.mesh.compute_midpoints(mesh, fdim, facets)
    values = np.where(open_sea & np.isclose(mid[:, 0], x_max), 2, 1).astype(np.int32)
    return dolfinx.mesh.meshtags(mesh, fdim, facets, values)


def _bump(mesh, depth=10.0, height=5.0, centre=(500.0, 500.0), width=200.0):
    """P1 bathymetry: ``depth`` minus a Gaussian bump of ``height``."""
    hb = dolfinx.fem.Function(dolfinx.fem.functionspace(mesh, ("Lagrange", 1)))
    hb.interpolate(lambda x: depth - height * np.exp(-((x[0] - centre[0]) ** 2 + (x[1] - centre[1]) ** 2)
                                                      / (2 * width**2)))
    return hb


def _global(model, x: torch.Tensor) -> float:
    return model.comm.allreduce(float(x.abs().max()) if x.numel() else 0.0, op=MPI.MAX)


def test_lake_at_rest_stays_at_rest_over_a_bump(comm):
    """Level 0.5 m over a Gaussian bump, friction, Coriolis, viscosity: the first Newton solve
    starts from zero and must find the rest state; 100 steps keep it to round-off."""
    mesh = dolfinx.mesh.create_rectangle(comm, [[0.0, 0.0], [1000.0, 1000.0]], [6, 6])
    model = ShallowWater(mesh, _bump(mesh), facet_tags=_box_tags(mesh, False), dt=20.0, coriolis=1e-4,
                         drag=0.0025, viscosity=1.0)
    state0 = model.initial_state(0.5)
    with torch.no_grad():
        state, _ = model.simulate(100, state0)
    assert _global(model, model.velocity(state)) < 1e-10
    assert _global(model, model.elevation(state) - 0.5) < 1e-10


def test_standing_wave_period_gives_the_gravity_wave_speed(comm):
    """Gravest mode of a closed channel, η = A cos(πx/L): period 2L/√(gH), i.e. speed √(gH)."""
    L, depth, amplitude, g = 100.0, 2.0, 1e-3, 9.81
    period = 2 * L / math.sqrt(g * depth)
    steps_per_period = 50
    mesh = dolfinx.mesh.create_rectangle(comm, [[0.0, 0.0], [L, 10.0]], [32, 2])
    model = ShallowWater(mesh, depth, facet_tags=_box_tags(mesh, False), dt=period / steps_per_period, g=g,
                         drag=0.0, viscosity=0.0)
    gauge = model.sensors(np.array([[0.0, 5.0]]))
    with torch.no_grad():
        _, series = model.simulate(int(1.35 * steps_per_period),
                                   model.initial_state(lambda x: amplitude * np.cos(np.pi * x[0] / L)),
                                   observe=lambda w, k: gauge(w))
    eta = np.concatenate([[amplitude], series[:, 0].numpy()])
    t = model.dt * np.arange(len(eta))
    k = np.flatnonzero(np.sign(eta[:-1]) != np.sign(eta[1:]))
    crossings = t[k] - eta[k] * model.dt / (eta[k + 1] - eta[k])      # linear interpolation
    assert len(crossings) >= 3, crossings
    measured_speed = 2 * L / (crossings[2] - crossings[0])
    assert abs(measured_speed / math.sqrt(g * depth) - 1) < 0.02, (measured_speed, math.sqrt(g * depth))
    # θ = 0.6 damps the wave a little per period, Crank–Nicolson would not
    assert 0.5 * amplitude < np.abs(eta[-20:]).max() < amplitude


def test_volume_is_conserved_in_a_closed_basin(comm):
    """A 2 m hump on 10 m over a bump (nonlinear), friction and Coriolis: ∫ η dx is constant."""
    mesh = dolfinx.mesh.create_rectangle(comm, [[0.0, 0.0], [1000.0, 1000.0]], [8, 8])
    model = ShallowWater(mesh, _bump(mesh, height=3.0), facet_tags=_box_tags(mesh, False), dt=5.0, coriolis=1e-4,
                         drag=0.0025, viscosity=1.0)
    state0 = model.initial_state(lambda x: 2.0 * np.exp(-((x[0] - 400) ** 2 + (x[1] - 450) ** 2) / (2 * 150.0**2)))
    with torch.no_grad():
        state, volumes = model.simulate(40, state0, observe=lambda w, k: model.volume(w))
    perturbation = float(model.volume(state0)) - model.bed_volume
    drift = float((volumes - model.volume(state0)).abs().max())
    assert drift < 1e-10 * perturbation, (drift, perturbation)
    assert _global(model, model.velocity(state)) > 0.1          # the water did move


# -- gradients ---------------------------------------------------------------------------------
GAUGES = np.array([[200.0, 300.0], [600.0, 500.0], [900.0, 700.0]])


def _tidal_bay(comm, n=(6, 4), drag=0.0025, **kwargs):
    """A 1000 x 800 m basin over a bump, open to a two-constituent tide at x = 1000."""
    mesh = dolfinx.mesh.create_rectangle(comm, [[0.0, 0.0], [1000.0, 800.0]], list(n))
    tide = [(0.1, 3000.0, 0.0), (0.05, 2000.0, 1.0)]
    model = ShallowWater(mesh, _bump(mesh, centre=(500.0, 400.0)), facet_tags=_box_tags(mesh, True), dt=20.0,
                         coriolis=1e-4, drag=drag, viscosity=1.0, tide=tide, **kwargs)
    return model, model.sensors(GAUGES)


def _gauge_loss(model, gauges, drag, steps=50, checkpoint_every=10):
    _, local = model.simulate(steps, drag=drag, observe=lambda w, k: gauges.local(w),
                              checkpoint_every=checkpoint_every)
    return (dnf.parallel.sum(local, model.comm) ** 2).sum()


def test_taylor_drag_constant_through_50_newton_steps(comm):
    model, gauges = _tidal_bay(comm)
    m = torch.tensor(0.0025, dtype=torch.float64)
    rates = dnf.taylor_test(lambda c: _gauge_loss(model, gauges, c), m, torch.tensor(0.002, dtype=torch.float64),
                            h0=0.5)
    assert min(rates) >= 1.9, rates


def test_taylor_learned_drag_law_weights_through_50_newton_steps(comm):
    """A network drag law inside the weak form (``ml_operator``): c_d = c0 exp(N_θ(|u|, H)),
    the coastal demo's closure; gradients in θ through 50 Newton steps with checkpointing."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)).double()
    dnf.parallel.broadcast_parameters(net)

    def drag(u, H):
        speed = ufl.sqrt(ufl.dot(u, u) + 1e-16)
        N = dnf.ml_operator(net, operands=(speed, H / 10.0), quadrature_degree=4)
        return 0.0025 * ufl.exp(N) * speed * u / H

    model, gauges = _tidal_bay(comm, drag=drag)

    def loss():
        _, local = model.simulate(50, observe=lambda w, k: gauges.local(w), checkpoint_every=10)
        return (dnf.parallel.sum(local, model.comm) ** 2).sum()

    rates = dnf.taylor_test_parameters(loss, net)
    assert min(rates) >= 1.9, rates


def test_taylor_drag_field_through_50_newton_steps(comm):
    mesh_model, _ = _tidal_bay(comm)
    D = dolfinx.fem.functionspace(mesh_model.mesh, ("DG", 0))
    field = dolfinx.fem.Function(D)
    field.x.array[:] = 0.0025
    mesh = mesh_model.mesh
    model = ShallowWater(mesh, _bump(mesh, centre=(500.0, 400.0)), facet_tags=_box_tags(mesh, True), dt=20.0,
                         coriolis=1e-4, drag=field, viscosity=1.0, tide=mesh_model.tide)
    gauges = model.sensors(GAUGES)
    n = dnf.convert.n_owned(field)
    m = torch.full((n,), 0.0025, dtype=torch.float64)
    dm = 0.002 * torch.rand(n, dtype=torch.float64)
    rates = dnf.taylor_test(lambda c: _gauge_loss(model, gauges, c), m, dm, h0=0.5)
    assert min(rates) >= 1.9, rates


def test_manning_friction_is_the_quadratic_drag_it_stands_for_and_has_a_taylor_rate_of_2(comm):
    """``friction="manning"`` with n is the quadratic drag c_d = g n² / H^(1/3): on a flat bed
    (H ≈ h_b) the two give the same gauges for c_d from n, to the depth's variation; and the
    gradient in a P1 field of n through 50 Newton steps has a Taylor rate of 2."""
    mesh = dolfinx.mesh.create_rectangle(comm, [[0.0, 0.0], [1000.0, 800.0]], [10, 8])
    tags, tide = _box_tags(mesh, True), [(0.01, 3000.0, 0.0)]
    n_value, depth = 0.03, 10.0
    manning = ShallowWater(mesh, depth, facet_tags=tags, dt=20.0, drag=n_value, friction="manning", tide=tide)
    quadratic = ShallowWater(mesh, depth, facet_tags=tags, dt=20.0, drag=9.81 * n_value**2 / depth ** (1 / 3),
                             tide=tide)
    series = []
    for m in (manning, quadratic):
        at = m.sensors(GAUGES)
        series.append(dnf.parallel.sum(m.simulate(20, observe=lambda w, k, at=at: at.local(w))[1], comm))
    # the elevation (1 cm) changes H by 0.1 %, so the two drags differ by ~0.03 %
    assert torch.allclose(series[0], series[1], rtol=0, atol=1e-3 * float(series[1].abs().max()))
    assert float((series[0] - series[1]).abs().max()) > 0          # not the same form by accident
    P1 = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
    field = dolfinx.fem.Function(P1)
    model = ShallowWater(mesh, _bump(mesh, centre=(500.0, 400.0)), facet_tags=tags, dt=20.0, drag=field,
                         friction="manning", tide=[(0.1, 3000.0, 0.0)])
    gauges = model.sensors(GAUGES)
    n = dnf.convert.n_owned(field)
    m = torch.full((n,), 0.03, dtype=torch.float64)
    dm = 0.02 * torch.rand(n, dtype=torch.float64)
    rates = dnf.taylor_test(lambda c: _gauge_loss(model, gauges, c), m, dm, h0=0.5)
    assert min(rates) >= 1.9, rates
    with pytest.raises(ValueError, match="friction must be 'quadratic' or 'manning'"):
        ShallowWater(mesh, depth, facet_tags=tags, dt=20.0, friction="chezy")


def test_gradcheck_of_a_two_step_rollout():
    """gradcheck perturbs entries one by one: each rank checks a serial copy (COMM_SELF)."""
    model, gauges = _tidal_bay(MPI.COMM_SELF, n=(2, 2))
    state0 = model.initial_state(lambda x: 0.3 * np.sin(x[0] / 300.0),
                                 lambda x: np.stack([0.2 + 0 * x[0], 0.1 * np.cos(x[1] / 200.0)]))
    state0.requires_grad_(True)
    drag = torch.tensor(0.003, dtype=torch.float64, requires_grad=True)

    def fn(w0, c):
        _, obs = model.simulate(2, w0, drag=c, observe=lambda w, k: gauges(w))
        return obs

    assert torch.autograd.gradcheck(fn, (state0, drag), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_a_drag_law_callable_matches_the_builtin_drag(comm):
    model, gauges = _tidal_bay(comm)
    c_d = 0.0025
    law, law_gauges = _tidal_bay(comm, drag=lambda u, H: c_d * ufl.sqrt(ufl.dot(u, u) + 1e-16) * u / H)
    with torch.no_grad():
        _, a = model.simulate(10, observe=lambda w, k: gauges(w))
        _, b = law.simulate(10, observe=lambda w, k: law_gauges(w))
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)
    assert float(a.abs().max()) > 0.05        # the tide came in


@pytest.mark.skipif(MPI.COMM_WORLD.size == 1, reason="needs two ranks")
def test_one_rank_and_two_ranks_give_the_same_gauge_series(comm):
    series = []
    for c in (comm, MPI.COMM_SELF):
        model, gauges = _tidal_bay(c, n=(8, 6))
        with torch.no_grad():
            _, obs = model.simulate(30, observe=lambda w, k, g=gauges: g(w))
        series.append(obs.numpy())
    np.testing.assert_allclose(series[0], series[1], rtol=1e-8, atol=1e-10)
    assert np.abs(series[0]).max() > 0.05


def test_the_tide_enters_the_bundled_bay(comm):
    """The coastal use case: the bundled bay mesh (~27k dofs), shelf bathymetry, a rising M2 tide."""
    from deepnum_fem.bathymetry import bathymetry_function, shelf_bathymetry
    from deepnum_fem.io import load_coast

    data = load_coast(comm)
    hb = bathymetry_function(dolfinx.fem.functionspace(data.mesh, ("Lagrange", 1)), shelf_bathymetry)
    m2 = 44712.0
    model = ShallowWater(data, hb, dt=300.0, coriolis=1e-4, viscosity=10.0,
                         tide=[(1.0, m2, 0.0)], t0=-m2 / 4)      # starts at mean level, rising
    gauges = model.sensors(np.array([[15000.0, 6000.0], [3000.0, 6000.0]]))   # mouth, head
    with torch.no_grad():
        state, series = model.simulate(4, observe=lambda w, k: gauges(w))
    mouth, head = series[:, 0].numpy(), series[:, 1].numpy()
    assert np.all(np.diff(mouth) > 0) and 0.05 < mouth[-1] < 0.3, mouth
    assert 0 < head[-1] < mouth[-1], head
    assert float(model.volume(state)) > model.bed_volume     # water came in


def test_tide_and_helpers():
    assert tidal_elevation(None, 3.0) == 0.0
    assert tidal_elevation([(1.0, 10.0, 0.0), (0.5, 4.0, math.pi / 2)], 2.5) == pytest.approx(
        math.cos(math.pi / 2) + 0.5 * math.cos(math.pi * 1.25 + math.pi / 2))


def test_a_tide_from_a_table_of_constituents_beats_at_the_spring_neap_period():
    """M2 + S2 from a table: their beat, the spring–neap cycle, is 14.77 days (1 / (1/T_S2 -
    1/T_M2)); springs (in phase) reach a_M2 + a_S2, neaps |a_M2 - a_S2|; a phase is a lag."""
    tide = dnf.models.tide_constituents({"M2": (2.0, 0.0), "S2": (0.7, 0.0)})
    T_m2, T_s2 = (dnf.models.TIDAL_PERIODS[k] for k in ("M2", "S2"))
    assert T_m2 / 3600 == pytest.approx(12.4206012, rel=1e-8) and T_s2 == 43200.0
    beat = 1 / (1 / T_s2 - 1 / T_m2)
    assert beat / 86400 == pytest.approx(14.765, abs=1e-3)
    t = np.linspace(0.0, 2 * T_m2, 20001)

    def envelope(t0):
        return max(abs(tidal_elevation(tide, t0 + x)) for x in t)

    assert envelope(0.0) == pytest.approx(2.7, rel=1e-4)
    assert envelope(beat / 2 - T_m2) == pytest.approx(1.3, rel=2e-2)
    lagged = dnf.models.tide_constituents({"M2": (1.0, 90.0)})
    assert tidal_elevation(lagged, T_m2 / 4) == pytest.approx(1.0)       # high water a quarter period late
    with pytest.raises(ValueError, match="unknown tidal constituent"):
        dnf.models.tide_constituents({"Z9": (1.0, 0.0)})


def test_volume_and_split_helpers(comm):
    model, _ = _tidal_bay(comm, n=(4, 4))
    state = model.initial_state(0.25, lambda x: np.stack([1.0 + 0 * x[0], -2.0 + 0 * x[1]]))
    assert float(model.volume(state)) == pytest.approx(model.bed_volume + 0.25 * 1000.0 * 800.0, rel=1e-12)
    u = model.velocity(state)
    assert u.shape[-1] == 2 and torch.allclose(u, torch.tensor([1.0, -2.0], dtype=torch.float64).expand_as(u))
    assert torch.allclose(model.elevation(state), torch.full((model.n_eta,), 0.25, dtype=torch.float64))
    total = comm.allreduce(model.n_eta, op=MPI.SUM)
    assert total == model.Q.dofmap.index_map.size_global


def test_bad_input_gives_clear_errors(comm):
    model, _ = _tidal_bay(comm, n=(4, 4))
    with pytest.raises(ShapeError, match=r"state of shape \(\d+,\)"):
        model.step(torch.zeros(model.n + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="theta"):
        ShallowWater(model.mesh, 10.0, dt=1.0, theta=0.4)
    with pytest.raises(ValueError, match="open-sea tag"):
        ShallowWater(model.mesh, 10.0, dt=1.0, tide=[(1.0, 100.0, 0.0)])
    # a dry point at one corner, on one rank's part of the mesh: every rank raises
    dry = _bump(model.mesh, depth=10.0, height=12.0, centre=(0.0, 0.0), width=50.0)
    dry_model = ShallowWater(model.mesh, dry, dt=1.0)
    with pytest.raises(ValueError, match="depth"):
        dry_model.step(dry_model.initial_state())
    with pytest.raises(ValueError, match="wetting and drying"):
        model.step(model.initial_state(-20.0))
