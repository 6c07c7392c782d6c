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

A constant inflow vector is a control: ``wind(inflow)`` returns the velocity's dofs as a
torch tensor, differentiable in the inflow's speed and direction through one adjoint solve,
and ``Transport(..., wind_control=True)`` takes it as its ``wind`` control, so that a wind
can be estimated together with emissions. ``solve(cache=path)`` stores a flow per direction
and reads it back on any number of ranks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from mpi4py import MPI

import basix.ufl
import dolfinx.fem
import dolfinx.mesh
import numpy as np
import torch
import ufl

from deepnum_fem.errors import SolverError
from deepnum_fem.fem.field_files import load_functions, save_functions
from deepnum_fem.models.base import Domain, model_solver
from deepnum_fem.ops.fem_operator import fem_operator

__all__ = ["KARMAN", "SteadyWind", "log_law_inflow", "parabolic_inflow", "wall_distance"]

#: von Kármán's constant.
KARMAN = 0.41
#: A strain rate (1/s) far below any of a wind, under the root of the mixing-length viscosity.
STRAIN_FLOOR = 1e-6


class SteadyWind:
    """Steady Navier–Stokes flow on a 2D or 3D domain (see the module docstring).

    The inflow is imposed strongly through a lifting: the unknown velocity vanishes on the
    inflow and the walls, and the flow is that plus the inflow velocity on the inflow's
    dofs. A constant inflow vector is then a control of the residual, so
    ``wind(inflow)`` is a torch operation whose gradient in the inflow (speed and direction)
    is one adjoint solve with the last Newton Jacobian.

    Args:
        domain: A ``MeshData`` (boundaries by name) or a mesh with ``facet_tags``.
        viscosity: ``ν`` (m²/s) of the flow wanted.
        inflow: Boundaries (names or tag values) where ``u = velocity``.
        walls: Boundaries where ``u = 0``. All others are outflow (do-nothing).
        velocity: The inflow velocity: a constant vector (then differentiable: see
            ``wind(inflow)``), or ``velocity(x) -> (gdim, n)`` of the points ``x``
            (``(3, n)``), e.g. a parabolic or a log-law profile.
        mixing_length: With a cap ``l_max`` (m), Prandtl's mixing-length eddy viscosity is added
            to ``viscosity``: ``ν_t = (κ min(d, l_max))² |S|``, ``κ = 0.41``, ``d`` the
            distance to the ``walls`` (:func:`wall_distance`) and ``|S| = √(2 S:S)`` the
            strain rate. None (default): ``viscosity`` alone, a constant eddy viscosity.
        continuation: Viscosities to pass through, largest first, before ``viscosity``;
            default: from ``8 ν`` down by factors of √2 (six solves before the last).
        petsc_options, solver: Newton's options (default SNES Newton with MUMPS), as for
            :func:`deepnum_fem.fem_operator`.
        facet_tags: When ``domain`` is a bare mesh.
    """

    def __init__(self, domain, *, viscosity: float, inflow, walls, velocity,
                 continuation: Sequence[float] | None = None, mixing_length: float | None = None,
                 petsc_options: dict | None = None, solver=None, facet_tags: dolfinx.mesh.MeshTags | None = None):
        if not viscosity > 0:
            raise ValueError(f"viscosity must be > 0, got {viscosity}")
        self.domain = Domain.of(domain, facet_tags)
        mesh = self.mesh = self.domain.mesh
        gdim = self.gdim = mesh.geometry.dim
        if gdim not in (2, 3):
            raise ValueError(f"SteadyWind needs a 2D or 3D mesh, got geometric dimension {gdim}")
        self.viscosity = float(viscosity)
        self.continuation = ([self.viscosity * 2.0 ** (k / 2) for k in range(6, 0, -1)]
                             if continuation is None else [float(v) for v in continuation])
        if any(not v > self.viscosity for v in self.continuation):
            raise ValueError(f"continuation viscosities must exceed viscosity={self.viscosity}, got "
                             f"{self.continuation}")
        cell = mesh.basix_cell()
        P2 = basix.ufl.element("Lagrange", cell, 2, shape=(gdim,))
        P1 = basix.ufl.element("Lagrange", cell, 1)
        self.W = dolfinx.fem.functionspace(mesh, basix.ufl.mixed_element([P2, P1]))
        # the velocity's part that vanishes on the inflow and the walls, and the pressure
        self.w = dolfinx.fem.Function(self.W, name="velocity_pressure")
        self.V, velocity_dofs = self.W.sub(0).collapse()
        self.Q, pressure_dofs = self.W.sub(1).collapse()
        self._velocity_dofs = np.asarray(velocity_dofs, dtype=np.int64).reshape(-1)
        self._pressure_dofs = np.asarray(pressure_dofs, dtype=np.int64).reshape(-1)
        self._n_owned_blocks = self.V.dofmap.index_map.size_local
        self.nu = dolfinx.fem.Constant(mesh, self.continuation[0] if self.continuation else self.viscosity)

        fdim = mesh.topology.dim - 1
        mesh.topology.create_connectivity(fdim, fdim + 1)
        inflow_facets, wall_facets = self.domain.facets(inflow), self.domain.facets(walls)
        # the inflow's velocity dofs (blocks of V) that are not on a wall: where the lift lives
        on_inflow = np.zeros(self.V.dofmap.index_map.size_local + self.V.dofmap.index_map.num_ghosts, dtype=bool)
        on_inflow[dolfinx.fem.locate_dofs_topological(self.V, fdim, inflow_facets)] = True
        on_inflow[dolfinx.fem.locate_dofs_topological(self.V, fdim, wall_facets)] = False
        self._on_inflow = on_inflow
        if callable(velocity):
            self.inflow = None
            lift = dolfinx.fem.Function(self.V, name="inflow")
            lift.interpolate(velocity)
            lift.x.array.reshape(-1, gdim)[~on_inflow] = 0.0
            self._lift_values = lift.x.array.copy()
        else:
            value = np.asarray(velocity, dtype=np.float64)
            if value.shape != (gdim,) or not np.all(np.isfinite(value)):
                raise ValueError(f"SteadyWind: an inflow velocity of shape ({gdim},) or a function of x expected, "
                                 f"got {velocity!r}")
            self.inflow = dolfinx.fem.Constant(mesh, value)
            # a component of V, collapsed: scalar P2 with V's node numbering (checked)
            S, component = self.V.sub(0).collapse()
            same = np.array_equal(np.asarray(component).reshape(-1), gdim * np.arange(len(on_inflow)))
            _require(mesh.comm, same, "a component of the velocity space does not share its node numbering")
            chi = dolfinx.fem.Function(S, name="inflow_indicator")
            chi.x.array[:] = on_inflow
            lift = chi * self.inflow
            self._lift_values = None
        u_hat, p = ufl.split(self.w)
        self.u = u_hat + lift                                  # the flow, as a UFL expression
        u = self.u
        v, q = ufl.TestFunctions(self.W)
        self.wall_distance, self.mixing_length = None, mixing_length
        nu = self.nu
        if mixing_length is not None:
            if not mixing_length > 0:
                raise ValueError(f"mixing_length must be > 0 (m), got {mixing_length}")
            self.wall_distance = wall_distance(self.domain, walls)
            length = KARMAN * ufl.min_value(self.wall_distance, float(mixing_length))
            strain = ufl.sym(ufl.grad(u))
            # √(2 S:S + ε²): smooth at rest, where Newton starts
            nu = nu + length**2 * ufl.sqrt(2.0 * ufl.inner(strain, strain) + STRAIN_FLOOR**2)
        self.eddy_viscosity = nu
        F = (nu * ufl.inner(ufl.grad(u), ufl.grad(v)) + ufl.dot(ufl.dot(ufl.grad(u), u), v)
             - p * ufl.div(v) + q * ufl.div(u)) * ufl.dx
        zero = dolfinx.fem.Function(self.V)
        boundary = np.concatenate([inflow_facets, wall_facets])
        dofs = dolfinx.fem.locate_dofs_topological((self.W.sub(0), self.V), fdim, boundary)
        self.bcs = [dolfinx.fem.dirichletbc(zero, dofs, self.W.sub(0))]
        controls = [] if self.inflow is None else [self.inflow]
        self._operator = fem_operator(F, self.w, controls=controls, bcs=self.bcs, linear=False,
                                      solver=model_solver(solver, petsc_options))
        n_velocity = self.V.dofmap.index_map.size_local * gdim
        self._owned_velocity = torch.from_numpy(self._velocity_dofs[:n_velocity].copy())
        n_w = self.W.dofmap.index_map.size_local * self.W.dofmap.index_map_bs
        _require(mesh.comm, not n_velocity or int(self._owned_velocity.max()) < n_w,
                 "an owned velocity dof is not owned in the mixed space")
        self._owned_on_inflow = torch.from_numpy(on_inflow[: self.V.dofmap.index_map.size_local].astype(np.float64))
        self._solved = False

    def solve(self, inflow=None, *, cache: str | Path | None = None) -> dolfinx.fem.Function:
        """Solve through the continuation down to ``viscosity`` (collective); return the
        velocity (a P2 vector Function, usable as ``Transport``'s wind). ``inflow``: a new
        constant inflow vector (default: the current one).

        ``cache``: a file (``.npz``) of this flow. When it holds the flow of the same mesh
        size, boundaries, viscosity and inflow, Newton starts from it at ``viscosity`` (and
        converges at once: the stored flow is checked, not trusted); else the flow is solved
        and saved there. Any number of ranks may read a file written by any other number.
        """
        with torch.no_grad():
            tensors = self._inflow_tensors(inflow)
            parts = {"velocity": dolfinx.fem.Function(self.V), "pressure": dolfinx.fem.Function(self.Q)}
            key = self._cache_key(tensors)
            if cache is not None and load_functions(cache, parts, key):
                self.w.x.array[self._velocity_dofs] = parts["velocity"].x.array
                self.w.x.array[self._pressure_dofs] = parts["pressure"].x.array
                self.nu.value = self.viscosity
                self._operator(*tensors)
            else:
                for nu in [*self.continuation, self.viscosity]:
                    self.nu.value = nu
                    self._operator(*tensors)
                if cache is not None:
                    parts["velocity"].x.array[:] = self.w.x.array[self._velocity_dofs]
                    parts["pressure"].x.array[:] = self.w.x.array[self._pressure_dofs]
                    save_functions(cache, parts, key)
        self._solved = True
        return self.velocity

    def _cache_key(self, tensors) -> dict:
        comm = self.mesh.comm
        if tensors:
            inflow = [float(v) for v in tensors[0]]
        else:   # a profile: its values' sum of squares stands for it
            inflow = ["profile", comm.allreduce(float(self._lift_values[: self._n_owned_blocks * self.gdim] @
                                                      self._lift_values[: self._n_owned_blocks * self.gdim]),
                                                op=MPI.SUM)]
        return {"model": "SteadyWind", "viscosity": self.viscosity, "mixing_length": self.mixing_length,
                "inflow": inflow,
                "dofs": self.W.dofmap.index_map.size_global * self.W.dofmap.index_map_bs,
                "inflow_nodes": comm.allreduce(int(self._on_inflow[: self._n_owned_blocks].sum()), op=MPI.SUM)}

    def __call__(self, inflow: torch.Tensor) -> torch.Tensor:
        """The velocity's owned dofs (P2 vector, blocked: ``(n_owned_nodes * gdim,)``) for the
        constant inflow vector ``inflow`` (``(gdim,)``, the same on every rank), differentiable
        in it: its gradient is one adjoint solve (collective). The first call walks down the
        continuation; later calls start Newton from the last flow, at ``viscosity``, and walk
        down the continuation again when that fails."""
        if self.inflow is None:
            raise ValueError("SteadyWind: the flow is differentiable in a constant inflow vector only; this one "
                             "was built with a velocity profile")
        inflow = torch.as_tensor(inflow, dtype=torch.float64)
        if inflow.shape != (self.gdim,):
            raise ValueError(f"SteadyWind: an inflow vector of shape ({self.gdim},) expected, got "
                             f"{tuple(inflow.shape)}")
        if not self._solved:
            self.solve(inflow.detach())
        self.nu.value = self.viscosity
        try:
            w = self._operator(inflow)
        except SolverError:       # on every rank: Newton from the last flow failed; from rest
            self.solve(inflow.detach())
            w = self._operator(inflow)
        lift = (self._owned_on_inflow.to(w.device)[:, None] * inflow[None, :]).reshape(-1)
        return w[self._owned_velocity.to(w.device)] + lift

    def _inflow_tensors(self, inflow) -> tuple[torch.Tensor, ...]:
        if self.inflow is None:
            if inflow is not None:
                raise ValueError("SteadyWind: built with a velocity profile, it takes no inflow vector")
            return ()
        value = self.inflow.value.copy() if inflow is None else np.asarray(
            torch.as_tensor(inflow, dtype=torch.float64).detach().cpu(), dtype=np.float64)
        if value.shape != (self.gdim,):
            raise ValueError(f"SteadyWind: an inflow vector of shape ({self.gdim},) expected, got {value.shape}")
        return (torch.from_numpy(value.copy()),)

    @property
    def velocity(self) -> dolfinx.fem.Function:
        """The velocity of the last solve (a new P2 vector Function)."""
        u = dolfinx.fem.Function(self.V, name="wind")
        u.x.array[:] = self.w.x.array[self._velocity_dofs]
        if self.inflow is None:
            u.x.array[:] += self._lift_values
        else:
            u.x.array.reshape(-1, self.gdim)[self._on_inflow] += self.inflow.value
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

    @property
    def operator(self):
        """The steady solve's ``FemOperator`` (its ``counts`` and ``solver``)."""
        return self._operator

    def force(self, boundary) -> np.ndarray:
        """The force (per unit density and depth) the flow exerts on ``boundary`` (a name or tag
        of a wall), ``∫ (ν ∂u_t/∂n n_y - p n_x, -ν ∂u_t/∂n n_x - p n_y) ds`` with ``n`` the normal
        pointing out of the body, into the fluid, and ``u_t = u·(n_y, -n_x)``, as in the DFG
        benchmark (2D; collective)."""
        if self.gdim != 2:
            raise ValueError("SteadyWind.force is the 2D benchmark's force; this mesh is 3D")
        _, p = ufl.split(self.w)
        n = -ufl.FacetNormal(self.mesh)          # out of the body, into the fluid
        t = ufl.as_vector((n[1], -n[0]))
        ds = ufl.Measure("ds", domain=self.mesh, subdomain_data=self.domain.facet_tags)
        ut = ufl.dot(ufl.dot(ufl.grad(self.u), n), t)
        where = ds(self.domain.tag(boundary))
        parts = [self.nu * ut * n[1] - p * n[0], -self.nu * ut * n[0] - p * n[1]]
        return np.array([self.mesh.comm.allreduce(
            dolfinx.fem.assemble_scalar(dolfinx.fem.form(part * where)), op=MPI.SUM) for part in parts])

    def destroy(self) -> None:
        """Release the Newton solver's PETSc objects now (collective)."""
        self._operator.destroy()


