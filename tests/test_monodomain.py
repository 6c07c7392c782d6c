"""Monodomain model: exact front speeds, convergence, gradients through long rollouts,
one factorisation per rollout, 1 rank vs 2, and bad input."""

from __future__ import annotations

import math

from mpi4py import MPI

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import pytest
import torch

import deepnum_fem as dnf
from deepnum_fem.errors import NonFiniteError, ShapeError
from deepnum_fem.models.ionic import AlievPanfilov, HybridIonic, MitchellSchaeffer
from deepnum_fem.models.monodomain import Monodomain, Stimulus, activation_times, soft_activation_times


def _front_speed(ionic, *, h: float, dt: float, T: float, L: float = 20.0, D: float = 1.0,
                 comm=MPI.COMM_WORLD, **kwargs) -> float:
    """Speed of a planar front in a cable [0, L], from activation times at 0.4 L and 0.8 L."""
    mesh = dolfinx.mesh.create_interval(comm, int(round(L / h)), [0.0, L])
    stim = Stimulus(marker=lambda x: x[0] <= 0.05 * L, duration=1.0, amplitude=1.0)
    model = Monodomain(mesh, ionic, dt=dt, diffusivity=D, stimuli=[stim], **kwargs)
    W = model.point_weights(np.array([[0.4 * L], [0.8 * L]]))
    with torch.no_grad():
        _, traces = model.simulate(int(round(T / dt)), observe=lambda s, k: W @ s[0])
    t = activation_times(dnf.parallel.sum(traces, comm), dt)
    return 0.4 * L / float(t[1] - t[0])


AP_FAST = {"k": 8.0, "a": 0.1, "eps0": 0.0, "mu1": 0.0, "time_scale": 1.0}


@pytest.mark.parametrize("D", [1.0, 0.25])
def test_aliev_panfilov_front_speed_is_the_bistable_speed(D):
    ionic = AlievPanfilov(**AP_FAST)
    assert ionic.front_speed(D) == pytest.approx(1.6 * math.sqrt(D))
    c = _front_speed(ionic, h=0.025 * math.sqrt(D), dt=0.005, T=12.0, L=20.0 * math.sqrt(D), D=D)
    assert c == pytest.approx(1.6 * math.sqrt(D), rel=0.01)


def test_mitchell_schaeffer_front_speed_with_the_gate_open():
    ionic = MitchellSchaeffer(tau_close=1e12)   # the gate never closes: h stays 1
    assert ionic.front_speed(1.0) == pytest.approx(1.0866, abs=1e-4)
    c = _front_speed(ionic, h=0.025, dt=0.005, T=20.0)
    assert c == pytest.approx(1.0866, rel=0.01)


def test_front_speed_converges_in_space_at_second_order_and_in_time_at_first():
    ionic = AlievPanfilov(**AP_FAST)
    in_h = [_front_speed(ionic, h=h, dt=0.005, T=12.0, lumped_mass=True) for h in (0.2, 0.1, 0.05)]
    rate_h = math.log2(abs(in_h[0] - in_h[1]) / abs(in_h[1] - in_h[2]))
    in_dt = [_front_speed(ionic, h=0.05, dt=dt, T=12.0) for dt in (0.04, 0.02, 0.01)]
    rate_dt = math.log2(abs(in_dt[0] - in_dt[1]) / abs(in_dt[1] - in_dt[2]))
    assert rate_h == pytest.approx(2.0, abs=0.3)
    assert rate_dt == pytest.approx(1.0, abs=0.25)
    # both sequences approach the exact speed from below
    assert abs(in_h[2] - 1.6) < abs(in_h[0] - 1.6) and abs(in_dt[2] - 1.6) < abs(in_dt[0] - 1.6)


