"""The three time-stepping models behind one interface (``deepnum_fem.models.base``).

Every model passes the same checks: the interface's methods with the same signatures, a 5-step
rollout whose gradient in the initial state and in each of its controls passes a Taylor test,
controls named and checked alike, boundaries by name, output, and a ``destroy`` that releases
the PETSc objects of its solvers. The old spellings still work, with a DeprecationWarning.
"""

from __future__ import annotations

import inspect
import warnings

from mpi4py import MPI

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import pytest
import torch

import deepnum_fem as dnf
from deepnum_fem.errors import DeepnumFemError
from deepnum_fem.models import AlievPanfilov, Monodomain, ShallowWater, Stimulus, TimeSteppingModel, Transport

STEPS = 5


def _square(comm, n=8, size=1.0):
    return dolfinx.mesh.create_rectangle(comm, [[0.0, 0.0], [size, size]], [n, n])


def _left_right_tags(mesh, x_max):
    """Facet tags 1 on x = 0 and 2 on x = x_max; other boundary facets untagged."""
    fdim = mesh.topology.dim - 1
    mesh.topology.create_connectivity(fdim, fdim + 1)
    facets = dolfinx.mesh.exterior_facet_indices(mesh.topology)
    mid = dolfinx.mesh.compute_midpoints(mesh, fdim, facets)
    values = np.where(np.isclose(mid[:, 0], 0.0), 1, np.where(np.isclose(mid[:, 0], x_max), 2, 0))
    keep = values > 0
    return dolfinx.mesh.meshtags(mesh, fdim, facets[keep].astype(np.int32), values[keep].astype(np.int32))


def _dg0(mesh, value):
    f = dolfinx.fem.Function(dolfinx.fem.functionspace(mesh, ("DG", 0)))
    f.x.array[:] = value
    return f


def _monodomain(comm):
    mesh = _square(comm)
    return Monodomain(mesh, AlievPanfilov(), dt=0.2, diffusivity=0.05, conductivity_scale=_dg0(mesh, 1.0),
                      stimuli=[Stimulus(centre=(0.0, 0.0, 0.0), radius=0.3, duration=0.6, amplitude=1.0)])


def _transport(comm):
    mesh = _square(comm)
    return Transport(mesh, (1.0, 0.3), dt=0.05, diffusivity=0.01, decay=0.1, diffusivity_scale=_dg0(mesh, 1.0),
                     facet_tags=_left_right_tags(mesh, 1.0), dirichlet={1: 0.0})


def _shallow_water(comm):
    mesh = _square(comm, n=5, size=1000.0)
    return ShallowWater(mesh, 10.0, facet_tags=_left_right_tags(mesh, 1000.0), open_sea=2, dt=30.0,
                        coriolis=1e-4, viscosity=1.0, drag=_dg0(mesh, 0.0025), tide=[(0.2, 600.0, 0.0)])


MODELS = {"monodomain": _monodomain, "transport": _transport, "shallow_water": _shallow_water}
#: A state near which each model is smooth, and each control's value and direction.
SENSORS = np.array([[0.45, 0.55], [0.8, 0.3]])


def _start(model):
    """An initial state away from rest (so every control matters) and control values."""
    state = model.initial_state()
    if isinstance(model, Monodomain):
        state = state.clone()
        state[0] = torch.from_numpy(0.2 * np.exp(-4 * (model.coordinates[:, 0] ** 2)))
    elif isinstance(model, Transport):
        state = model.interpolate(lambda x: np.exp(-10 * ((x[:, 0] - 0.4) ** 2 + (x[:, 1] - 0.5) ** 2)))
    else:
        state = model.initial_state(lambda x: 0.1 * np.cos(np.pi * x[0] / 1000.0),
                                    velocity=lambda x: np.stack([0.05 + 0 * x[0], 0.02 + 0 * x[1]]))
    controls = {name: model.control(name) for name in model.controls}
    if "source" in controls:
        controls["source"] = model.interpolate(lambda x: 1.0 + x[:, 0])
    return state, controls


def _close(model, a, b, rtol=1e-8):
    """``|a - b| <= rtol |b|`` over all ranks (Newton steps from other initial guesses differ
    within their tolerance)."""
    diff, size = (float(x.square().sum()) for x in (a - b, b))
    return model.comm.allreduce(diff) <= rtol**2 * model.comm.allreduce(size)


def _points(model):
    return SENSORS * (1000.0 if isinstance(model, ShallowWater) else 1.0)


@pytest.fixture(params=sorted(MODELS))
def model(request, comm):
    model = MODELS[request.param](comm)
    yield model
    model.destroy()