def _require(comm: MPI.Comm, ok: bool, what: str) -> None:
    """Raise on every rank unless ``ok`` holds on every rank (an invariant of DOLFINx's layouts
    that this module relies on)."""
    if not comm.allreduce(bool(ok), op=MPI.LAND):
        raise RuntimeError(f"SteadyWind: {what} on some rank")


def parabolic_inflow(height: float, peak: float) -> Callable[[np.ndarray], np.ndarray]:
    """``u = (4 peak y (height - y) / height², 0)``: the DFG benchmark's inflow profile."""
    def profile(x: np.ndarray) -> np.ndarray:
        return np.stack([4.0 * peak * x[1] * (height - x[1]) / height**2, np.zeros(x.shape[1])])

    return profile


def log_law_inflow(direction, speed: float, *, reference_height: float = 10.0,
                   roughness: float = 0.5) -> Callable[[np.ndarray], np.ndarray]:
    """The neutral atmospheric surface layer's log law over rough ground, for a 3D inflow:
    ``u(z) = speed ln((z + z0) / z0) / ln((z_ref + z0) / z0)`` along the horizontal
    ``direction``, with ``speed`` the wind at ``reference_height`` ``z_ref`` (m, e.g. the
    10 m of a weather station) and the roughness length ``z0`` (m; about 0.5–1 over a city
    district's buildings, 0.03 over open grass). It vanishes at the ground, ``z = 0``."""
    d = np.asarray(direction, dtype=np.float64).reshape(-1)[:2]
    if not (np.all(np.isfinite(d)) and np.any(d) and speed >= 0 and reference_height > 0 and roughness > 0):
        raise ValueError(f"log_law_inflow: a non-zero horizontal direction, speed >= 0, reference_height > 0 and "
                         f"roughness > 0 expected, got {direction!r}, {speed}, {reference_height}, {roughness}")
    d = d / np.linalg.norm(d)
    scale = speed / math.log((reference_height + roughness) / roughness)

    def profile(x: np.ndarray) -> np.ndarray:
        u = scale * np.log((np.maximum(x[2], 0.0) + roughness) / roughness)
        return np.stack([d[0] * u, d[1] * u, np.zeros(x.shape[1])])

    return profile