def _cable_at(T: float, dt: float, comm=MPI.COMM_WORLD, **kwargs) -> np.ndarray:
    """Owned potentials at time T of a cable [0, 10] (h = 0.1) whose first 1.5 units start
    excited (no stimulus: the time error is the scheme's alone), Aliev–Panfilov with recovery."""
    mesh = dolfinx.mesh.create_interval(comm, 100, [0.0, 10.0])
    model = Monodomain(mesh, AlievPanfilov(), dt=dt, diffusivity=1.0, **kwargs)
    state = model.initial_state()
    state[0] = torch.from_numpy((model.coordinates[:, 0] < 1.5).astype(np.float64))
    with torch.no_grad():
        for k in range(int(round(T / dt))):
            state = model.step(state, k)
    model.destroy()
    return state[0].numpy()


@pytest.mark.parametrize("scheme, lowest, highest", [
    ({"splitting": "godunov", "theta": 1.0, "reaction_order": 1}, 0.85, 1.25),
    ({"splitting": "strang", "theta": 0.5, "reaction_order": 1}, 1.0, 1.6),
    ({"splitting": "strang", "theta": 0.5, "reaction_order": 2}, 1.85, 2.2)])
def test_the_step_is_second_order_in_dt_with_strang_crank_nicolson_and_a_second_order_reaction(scheme, lowest,
                                                                                                 highest):
    """The potential's error at T = 4 against a run at dt = 0.00125 of the same scheme, for
    dt = 0.04, 0.02, 0.01: the observed order is 1 with Godunov; with Strang and Crank–Nicolson
    around the first-order reaction step it is above 1 but falls toward it (1.59, then 1.44
    here); with the Richardson reaction step it is 2. Each rank runs it alone (COMM_SELF): it
    measures the scheme in time, which the 1-rank/2-rank tests elsewhere cover in space."""
    comm = MPI.COMM_SELF
    reference = _cable_at(4.0, 0.00125, comm, **scheme)

    def error(dt):
        local = float(np.sum((_cable_at(4.0, dt, comm, **scheme) - reference) ** 2))
        return math.sqrt(comm.allreduce(local))

    errors = [error(dt) for dt in (0.04, 0.02, 0.01)]
    rate = math.log2(errors[1] / errors[2])
    assert lowest <= rate <= highest, (errors, rate)


def test_the_reaction_order_must_be_one_or_two():
    mesh = dolfinx.mesh.create_interval(MPI.COMM_WORLD, 4, [0.0, 1.0])
    with pytest.raises(ValueError, match="reaction_order must be 1 or 2, got 3"):
        Monodomain(mesh, AlievPanfilov(), dt=0.1, reaction_order=3)


def test_activation_times_interpolate_the_first_upward_crossing():
    dt = 0.5
    t = torch.arange(1, 11, dtype=torch.float64) * dt            # samples at (k + 1) dt
    traces = torch.stack([(t - 2.3).clamp(0, 1),                  # crosses 0.5 at t = 2.8
                          torch.zeros_like(t),                    # never
                          torch.ones_like(t)], dim=1)             # already above at the first sample
    at = activation_times(traces, dt, 0.5)
    assert at.tolist() == pytest.approx([2.8, 5.5, 0.5])
    soft = soft_activation_times(traces, dt, 0.5, width=0.01)
    assert soft[0].item() == pytest.approx(2.8, abs=dt)


def _tissue(comm, *, scale_control: bool = False, network: torch.nn.Module | None = None, n: int = 10):
    """A 10 mm x 10 mm sheet with an Aliev–Panfilov wave from one corner."""
    mesh = dolfinx.mesh.create_rectangle(comm, [[0.0, 0.0], [10.0, 10.0]], [n, n])
    ionic = AlievPanfilov() if network is None else HybridIonic(AlievPanfilov(), network)
    s = dolfinx.fem.Function(dolfinx.fem.functionspace(mesh, ("DG", 0))) if scale_control else None
    model = Monodomain(mesh, ionic, dt=0.5, diffusivity=1.0, conductivity_scale=s,
                       stimuli=[Stimulus(centre=(0.0, 0.0), radius=3.5, duration=2.0, amplitude=1.0)])
    return model, s


def _small_network() -> torch.nn.Module:
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    with torch.no_grad():
        net[2].weight.mul_(0.02)
        net[2].bias.zero_()
    dnf.parallel.broadcast_parameters(net)
    return net