def test_every_model_has_the_interface(model):
    assert isinstance(model, TimeSteppingModel)
    for name in ("initial_state", "control", "step", "simulate", "sensors", "write_xdmf", "destroy", "time"):
        assert callable(getattr(model, name)), name
    step = list(inspect.signature(model.step).parameters)
    assert step[:2] == ["state", "k"], step
    simulate = inspect.signature(model.simulate).parameters
    assert list(simulate)[:2] == ["n_steps", "state0"]
    assert {"observe", "checkpoint_every"} <= set(simulate)
    assert MPI.Comm.Compare(model.comm, model.mesh.comm) == MPI.IDENT and model.dt > 0
    assert model.time(0) == pytest.approx(model.t0 + model.dt)
    assert tuple(model.initial_state().shape) == model.state_shape
    assert len(model.controls) >= 1 and isinstance(model.operator, dnf.FemOperator)
    with pytest.raises(TypeError, match="unknown control"):
        model.step(model.initial_state(), 0, wind=torch.zeros(1))


def _loss(model, sensors, state0, controls):
    """Sensor values over a 5-step rollout plus the final state's mean square (global)."""
    final, obs = model.simulate(STEPS, state0, observe=lambda s, k: sensors.local(s), **controls)
    return dnf.parallel.sum(obs.square().sum() + final.square().sum() / 100.0, model.comm)


def _direction(x: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + MPI.COMM_WORLD.rank)
    return (0.5 + torch.rand(x.shape, generator=gen, dtype=torch.float64)) * max(float(x.abs().max()), 1.0)


@pytest.mark.parametrize("what", ["state0", "each control"])
def test_a_5_step_rollout_is_differentiable_in_the_state_and_each_control(model, what):
    sensors = model.sensors(_points(model))
    state0, controls = _start(model)
    names = ["state0"] if what == "state0" else list(model.controls)
    for i, name in enumerate(names):
        if name == "state0":
            m, dm = state0, _direction(state0, i) * 0.1
            rates = dnf.taylor_test(lambda s: _loss(model, sensors, s, controls), m, dm, h0=1e-2)
        else:
            m = controls[name]
            dm = _direction(m, i) * (0.1 if name != "drag" else 0.2)
            rates = dnf.taylor_test(lambda c, name=name: _loss(model, sensors, state0, {**controls, name: c}),
                                    m, dm, h0=1e-2)
        assert min(rates) >= 1.9, (type(model).__name__, name, rates)


def test_a_control_that_is_not_given_takes_its_default(model):
    state0, _ = _start(model)
    defaults = {name: model.control(name) for name in model.controls}
    with torch.no_grad():
        implicit = model.step(state0, 0)
        explicit = model.step(state0, 0, **defaults)
    assert _close(model, implicit, explicit)


def test_a_control_given_as_a_function_of_the_step(model):
    """simulate(control=lambda k: ...) equals stepping by hand with that control at each k."""
    state0, controls = _start(model)
    name = model.controls[-1]
    schedule = {k: controls[name] * (1.0 + 0.01 * k) for k in range(3)}
    with torch.no_grad():
        by_hand = state0
        for k in range(3):
            by_hand = model.step(by_hand, k, **{**controls, name: schedule[k]})
        rolled, _ = model.simulate(3, state0, **{**controls, name: lambda k: schedule[k]})
    assert _close(model, rolled, by_hand)


def test_the_output_writes_every_frame(model, mpi_tmp_path):
    state0, _ = _start(model)
    path = mpi_tmp_path / "frames.xdmf"
    model.write_xdmf(path, [(0.0, state0), (model.time(0), state0)])
    if model.comm.rank == 0:
        text = path.read_text()
        assert text.count("<Time Value") == 2 and path.with_suffix(".h5").exists()


def _petsc_objects(model):
    problem = model.operator.problem
    return [problem.solver, problem.adjoint_solver, problem.A]


def test_destroy_releases_the_petsc_objects_and_the_model_refuses_to_step(model):
    state0, _ = _start(model)
    with torch.no_grad():
        model.step(state0, 0)   # the factorisation exists
    objects = _petsc_objects(model)
    assert all(obj.handle != 0 for obj in objects)
    model.destroy()
    assert model.destroyed and all(obj.handle == 0 for obj in objects)
    with pytest.raises(DeepnumFemError, match="destroyed"):
        model.step(state0, 0)
    model.destroy()   # twice is safe


def test_the_operator_counts_its_work(comm):
    """One assembly for a rollout and its adjoint: the factorisation is reused by every step."""
    model = _transport(comm)
    state0, controls = _start(model)
    state0.requires_grad_(True)
    _loss(model, model.sensors(SENSORS), state0, controls).backward()
    counts = model.operator.counts
    assert (counts.assemblies, counts.forward_solves, counts.adjoint_solves) == (1, STEPS, STEPS), counts
    model.destroy()


# -- boundaries by name ---------------------------------------------------------------------------
def test_boundaries_by_name_and_by_tag_value_agree(comm):
    data = dnf.geometry.city_blocks(40.0, comm=comm)
    by_name = Transport(data, (2.0, 0.0), dt=5.0, dirichlet={"INFLOW": 1.0})
    by_value = Transport(data.mesh, (2.0, 0.0), dt=5.0, facet_tags=data.facet_tags,
                         dirichlet={dnf.geometry.CITY_TAGS["INFLOW"]: 1.0})
    with torch.no_grad():
        a, b = by_name.step(by_name.zeros()), by_value.step(by_value.zeros())
    assert dnf.parallel.sum(a.sum(), comm) > 0            # the inflow boundary carries c = 1
    assert _close(by_name, a, b)
    with pytest.raises(ValueError, match="no boundary named 'INLET'.*INFLOW"):
        Transport(data, (2.0, 0.0), dt=5.0, dirichlet={"INLET": 1.0})
    for m in (by_name, by_value):
        m.destroy()