def wall_distance(domain, walls, *, degree: int = 2,
                  facet_tags: dolfinx.mesh.MeshTags | None = None) -> dolfinx.fem.Function:
    """The distance to the ``walls`` (names or tags of boundaries), from one Poisson solve
    (Spalding; Tucker 2003): ``-Δφ = 1`` with ``φ = 0`` on the walls and no flux elsewhere,
    ``d = √(|∇φ|² + 2φ) - |∇φ|``. It is exact between parallel walls and near any wall, and
    smooth elsewhere (it underestimates far from walls, where a mixing length is capped
    anyway). Returns ``d`` interpolated into P``degree`` (collective; a checked solve)."""
    where = Domain.of(domain, facet_tags)
    mesh = where.mesh
    fdim = mesh.topology.dim - 1
    mesh.topology.create_connectivity(fdim, fdim + 1)
    Q = dolfinx.fem.functionspace(mesh, ("Lagrange", degree))
    phi, q = dolfinx.fem.Function(Q, name="wall_potential"), ufl.TestFunction(Q)
    bc = dolfinx.fem.dirichletbc(0.0, dolfinx.fem.locate_dofs_topological(Q, fdim, where.facets(walls)), Q)
    solve = fem_operator((ufl.inner(ufl.grad(phi), ufl.grad(q)) - q) * ufl.dx, phi, bcs=[bc], linear=True,
                         symmetric=True)
    with torch.no_grad():
        solve()
    solve.destroy()
    g2 = ufl.dot(ufl.grad(phi), ufl.grad(phi))
    d = dolfinx.fem.Function(Q, name="wall_distance")
    d.interpolate(dolfinx.fem.Expression(ufl.sqrt(g2 + 2.0 * ufl.max_value(phi, 0.0)) - ufl.sqrt(g2),
                                         Q.element.interpolation_points))
    return d