SENSORS = np.array([[5.0, 5.0], [9.0, 2.0], [3.0, 8.0], [9.5, 9.5]])


def _loss(model, scale, W, steps=100, checkpoint_every=25):
    _, obs = model.simulate(steps, scale=scale, observe=lambda s, k: W @ s[0], checkpoint_every=checkpoint_every)
    obs = dnf.parallel.sum(obs, model.comm)
    t = soft_activation_times(obs, model.dt, 0.5, width=0.1)
    return (t ** 2).sum() / 100.0 + (obs ** 2).mean()


def test_a_wave_crosses_the_sheet(comm):
    model, _ = _tissue(comm)
    W = model.point_weights(SENSORS)
    with torch.no_grad():
        _, obs = model.simulate(100, observe=lambda s, k: W @ s[0])
    t = activation_times(dnf.parallel.sum(obs, comm), model.dt)
    # the sensors activate in order of distance from the stimulated corner, all within 50 ms
    distance = np.linalg.norm(SENSORS, axis=1)
    assert np.all(np.diff(t.numpy()[np.argsort(distance)]) > 0) and float(t.max()) < 50.0


def test_taylor_conductivity_field_through_100_steps(comm):
    model, s = _tissue(comm, scale_control=True)
    W = model.point_weights(SENSORS)
    n = dnf.convert.n_owned(s)
    m = torch.ones(n, dtype=torch.float64, requires_grad=True)
    dm = torch.rand(n, dtype=torch.float64)
    rates = dnf.taylor_test(lambda scale: _loss(model, scale, W), m, dm)
    assert min(rates) >= 1.9, rates


def test_taylor_network_weights_through_100_steps(comm):
    net = _small_network()
    model, _ = _tissue(comm, network=net)
    W = model.point_weights(SENSORS)
    rates = dnf.taylor_test_parameters(lambda: _loss(model, None, W), net)
    assert min(rates) >= 1.9, rates


def test_gradcheck_of_a_short_rollout():
    """gradcheck perturbs entries one by one, so each rank checks a serial copy (COMM_SELF)."""
    comm = MPI.COMM_SELF
    model, s = _tissue(comm, scale_control=True, n=3)
    W = model.point_weights(SENSORS[:2])
    state0 = model.initial_state()
    state0[0] = 0.3
    state0 = state0.requires_grad_()
    scale = torch.full((dnf.convert.n_owned(s),), 1.2, dtype=torch.float64, requires_grad=True)

    def fn(state0, scale):
        _, obs = model.simulate(3, state0, scale=scale, observe=lambda st, k: W @ st[0])
        return dnf.parallel.sum(obs, comm)

    assert torch.autograd.gradcheck(fn, (state0, scale), eps=1e-6, atol=1e-7)


def test_the_diffusion_operator_is_factorised_once_per_conductivity(comm):
    model, s = _tissue(comm, scale_control=True)
    problem = model.operator.problem
    before = problem.counts.assemblies
    scale = torch.ones(dnf.convert.n_owned(s), dtype=torch.float64, requires_grad=True)
    W = model.point_weights(SENSORS)
    _loss(model, scale, W, steps=20, checkpoint_every=5).backward()   # forward, recompute, adjoint
    assert problem.counts.assemblies - before == 1
    with torch.no_grad():
        _loss(model, 1.5 * scale, W, steps=2)
    assert problem.counts.assemblies - before == 2


@pytest.mark.skipif(MPI.COMM_WORLD.size == 1, reason="needs two ranks")
def test_one_rank_and_two_ranks_give_the_same_activation_map(comm):
    """The same sheet on all ranks (COMM_WORLD) and on each rank alone (COMM_SELF)."""
    maps = []
    for c in (comm, MPI.COMM_SELF):
        model, _ = _tissue(c, n=12)
        with torch.no_grad():
            _, obs = model.simulate(60, observe=lambda s, k: s[0])
        t = activation_times(obs, model.dt).numpy()
        x = np.concatenate(c.allgather(model.coordinates[:, :2])) if c is comm else model.coordinates[:, :2]
        t = np.concatenate(c.allgather(t)) if c is comm else t
        x = np.round(x, 9) + 0.0   # -1e-17 and 1e-17 are the same node; +0.0 folds -0.0
        order = np.lexsort((x[:, 1], x[:, 0]))
        maps.append((x[order], t[order]))
    np.testing.assert_allclose(maps[0][0], maps[1][0])
    np.testing.assert_allclose(maps[0][1], maps[1][1], rtol=1e-9)
    assert maps[0][1].max() > maps[0][1].min() + 10.0    # a real wave, not a uniform state