# -- the old spellings -------------------------------------------------------------------------------
def test_the_old_spellings_warn_and_give_the_same_results(comm):
    mesh = _square(comm, n=5, size=1000.0)
    tags = _left_right_tags(mesh, 1000.0)
    new = ShallowWater(mesh, 10.0, facet_tags=tags, open_sea=2, dt=30.0, drag=0.0025, tide=[(0.2, 600.0, 0.0)])
    with pytest.warns(DeprecationWarning) as caught:
        old = ShallowWater(mesh, tags, 10.0, dt=30.0, drag=0.0025, tide=[(0.2, 600.0, 0.0)], open_sea_tags=(2,))
    said = " ".join(str(w.message) for w in caught)
    assert "ShallowWater(mesh, facet_tags, bathymetry" in said and "open_sea_tags=" in said
    drag = torch.tensor(0.003, dtype=torch.float64)
    with torch.no_grad():
        expected = new.step(new.initial_state(), 1, drag=drag)
        with pytest.warns(DeprecationWarning, match="step\\(state, k, drag\\)"):
            got = old.step(old.initial_state(), 1, drag)
    assert _close(new, got, expected)
    with pytest.warns(DeprecationWarning, match="step_operator"):
        assert old.step_operator is old.operator
    with pytest.warns(DeprecationWarning, match="gauge_sensors"):
        old.gauge_sensors(SENSORS * 1000.0)

    transport = _transport(comm)
    source = transport.interpolate(lambda x: x[:, 0])
    with torch.no_grad():
        expected = transport.step(transport.zeros(), 0, source=source)
        with pytest.warns(DeprecationWarning, match="Transport.step\\(c, source, scale\\)"):
            got = transport.step(transport.zeros(), source)
        assert _close(transport, got, expected)
        with pytest.warns(DeprecationWarning, match="sources="):
            got, _ = transport.simulate(1, sources=lambda k: source)
        assert _close(transport, got, expected)

    cardiac = _monodomain(comm)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the new spellings are quiet
        scale = cardiac.control("scale")
        expected = cardiac.step(cardiac.initial_state(), 0, scale=scale)
    with pytest.warns(DeprecationWarning, match="Monodomain.diffusion"):
        assert cardiac.diffusion is cardiac.operator
    with pytest.warns(DeprecationWarning, match="step\\(state, k, scale\\)"):
        got = cardiac.step(cardiac.initial_state(), 0, scale)
    assert _close(cardiac, got, expected)
    for m in (new, old, transport, cardiac):
        m.destroy()


def test_a_control_that_does_not_exist_is_an_error_naming_the_controls(model):
    with pytest.raises(ValueError, match="no control named 'wind'.*controls: "):
        model.control("wind")


def test_misread_positional_calls_are_errors_not_guesses(comm):
    transport = _transport(comm)
    source = transport.zeros()
    with pytest.raises(TypeError, match="by keyword"):
        transport.step(transport.zeros(), 0, source)           # new (c, k) with a positional control
    with pytest.raises(TypeError, match="at most 3 positional"):
        transport.step(transport.zeros(), source, source, source)
    cardiac = _monodomain(comm)
    with pytest.raises(TypeError, match="controls by keyword"):
        cardiac.step(cardiac.initial_state(), 0, cardiac.control("scale"), cardiac.control("scale"))
    for m in (transport, cardiac):
        m.destroy()


def test_solver_settings_reach_the_models_solvers(comm):
    """A user's configure_ksp runs on ShallowWater's solvers after the model names its fields,
    and petsc_options= goes with a solver= that holds other settings."""
    seen = []
    mesh = _square(comm, n=4, size=1000.0)
    model = ShallowWater(mesh, 10.0, dt=30.0, solver=dnf.SolverOptions(configure_ksp=lambda ksp: seen.append(ksp)))
    with torch.no_grad():
        model.step(model.initial_state(), 0)
    assert seen, "the user's configure_ksp was not called"
    transport = Transport(mesh, (1.0, 0.0), dt=1.0, solver=dnf.SolverOptions(direct_rtol=1e-8),
                          petsc_options={"ksp_type": "gmres", "pc_type": "jacobi", "ksp_rtol": 1e-12})
    assert transport.operator.solver.getType() == "gmres"
    assert transport.operator.problem.solver_options.direct_rtol == 1e-8
    with pytest.raises(TypeError, match="not both"):
        Transport(mesh, (1.0, 0.0), dt=1.0, solver=dnf.SolverOptions(petsc_options={"pc_type": "lu"}),
                  petsc_options={"pc_type": "ilu"})
    for m in (model, transport):
        m.destroy()
