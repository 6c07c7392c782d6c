"""A wind with wakes: the steady incompressible Navier–Stokes equations, Taylor–Hood P2–P1,
solved by Newton with continuation in the viscosity.

    -∇·(ν ∇u) + (u·∇)u + ∇p = 0,     ∇·u = 0,

with ``u`` prescribed on the inflow boundaries (a profile or a constant vector), ``u = 0`` on
the walls (no slip: buildings, channel walls) and the do-nothing condition ``ν ∂u/∂n - p n = 0``
on the outflow (every other boundary). ``ν`` is a molecular or a constant eddy viscosity
(m²/s); with an eddy viscosity of about 1 m²/s and a 2 m/s wind, street canyons 20 m wide run
at a Reynolds number of about 40: steady, with recirculation behind the buildings, which
potential flow (:func:`~deepnum_fem.models.potential_flow`) cannot have.

Newton's method converges from a rest state only for small Reynolds numbers; the solve walks
down a sequence of viscosities (``continuation``), each solve starting from the previous
solution. Every solve is a ``dnf.fem_operator`` solve (MUMPS, checked: a singular or
unconverged Newton step is an error on every rank). Verified against the DFG benchmark
"flow around a cylinder" 2D-1 (``tests/test_wind.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mpi4py import MPI

import basix.ufl
import dolfinx.fem
import dolfinx.mesh
import numpy as np
import ufl

from deepnum_fem.models.base import Domain, model_solver
from deepnum_fem.ops.fem_operator import fem_operator

__all__ = ["SteadyWind", "parabolic_inflow"]


class SteadyWind:
    """Steady Navier–Stokes flow on a 2D domain (see the module docstring).

    Args:
        domain: A ``MeshData`` (boundaries by name) or a mesh with ``facet_tags``.
        viscosity: ``ν`` (m²/s) of the flow wanted.
        inflow: Boundaries (names or tag values) where ``u = velocity``.
        walls: Boundaries where ``u = 0``. All others are outflow (do-nothing).
        velocity: The inflow velocity: a constant vector, or ``velocity(x) -> (2, n)`` of the
            points ``x`` (``(3, n)``), e.g. a parabolic profile.
        continuation: Viscosities to pass through, largest first, before ``viscosity``;
            default: from ``8 ν`` down by factors of √2 (six solves before the last).
        petsc_options, solver: Newton's options (default SNES Newton with MUMPS), as for
            :func:`deepnum_fem.fem_operator`.
        facet_tags: When ``domain`` is a bare mesh.
    """

    def __init__(self, domain, *, viscosity: float, inflow, walls, velocity,
                 continuation: Sequence[float] | None = None, petsc_options: dict | None = None, solver=None,
                 facet_tags: dolfinx.mesh.MeshTags | None = None):
        if not viscosity > 0:
            raise ValueError(f"viscosity must be > 0, got {viscosity}")
        self.domain = Domain.of(domain, facet_tags)
        mesh = self.mesh = self.domain.mesh
        if mesh.geometry.dim != 2:
            raise ValueError(f"SteadyWind is 2D, got a mesh of dimension {mesh.geometry.dim}")
        self.viscosity = float(viscosity)
        self.continuation = ([self.viscosity * 2.0 ** (k / 2) for k in range(6, 0, -1)]
                             if continuation is None else [float(v) for v in continuation])
        if any(not v > self.viscosity for v in self.continuation):
            raise ValueError(f"continuation viscosities must exceed viscosity={self.viscosity}, got "
                             f"{self.continuation}")
        cell = mesh.basix_cell()
        P2 = basix.ufl.element("Lagrange", cell, 2, shape=(2,))
        P1 = basix.ufl.element("Lagrange", cell, 1)
        self.W = dolfinx.fem.functionspace(mesh, basix.ufl.mixed_element([P2, P1]))
        self.w = dolfinx.fem.Function(self.W, name="velocity_pressure")
        self.V, _ = self.W.sub(0).collapse()
        self.Q, _ = self.W.sub(1).collapse()
        self.nu = dolfinx.fem.Constant(mesh, self.continuation[0] if self.continuation else self.viscosity)

        u, p = ufl.split(self.w)
        v, q = ufl.TestFunctions(self.W)
        F = (self.nu * ufl.inner(ufl.grad(u), ufl.grad(v)) + ufl.dot(ufl.dot(ufl.grad(u), u), v)
             - p * ufl.div(v) + q * ufl.div(u)) * ufl.dx
        self.bcs = [self._dirichlet(self.domain.facets(inflow), velocity),
                    self._dirichlet(self.domain.facets(walls), (0.0, 0.0))]
        self._operator = fem_operator(F, self.w, bcs=self.bcs, linear=False,
                                      solver=model_solver(solver, petsc_options))

    def _dirichlet(self, facets: np.ndarray, velocity) -> dolfinx.fem.DirichletBC:
        tdim = self.mesh.topology.dim
        self.mesh.topology.create_connectivity(tdim - 1, tdim)
        g = dolfinx.fem.Function(self.V)
        if callable(velocity):
            g.interpolate(velocity)
        else:
            value = np.asarray(velocity, dtype=np.float64).reshape(2, 1)
            g.interpolate(lambda x: np.broadcast_to(value, (2, x.shape[1])))
        dofs = dolfinx.fem.locate_dofs_topological((self.W.sub(0), self.V), tdim - 1, facets)
        return dolfinx.fem.dirichletbc(g, dofs, self.W.sub(0))

    def solve(self) -> dolfinx.fem.Function:
        """Solve through the continuation down to ``viscosity`` (collective); return the
        velocity (a P2 vector Function, usable as ``Transport``'s wind)."""
        for nu in [*self.continuation, self.viscosity]:
            self.nu.value = nu
            self._operator()
        return self.velocity

    @property
    def velocity(self) -> dolfinx.fem.Function:
        """The velocity of the last solve (a new P2 vector Function)."""
        u = dolfinx.fem.Function(self.V, name="wind")
        u.interpolate(self.w.sub(0))
        return u

    @property
    def pressure(self) -> dolfinx.fem.Function:
        """The (kinematic) pressure of the last solve (a new P1 Function)."""
        p = dolfinx.fem.Function(self.Q, name="pressure")
        p.interpolate(self.w.sub(1))
        return p

    @property
    def newton_iterations(self) -> int:
        """Newton iterations of all solves so far."""
        return self._operator.counts.newton_iterations

    def force(self, boundary) -> np.ndarray:
        """The force (per unit density and depth) the flow exerts on ``boundary`` (a name or tag
        of a wall), ``∫ (ν ∂u_t/∂n n_y - p n_x, -ν ∂u_t/∂n n_x - p n_y) ds`` with ``n`` the normal
        pointing out of the body, into the fluid, and ``u_t = u·(n_y, -n_x)``, as in the DFG
        benchmark (collective)."""
        u, p = ufl.split(self.w)
        n = -ufl.FacetNormal(self.mesh)          # out of the body, into the fluid
        t = ufl.as_vector((n[1], -n[0]))
        ds = ufl.Measure("ds", domain=self.mesh, subdomain_data=self.domain.facet_tags)
        ut = ufl.dot(ufl.dot(ufl.grad(u), n), t)
        where = ds(self.domain.tag(boundary))
        parts = [self.nu * ut * n[1] - p * n[0], -self.nu * ut * n[0] - p * n[1]]
        return np.array([self.mesh.comm.allreduce(
            dolfinx.fem.assemble_scalar(dolfinx.fem.form(part * where)), op=MPI.SUM) for part in parts])

    def destroy(self) -> None:
        """Release the Newton solver's PETSc objects now (collective)."""
        self._operator.destroy()


def parabolic_inflow(height: float, peak: float) -> Callable[[np.ndarray], np.ndarray]:
    """``u = (4 peak y (height - y) / height², 0)``: the DFG benchmark's inflow profile."""
    def profile(x: np.ndarray) -> np.ndarray:
        return np.stack([4.0 * peak * x[1] * (height - x[1]) / height**2, np.zeros(x.shape[1])])

    return profile