def test_bad_state_and_network_output_give_clear_errors(comm):
    model, _ = _tissue(comm, n=4)
    with pytest.raises(ShapeError, match=r"state of shape \(2, \d+\)"):
        model.step(torch.zeros(3, model.n, dtype=torch.float64), 0)

    class Wrong(torch.nn.Module):
        def forward(self, x):
            return x   # (n, 2) instead of (n, 1)

    bad, _ = _tissue(comm, network=Wrong(), n=4)
    with pytest.raises(ValueError, match=r"network must return shape"):
        bad.simulate(1)

    class NaN(torch.nn.Module):
        def forward(self, x):
            out = x[:, :1] * 0.0
            return out + (float("nan") if comm.rank == comm.size - 1 else 0.0)

    nan_model, _ = _tissue(comm, network=NaN(), n=4)
    with pytest.raises(NonFiniteError, match="NaN"):
        nan_model.simulate(1)


def test_pseudo_ecg_weights_reproduce_the_integral(comm):
    """parallel.sum(W @ v) equals ∫ D∇v·∇(1/r) dx assembled directly, on any number of ranks."""
    import ufl

    model, _ = _tissue(comm, n=8)
    electrodes = np.array([[15.0, 5.0], [-4.0, -4.0]])
    W = model.pseudo_ecg_weights(electrodes)
    v = dolfinx.fem.Function(model.V)
    v.interpolate(lambda x: np.exp(-((x[0] - 3.0) ** 2 + (x[1] - 6.0) ** 2) / 8.0))
    ecg = dnf.parallel.sum(W @ dnf.to_torch(v), comm)
    x = ufl.SpatialCoordinate(model.mesh)
    for i, e in enumerate(electrodes):
        r = ufl.sqrt((x[0] - e[0]) ** 2 + (x[1] - e[1]) ** 2)
        form = dolfinx.fem.form(ufl.inner(model.D * ufl.grad(v), ufl.grad(1.0 / r)) * ufl.dx)
        exact = comm.allreduce(dolfinx.fem.assemble_scalar(form), op=MPI.SUM)
        assert float(ecg[i]) == pytest.approx(exact, rel=1e-12)
    # uniform tissue (resting or fully depolarised) is electrically silent
    silent = dnf.parallel.sum(W.sum(dim=1), comm)
    assert float(silent.abs().max()) < 1e-12 * float(ecg.abs().max()) + 1e-15


@pytest.mark.parametrize("n, centre, radius", [(10, (0.0, 0.0), 0.5), (10, (0.5, 0.5), 0.3), (20, (0.3, 0.2), 0.25)])
def test_stimulus_ball_through_nodes_marks_the_same_nodes_on_any_ranks(comm, n, centre, radius):
    """Nodes exactly on the ball's surface (a 3-4-5 lattice) are inside, whatever the partition:
    without a tolerance 24 of 26 nodes were marked serially and 25 on 3 ranks."""
    msh = dolfinx.mesh.create_unit_square(comm, n, n)
    V = dolfinx.fem.functionspace(msh, ("Lagrange", 1))
    x = V.tabulate_dof_coordinates()[: V.dofmap.index_map.size_local]
    marked = comm.allreduce(int(Stimulus(centre=centre, radius=radius).nodes(x).sum()))
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1))   # the lattice in integers: exact
    ci, cj, rn = round(centre[0] * n), round(centre[1] * n), round(radius * n * 100)
    inside = int(((100 * (i - ci)) ** 2 + (100 * (j - cj)) ** 2 <= rn**2).sum())
    assert marked == inside
