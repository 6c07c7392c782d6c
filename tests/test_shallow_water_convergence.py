"""Shallow water: convergence order of the discretisation (Taylor–Hood P2–P1, Crank–Nicolson).

The gravest standing wave of a closed rectangular channel ``[0, L] x [0, W]`` of constant
depth ``H``, without friction, Coriolis or viscosity, solves the linearised equations exactly:

    η = a cos(πx/L) cos(ωt),   u = (g a π / (L ω)) sin(πx/L) sin(ωt),   v = 0,   ω = π √(gH) / L.

The model is nonlinear; the linearisation's error is O(a²), i.e. relative O(a/H). With
a/H = 5e-7 it is far below the discretisation errors (at a/H = 5e-4 it already flattens the
observed order to ~1.4 on the finest mesh of this study). On three uniformly refined meshes with
dt ∝ h (Courant number √(gH) dt / h ≈ 0.6) and θ = 1/2, the elevation's L2 error at t = 0.6
periods must fall as O(h²) (P1 elevation, second order in time). Measured (1 and 2 ranks
alike): relative errors 8.3e-3, 1.8e-3, 3.6e-4; orders 2.19, 2.34.

The velocity's L2 error falls only as O(h^1.5) (orders 1.44, 1.49): no normal flow is imposed
weakly (through the continuity equation), so the discrete normal velocity at the walls is O(h),
not 0, in a layer of width ~h. The test checks that order too, with its own bound.

A deliberately wrong run shows that the test can fail: θ = 0.6 (first order in time) gives
elevation orders 1.03, 1.00; an exact solution with a 1 % wrong g gives -0.35, -0.08.
"""

from __future__ import annotations

import math

from mpi4py import MPI

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import torch
import ufl

from deepnum_fem.models.shallow_water import ShallowWater

L, W, DEPTH, G = 100.0, 25.0, 2.0, 9.81
AMPLITUDE = 1e-6            # m: a/H = 5e-7, the nonlinear terms are negligible
FINAL = 0.6                 # periods; the error is taken there (η ≠ 0, u ≠ 0)
MESHES = (8, 16, 32)        # cells along the channel (a quarter of that across)
STEPS_PER_CELL = 2          # time steps = 2 n: dt ∝ h, Courant number ≈ 0.6


def _closed_tags(mesh):
    """Every boundary facet is land (tag 1): a closed channel."""
    fdim = mesh.topology.dim - 1
    mesh.topology.create_connectivity(fdim, fdim + 1)
    facets = dolfinx.mesh.exterior_facet_indices(mesh.topology)
    return dolfinx.mesh.meshtags(mesh, fdim, facets, np.ones(facets.size, dtype=np.int32))


def standing_wave_errors(comm, n: int, *, theta: float = 0.5, amplitude: float = AMPLITUDE,
                         g_exact: float = G) -> tuple[float, float]:
    """Relative L2 errors of ``η`` and ``u`` at ``FINAL`` periods on an ``n x n/4`` mesh.

    ``theta``, ``amplitude`` and ``g_exact`` (the g of the exact solution) are there to
    check that the test can fail; the defaults are the right ones.
    """
    omega = math.pi * math.sqrt(G * DEPTH) / L
    t_end = FINAL * 2 * math.pi / omega
    steps = STEPS_PER_CELL * n
    mesh = dolfinx.mesh.create_rectangle(comm, [[0.0, 0.0], [L, W]], [n, max(1, n // 4)])
    model = ShallowWater(mesh, DEPTH, facet_tags=_closed_tags(mesh), dt=t_end / steps, g=G, coriolis=0.0, drag=0.0,
                         viscosity=0.0, theta=theta)
    with torch.no_grad():
        state, _ = model.simulate(steps, model.initial_state(lambda x: amplitude * np.cos(np.pi * x[0] / L)))

    eta = dolfinx.fem.Function(model.Q)
    eta.x.array[: model.n_eta] = model.elevation(state).numpy()
    eta.x.scatter_forward()
    u = dolfinx.fem.Function(model.V)
    u.x.array[: len(model.u_dofs)] = state[model.u_dofs].numpy()
    u.x.scatter_forward()

    w = math.pi * math.sqrt(g_exact * DEPTH) / L
    speed = g_exact * amplitude * math.pi / (L * w)
    x = ufl.SpatialCoordinate(mesh)
    eta_exact = amplitude * ufl.cos(ufl.pi * x[0] / L) * math.cos(w * t_end)
    u_exact = ufl.as_vector((speed * ufl.sin(ufl.pi * x[0] / L) * math.sin(w * t_end), 0.0 * x[0]))
    dx = ufl.dx(metadata={"quadrature_degree": 8})

    def norm(form) -> float:
        return math.sqrt(comm.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(form * dx)), op=MPI.SUM))

    # relative to the norms of the wave's amplitudes: ‖a cos(πx/L)‖ = a √(LW/2)
    scale = math.sqrt(L * W / 2)
    return (norm((eta - eta_exact) ** 2) / (amplitude * scale),
            norm(ufl.dot(u - u_exact, u - u_exact)) / (speed * scale))


def observed_orders(errors) -> list[float]:
    """log2 of successive error ratios (the mesh size halves each time)."""
    return [math.log2(a / b) for a, b in zip(errors[:-1], errors[1:], strict=True)]


def test_standing_wave_elevation_converges_at_second_order(comm):
    errors = [standing_wave_errors(comm, n) for n in MESHES]
    eta_errors, u_errors = [e[0] for e in errors], [e[1] for e in errors]
    eta_orders, u_orders = observed_orders(eta_errors), observed_orders(u_errors)
    # expected 2 (P1 elevation, Crank–Nicolson with dt ∝ h); measured 2.19, 2.34
    assert min(eta_orders) >= 1.8, (eta_errors, eta_orders)
    assert eta_errors[-1] < 1e-3, eta_errors          # and the errors are small, not only shrinking
    # expected 1.5 (the weakly imposed wall condition, see the module docstring); measured 1.44, 1.49
    assert min(u_orders) >= 1.3, (u_errors, u_orders)
