"""Wetting and drying: Thacker's parabolic bowl (exact solution), the conserved volume through a
flood–ebb cycle, and gradients through drying and flooding."""

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
from deepnum_fem.models import ShallowWater

#: Thacker (1981) as in Thetis's test (Gourgue et al. 2009): a paraboloid bowl of depth D0 at
#: its centre and radius L at the still-water line, the water's surface a tilting paraboloid
#: oscillating with ω = √(8 g D0) / L, 2 m above the still level at the centre at t = 0.
D0, L, ETA0, G = 50.0, 430620.0, 2.0, 9.81
A = ((D0 + ETA0) ** 2 - D0**2) / ((D0 + ETA0) ** 2 + D0**2)
OMEGA = math.sqrt(8 * G * D0) / L
SIDE = 951646.46


def exact(x: np.ndarray, t: float) -> np.ndarray:
    """η(x, t), where wet; below the bed where dry (use max with -h_b)."""
    c = 1 - A * math.cos(OMEGA * t)
    r2 = x[0] ** 2 + x[1] ** 2
    return D0 * (math.sqrt(1 - A * A) / c - 1 - r2 / L**2 * ((1 - A * A) / c**2 - 1))


def _bowl(comm, n: int, dt: float, alpha: float):
    mesh = dolfinx.mesh.create_rectangle(comm, [[-SIDE / 2, -SIDE / 2], [SIDE / 2, SIDE / 2]], [n, n])
    mesh.topology.create_connectivity(1, 2)
    facets = dolfinx.mesh.exterior_facet_indices(mesh.topology)
    tags = dolfinx.mesh.meshtags(mesh, 1, facets, np.full(len(facets), 1, dtype=np.int32))
    bed = dolfinx.fem.Function(dolfinx.fem.functionspace(mesh, ("Lagrange", 1)))
    bed.interpolate(lambda x: D0 * (1 - (x[0] ** 2 + x[1] ** 2) / L**2))
    model = ShallowWater(mesh, bed, dt=dt, theta=0.5, drag=0.0, viscosity=0.0, facet_tags=tags,
                         wetting_drying=alpha)
    return model, bed


def _wet_error(model, bed, state, t: float) -> float:
    """Relative L2 error of η over where the exact water is at least 1 m deep."""
    eta = dolfinx.fem.Function(model.Q)
    eta.x.array[: model.n_eta] = model.elevation(state).numpy()
    eta.x.scatter_forward()
    truth = dolfinx.fem.Function(model.Q)
    truth.interpolate(lambda x: exact(x, t))
    wet = ufl.conditional(ufl.gt(bed + truth, 1.0), 1.0, 0.0)
    comm = model.comm

    def total(form) -> float:
        return comm.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(form)), op=MPI.SUM)

    return math.sqrt(total(wet * (eta - truth) ** 2 * ufl.dx) / total(wet * truth**2 * ufl.dx))


def test_thackers_bowl_converges_and_conserves_its_volume(comm):
    """One period (12 h) of Thacker's bowl with the Kärnä et al. depth: the shoreline moves
    tens of km each way. The elevation's relative L2 error over the wet region falls as the
    mesh, the step and α are halved together (measured: 7.2 % at 10 x 10, 600 s, α = 8 m;
    1.8 % at 20 x 20, 300 s, 4 m: order 2.0), and the volume ∫ H̃ dx is conserved to Newton's
    tolerance. The same on 1 and 2 ranks."""
    errors = []
    for n, dt, alpha in ((10, 600.0, 8.0), (20, 300.0, 4.0)):
        model, bed = _bowl(comm, n, dt, alpha)
        state = model.initial_state(lambda x: exact(x, 0.0))
        steps = round(2 * math.pi / OMEGA / dt)
        with torch.no_grad():
            volume0 = float(model.volume(state))
            state, _ = model.simulate(steps, state)
            volume = float(model.volume(state))
        assert abs(volume / volume0 - 1) < 1e-10, (volume, volume0)
        errors.append(_wet_error(model, bed, state, steps * dt))
        model.destroy()
    assert errors[1] < 0.6 * errors[0] and errors[1] < 0.05, errors


def test_gradients_pass_through_drying_and_flooding(comm):
    """A Taylor test of two gauges' series over 12 steps of 900 s (a quarter period from the
    highest water: the shoreline recedes and a ring of nodes dries) in the initial elevation:
    measured rates 1.9993, 1.9996, 1.9998."""
    model, _ = _bowl(comm, 8, 900.0, 8.0)
    gauge = model.sensors(np.array([[0.0, 0.0], [250e3, 0.0]]))
    state0 = model.initial_state(lambda x: exact(x, 0.0))
    direction = model.initial_state(lambda x: np.exp(-(x[0] ** 2 + x[1] ** 2) / (2 * (150e3) ** 2)))

    def loss(s):
        _, series = model.simulate(12, s, observe=lambda w, k: gauge.local(w))
        return dnf.parallel.sum(series, comm).pow(2).sum()

    rates = dnf.taylor_test(loss, state0, direction, h0=0.2)
    assert min(rates) > 1.9, rates


def test_wetting_drying_needs_a_positive_depth_scale(comm):
    mesh = dolfinx.mesh.create_unit_square(comm, 2, 2)
    with pytest.raises(ValueError, match="wetting_drying .* must be > 0"):
        ShallowWater(mesh, 1.0, dt=1.0, wetting_drying=0.0)
