"""Nonlinear 2D shallow water, one differentiable Newton ``fem_operator`` per time step.

For the depth-averaged velocity ``u`` (m/s) and the free-surface elevation ``η`` (m) above
the still-water level, with total depth ``H = h_b(x) + η`` over the bathymetry ``h_b``
(m, positive down), in primitive (non-conservative) form::

    ∂u/∂t + (u·∇)u + f ẑ×u + g∇η + c_d |u| u / H - ∇·(ν∇u) = τ_wind / (ρ H),
    ∂η/∂t + ∇·(H u) = 0.

Discretisation: Taylor–Hood P2 (u) – P1 (η) on one mixed space (the state is a single
mixed Function; the pair is inf-sup stable, so no spurious pressure modes), θ-scheme in
time (every term at ``x_θ = θ xⁿ⁺¹ + (1-θ) xⁿ``). Default ``θ = 0.6``: Crank–Nicolson
(θ = 1/2) keeps gravity waves' amplitude exactly and so also every spurious, unresolved
mode; θ slightly above 1/2 damps them (amplification ``1 - (θ - 1/2) (ω dt)² + …`` per
step) while the phase error stays second order, since the first-order parts of
``-atan((1-θ) ω dt) - atan(θ ω dt)`` sum to ``-ω dt`` for any θ. θ = 1 (backward Euler) is
allowed and damps strongly. Each step is one nonlinear ``fem_operator`` solved by SNES
Newton with MUMPS (or GMRES with a Schur-complement block preconditioner:
:meth:`ShallowWater.fieldsplit_options`); its controls are the previous state and the drag
coefficient.

Boundaries (facet tags):

* LAND (every boundary not open sea): no normal flow, imposed weakly. The continuity equation is
  integrated by parts, ``-∫ H u·∇q dx + ∫_open H u·n q ds``: there is no boundary term on
  land, which is the weak form of ``H u·n = 0``. The volume ``∫ η dx`` of a closed basin
  is then conserved exactly by every step (test function ``q = 1``), up to Newton's
  tolerance. Momentum has natural (free-slip, no-stress) conditions there.
* OPEN SEA (``open_sea``): the elevation ``η = η_tide(t)`` is imposed weakly through
  the pressure term, integrated by parts on the open boundary only:
  ``∫ g∇η·v dx + ∫_open g (η_tide - η) v·n ds`` (= ``-∫ g η ∇·v dx + ∫_land g η v·n ds +
  ∫_open g η_tide v·n ds``). The flux through it is the interior ``H u·n`` of the
  continuity boundary term. ``η_tide`` is a sum of harmonic constituents
  ``Σ a cos(2π t / T + φ)`` evaluated at the step's ``θ``-time.

Bottom friction is quadratic, ``c_d |u| u / H`` with ``|u| = sqrt(u·u + ε²)`` (ε = 1e-8 m/s
keeps the Jacobian defined at rest), or Manning's, ``g n² |u| u / H^(4/3)`` (``friction=
"manning"``, with ``drag`` Manning's ``n``); ``c_d`` (or ``n``) is a Constant or a Function (e.g. DG0), a
control of every step (estimable), or ``drag`` is a callable ``drag(u, H)`` returning the
UFL friction acceleration, e.g. built on a ``dnf.ml_operator`` (a learned drag law whose
network weights receive gradients).

Without wetting and drying the depth must stay positive; a state with ``H ≤ 0`` at any P1
node (on any rank) raises a ``ValueError`` on all ranks. With ``wetting_drying=α`` (m), the
depth is the smooth, positive ``H̃ = (H + √(H² + α²)) / 2`` of Kärnä et al. (2011) wherever
a depth enters (continuity, its flux, friction, wind): ``H̃ ≈ H`` where ``H ≫ α``, and a film
of about ``α² / (4|H|)`` over dry land, whose friction stops the flow there. The continuity
equation is then written for ``H̃``, ``∂H̃/∂t + ∇·(H̃ u) = 0``, so the volume ``∫ H̃ dx``
of a closed basin is what every step conserves. Every term stays smooth in the state, so
Newton and the adjoint work through flooding and drying alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from mpi4py import MPI
from petsc4py import PETSc

import basix.ufl
import dolfinx.fem
import dolfinx.la
import dolfinx.mesh
import numpy as np
import torch
import ufl

from deepnum_fem import parallel
from deepnum_fem.convert import n_owned
from deepnum_fem.errors import ShapeError
from deepnum_fem.fem.options import NEWTON, SolverOptions
from deepnum_fem.geometry import COAST_TAGS
from deepnum_fem.models.base import Domain, TimeSteppingModel, deprecated, model_solver
from deepnum_fem.ops.fem_operator import fem_operator
from deepnum_fem.ops.functional import functional
from deepnum_fem.ops.ml_operator import ml_operator
from deepnum_fem.sensors import PointSensors

__all__ = ["TIDAL_PERIODS", "GaugeSensors", "LearnedDragLaw", "ShallowWater", "speed", "tidal_elevation",
           "tide_constituents"]

_SPEED_FLOOR = 1e-8   # m/s, regularises |u| at rest
# Preconditioners of the elevation's Schur complement in ShallowWater.fieldsplit_options
_TWOLEVEL = {"pc_type": "python", "pc_python_type": "deepnum_fem.precond.TwoLevel", "pc_twolevel_coarse": "lu"}
_SCHUR_PCS = {"learned": _TWOLEVEL,
              "twolevel_jacobi": {**_TWOLEVEL, "pc_twolevel_smoother": "jacobi"},
              "gamg": {"pc_type": "gamg"},
              "lu": {"pc_type": "lu", "pc_factor_mat_solver_type": "mumps"}}


def speed(u) -> ufl.core.expr.Expr:
    """``|u|`` as UFL, regularised at rest (as the model's own quadratic drag is)."""
    return ufl.sqrt(ufl.dot(u, u) + _SPEED_FLOOR**2)


class LearnedDragLaw(torch.nn.Module):
    """A bed-drag law with a learned correction: ``c_d(|u|, H) = c0 exp(N_θ(|u|/U, H/H0))``.

    ``N_θ`` is an MLP (2 inputs, two hidden tanh layers of ``width``, float64). Its output layer
    starts at zero (``c_d = c0``, the textbook constant) or, with ``init_std > 0``, small and
    random. :meth:`drag` gives the ``drag=`` callable of :class:`ShallowWater`, with the network
    inside the weak form (:func:`deepnum_fem.ml_operator`): Newton gets its Jacobian and the
    weights their gradients; :meth:`coefficient` evaluates ``c_d`` for plots.
    """

    def __init__(self, c0: float = 0.0025, *, width: int = 16, speed_scale: float = 0.5,
                 depth_scale: float = 30.0, init_std: float = 0.0):
        super().__init__()
        self.c0 = c0
        self.net = torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.Tanh(), torch.nn.Linear(width, width),
                                       torch.nn.Tanh(), torch.nn.Linear(width, 1)).double()
        self.scales = (speed_scale, depth_scale)   # not a buffer: checkpoints hold the weights only
        with torch.no_grad():
            if init_std > 0:
                self.net[-1].weight.normal_(0.0, init_std)
            else:
                self.net[-1].weight.zero_()
            self.net[-1].bias.zero_()

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """``N_θ`` at points ``q = (|u|, H)`` of shape ``(n, 2)``."""
        return self.net(q / torch.tensor(self.scales, dtype=q.dtype, device=q.device))

    def coefficient(self, speeds: np.ndarray, depths: np.ndarray) -> np.ndarray:
        """``c_d`` at the given speeds (m/s) and depths (m)."""
        with torch.no_grad():
            q = torch.from_numpy(np.stack([speeds, depths], axis=-1).astype(np.float64))
            return self.c0 * np.exp(self(q).squeeze(-1).numpy())

    def drag(self, quadrature_degree: int = 4) -> Callable:
        """The friction acceleration ``(u, H) -> c_d |u| u / H`` as a ``drag=`` law."""
        def friction(u, H):
            N = ml_operator(self, operands=(speed(u), H), quadrature_degree=quadrature_degree)
            return self.c0 * ufl.exp(N) * speed(u) * u / H
        return friction


def _collapse_map(m) -> np.ndarray:
    """The collapsed-to-parent dof map (DOLFINx 0.11 returns a list holding one array)."""
    if isinstance(m, (list, tuple)) and len(m) and isinstance(m[0], np.ndarray):
        m = m[0]
    return np.asarray(m, dtype=np.int64)


#: Periods (s) of the main tidal constituents (Doodson's speeds: M2 28.9841042°/h, S2 30°/h,
#: N2 28.4397295°/h, K2 30.0821373°/h, K1 15.0410686°/h, O1 13.9430356°/h, M4 = 2 M2).
TIDAL_PERIODS = {name: 360.0 / speed * 3600.0 for name, speed in {
    "M2": 28.9841042, "S2": 30.0, "N2": 28.4397295, "K2": 30.0821373, "K1": 15.0410686, "O1": 13.9430356,
    "M4": 57.9682084}.items()}


def tide_constituents(table: dict[str, tuple[float, float]]) -> list[tuple[float, float, float]]:
    """``ShallowWater``'s ``tide=`` from a table ``{name: (amplitude m, phase in degrees)}`` of
    constituents named in :data:`TIDAL_PERIODS`, e.g. ``{"M2": (2.05, 0.0), "S2": (0.75, 30.0)}``:
    ``η_tide(t) = Σ a cos(2π t / T - φ)`` (the phase a lag, as tables of harmonic constants give
    it; ``t = 0`` is the phases' reference time)."""
    unknown = sorted(set(table) - set(TIDAL_PERIODS))
    if unknown:
        raise ValueError(f"unknown tidal constituent(s) {unknown}; known: {sorted(TIDAL_PERIODS)}")
    return [(float(a), TIDAL_PERIODS[name], -math.radians(float(phase))) for name, (a, phase) in table.items()]


def tidal_elevation(tide: Sequence[tuple[float, float, float]] | None, t: float) -> float:
    """``Σ a cos(2π t / T + φ)`` over the constituents ``(a, T, φ)`` (m, s, rad); 0 for None."""
    if not tide:
        return 0.0
    return float(sum(a * math.cos(2.0 * math.pi * t / period + phase) for a, period, phase in tide))


class GaugeSensors:
    """Tide gauges: the elevation ``η`` at fixed points, from a mixed state tensor.

    ``η``'s owned dofs are picked out of the mixed state (``ShallowWater.eta_dofs``: the
    collapsed P1 space's owned dofs, in its order, as positions in the mixed space's owned
    dofs), then a :class:`deepnum_fem.sensors.PointSensors` on the collapsed P1 space
    evaluates them. ``gauges(state)`` is global (same on every rank, collective);
    ``gauges.local(state)`` is this rank's share (sum it once over a series with
    ``dnf.parallel.sum``). Both accept a leading batch/time dimension and are differentiable.
    """

    def __init__(self, model: ShallowWater, points: np.ndarray):
        self.model = model
        self.sensors = PointSensors(model.Q, np.asarray(points, dtype=np.float64))
        self.comm = model.comm

    def local(self, state: torch.Tensor) -> torch.Tensor:
        return self.sensors.local(self.model.elevation(state))

    def __call__(self, state: torch.Tensor) -> torch.Tensor:
        return parallel.sum(self.local(state), self.comm)


class ShallowWater(TimeSteppingModel):
    """Nonlinear shallow-water model (see the module docstring); a
    :class:`~deepnum_fem.models.base.TimeSteppingModel`.

    The state is the owned dofs of the mixed P2–P1 space ``(u, η)``, ``(n,)``
    (:meth:`velocity` and :meth:`elevation` pick the fields out). Its control, unless the drag
    is a learned law, is ``drag``: a 0-dim tensor for a coefficient, the owned dofs for a field.

    Args:
        domain: The 2D domain (metres): a ``MeshData`` (``dnf.io.load_coast()``,
            ``dnf.geometry.coastal_domain``; its boundaries are known by name), or a mesh
            with ``facet_tags`` (named by ``geometry.COAST_TAGS``: LAND = 1, OPEN_SEA = 2).
            The old form ``ShallowWater(mesh, facet_tags, bathymetry, ...)`` is deprecated.
        bathymetry: Still-water depth ``h_b`` (m, positive down): a scalar Function (any
            space on ``mesh``) or a number.
        dt: Time step (s).
        g: Gravity (m/s²).
        coriolis: Coriolis parameter ``f`` (1/s, f-plane).
        drag: Quadratic bottom-drag coefficient ``c_d`` (dimensionless), or with
            ``friction="manning"`` Manning's ``n`` (s/m^(1/3)): a number (a Constant
            control), a scalar Function (a control, e.g. DG0 or P1), or a callable
            ``drag(u, H) -> UFL vector``, the friction acceleration (no drag control then).
        friction: ``"quadratic"``, ``c_d |u| u / H``, or ``"manning"``,
            ``g n² |u| u / H^(4/3)`` (``c_d = g n² / H^(1/3)``), with ``n = drag``.
        wetting_drying: The depth scale ``α`` (m) of the wetting–drying depth ``H̃`` (see the
            module docstring), about the depth of the shallowest cells' water; None: off.
        viscosity: Horizontal eddy viscosity ``ν`` (m²/s).
        theta: Implicitness, in [1/2, 1] (default 0.6, see the module docstring).
        tide: Constituents ``[(amplitude m, period s, phase rad), ...]`` of the open-sea
            elevation; None: ``η = 0`` there.
        wind_stress: Constant wind stress ``τ`` (N/m², a 2-tuple or a vector Function),
            divided by ``ρ H``; None: no wind. It is fixed in time (not a control).
        rho: Water density (kg/m³) for the wind term.
        open_sea: The open-sea boundaries (names or tag values); every other boundary is
            land (a wall). ``open_sea_tags=`` is its deprecated name; ``land_tags=`` is
            deprecated and unused.
        t0: Time (s) of the state at step 0 (the tide's phase origin).
        petsc_options: Newton options (default: SNES newtonls, MUMPS, rtol 1e-10, atol 1e-12).
            A KSP/PC named here replaces MUMPS, in the adjoint solves too; the Jacobian is not
            symmetric (GMRES). :meth:`fieldsplit_options` gives a block preconditioner: with
            ``pc_type fieldsplit`` the model names the fields ``u`` and ``eta`` on its solvers
            (options ``fieldsplit_u_*``, ``fieldsplit_eta_*``).
        solver: All the solver settings as one :class:`~deepnum_fem.SolverOptions`.
        quadrature_degree: Of the step's forms (friction and wind are not polynomials).
    """

    def __init__(self, domain, bathymetry, *legacy, dt: float, g: float = 9.81, coriolis: float = 0.0,
                 drag=0.0025, viscosity: float = 1.0, theta: float = 0.6,
                 tide: Sequence[tuple[float, float, float]] | None = None, wind_stress=None, rho: float = 1025.0,
                 open_sea="OPEN_SEA", t0: float = 0.0, petsc_options: dict | None = None,
                 solver: SolverOptions | None = None, quadrature_degree: int = 4,
                 facet_tags: dolfinx.mesh.MeshTags | None = None, open_sea_tags=None, land_tags=None,
                 friction: str = "quadratic", wetting_drying: float | None = None):
        if len(legacy) > 1:
            raise TypeError(f"ShallowWater takes 2 positional arguments (domain, bathymetry), got {2 + len(legacy)}")
        if legacy:
            deprecated("ShallowWater(mesh, facet_tags, bathymetry, ...)",
                       "ShallowWater(mesh_data, bathymetry, ...) or ShallowWater(mesh, bathymetry, facet_tags=...)")
            facet_tags, bathymetry = bathymetry, legacy[0]
        if open_sea_tags is not None:
            deprecated("ShallowWater(open_sea_tags=)", "ShallowWater(open_sea=)")
            open_sea = open_sea_tags
        if land_tags is not None:
            deprecated("ShallowWater(land_tags=)", "nothing: every boundary that is not open sea is land")
        self._domain = Domain.of(domain, facet_tags)
        if not self._domain.names:        # a bare mesh: the coast's convention
            self._domain = Domain(self._domain.mesh, self._domain.facet_tags,
                                  {k: v for k, v in COAST_TAGS.items()})
        mesh, facet_tags = self._domain.mesh, self._domain.facet_tags
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"dt must be a finite positive time step, got {dt}")
        if friction not in ("quadratic", "manning"):
            raise ValueError(f"friction must be 'quadratic' or 'manning', got {friction!r}")
        self.friction = friction
        if wetting_drying is not None and not wetting_drying > 0:
            raise ValueError(f"wetting_drying (the depth scale α, m) must be > 0, got {wetting_drying}")
        self.wetting_drying = None if wetting_drying is None else float(wetting_drying)
        if not 0.5 <= theta <= 1.0:
            raise ValueError(f"theta must lie in [0.5, 1] (unconditionally stable), got {theta}")
        if g <= 0 or viscosity < 0:
            raise ValueError(f"g > 0 and viscosity >= 0 expected, got g={g}, viscosity={viscosity}")
        if mesh.geometry.dim != 2 or mesh.topology.dim != 2:
            raise ShapeError(f"ShallowWater needs a 2D mesh, got tdim={mesh.topology.dim}, "
                             f"gdim={mesh.geometry.dim}")
        tide = [tuple(map(float, c)) for c in (tide or [])]
        for c in tide:
            if len(c) != 3 or not c[1] > 0:
                raise ValueError(f"tide constituents are (amplitude, period > 0, phase), got {c}")
        self.mesh = mesh
        self.dt, self.theta, self.g, self.tide, self.t0 = float(dt), float(theta), float(g), tide, float(t0)

        # -- spaces: Taylor–Hood P2–P1 on one mixed space -----------------------------------
        cell = mesh.basix_cell()
        P2 = basix.ufl.element("Lagrange", cell, 2, shape=(2,))
        P1 = basix.ufl.element("Lagrange", cell, 1)
        self.W = dolfinx.fem.functionspace(mesh, basix.ufl.mixed_element([P2, P1]))
        self.w = dolfinx.fem.Function(self.W, name="state")
        self.w_old = dolfinx.fem.Function(self.W, name="state_previous")
        self.n = n_owned(self.w)
        self.V, u_map = self.W.sub(0).collapse()
        self.Q, eta_map = self.W.sub(1).collapse()
        self.n_u, self.n_eta = n_owned(dolfinx.fem.Function(self.V)), n_owned(dolfinx.fem.Function(self.Q))
        # Owned dofs of a collapsed sub-space are owned dofs of the mixed space (ownership is
        # inherited); their positions in the mixed owned block interleave u and η.
        u_idx, eta_idx = _collapse_map(u_map)[: self.n_u], _collapse_map(eta_map)[: self.n_eta]
        bad = (u_idx.size and u_idx.max() >= self.n) or (eta_idx.size and eta_idx.max() >= self.n) \
            or self.n_u + self.n_eta != self.n
        parallel.raise_on_any_rank(RuntimeError("ShallowWater: the sub-spaces' owned dofs are not owned dofs of "
                                                "the mixed space; unsupported dof layout") if bad else None,
                                   self.comm)
        self.u_dofs = torch.from_numpy(u_idx.astype(np.int64))
        self.eta_dofs = torch.from_numpy(eta_idx.astype(np.int64))
        self.coordinates = self.Q.tabulate_dof_coordinates()[: self.n_eta, :2]

        # -- bathymetry, at the P1 nodes too (the depth check) --------------------------------
        if isinstance(bathymetry, dolfinx.fem.Function):
            if bathymetry.ufl_shape != ():
                raise ShapeError(f"bathymetry must be a scalar Function, got shape {bathymetry.ufl_shape}")
            self.h_b = bathymetry
            nodes = dolfinx.fem.Function(self.Q)
            nodes.interpolate(bathymetry)
            self.h_b_nodes = nodes.x.array[: self.n_eta].copy()
        else:
            self.h_b = dolfinx.fem.Constant(mesh, float(bathymetry))
            self.h_b_nodes = np.full(self.n_eta, float(bathymetry))

        # -- drag ------------------------------------------------------------------------------
        self.drag_law: Callable | None = None
        self.drag: dolfinx.fem.Function | dolfinx.fem.Constant | None = None
        if callable(drag) and not isinstance(drag, (dolfinx.fem.Function, dolfinx.fem.Constant)):
            self.drag_law = drag
        elif isinstance(drag, dolfinx.fem.Function):
            if drag.ufl_shape != ():
                raise ShapeError(f"drag must be a scalar Function, got shape {drag.ufl_shape}")
            self.drag = drag
        elif isinstance(drag, dolfinx.fem.Constant):
            self.drag = drag
        else:
            if float(drag) < 0:
                raise ValueError(f"drag coefficient must be >= 0, got {drag}")
            self.drag = dolfinx.fem.Constant(mesh, float(drag))

        # -- residual --------------------------------------------------------------------------
        u, eta = ufl.split(self.w)
        u_old, eta_old = ufl.split(self.w_old)
        v, q = ufl.TestFunctions(self.W)
        th = self.theta
        u_th, eta_th = th * u + (1 - th) * u_old, th * eta + (1 - th) * eta_old
        H = self.h_b + eta_th
        inv_dt = dolfinx.fem.Constant(mesh, 1.0 / self.dt)
        storage = (eta - eta_old) * inv_dt          # ∂H/∂t
        if self.wetting_drying is not None:        # Kärnä et al. 2011: H̃ = (H + √(H² + α²)) / 2 > 0
            alpha = dolfinx.fem.Constant(mesh, self.wetting_drying)

            def water(e):
                depth = self.h_b + e
                return 0.5 * (depth + ufl.sqrt(depth**2 + alpha**2))

            H = water(eta_th)
            storage = (water(eta) - water(eta_old)) * inv_dt
        gc = dolfinx.fem.Constant(mesh, self.g)
        f = dolfinx.fem.Constant(mesh, float(coriolis))
        nu = dolfinx.fem.Constant(mesh, float(viscosity))
        self.eta_tide = dolfinx.fem.Constant(mesh, 0.0)
        nvec = ufl.FacetNormal(mesh)
        md = {"quadrature_degree": quadrature_degree}
        dx = ufl.dx(metadata=md)
        ds = ufl.Measure("ds", domain=mesh, subdomain_data=facet_tags, metadata=md)
        self.open_sea_tags = self._domain.tags(open_sea)
        has_open = facet_tags is not None and self.comm.allreduce(
            sum(int(facet_tags.find(t).size) for t in self.open_sea_tags), op=MPI.SUM) > 0
        if self.tide and not has_open:
            raise ValueError(f"tide given, but no facet carries an open-sea tag {self.open_sea_tags}")

        if self.drag_law is not None:
            friction = self.drag_law(u_th, H)
        elif friction == "manning":     # c_d = g n² / H^(1/3)
            friction = gc * self.drag**2 * speed(u_th) * u_th / H ** (4.0 / 3.0)
        else:
            friction = self.drag * speed(u_th) * u_th / H
        coriolis_term = f * ufl.as_vector((-u_th[1], u_th[0]))
        F = (ufl.dot((u - u_old) * inv_dt, v) + ufl.dot(ufl.dot(ufl.grad(u_th), u_th), v)
             + ufl.dot(coriolis_term, v) + gc * ufl.dot(ufl.grad(eta_th), v) + ufl.dot(friction, v)
             + nu * ufl.inner(ufl.grad(u_th), ufl.grad(v))
             + storage * q - H * ufl.dot(u_th, ufl.grad(q))) * dx
        if wind_stress is not None:
            tau = (dolfinx.fem.Constant(mesh, np.asarray(wind_stress, dtype=np.float64))
                   if isinstance(wind_stress, (tuple, list, np.ndarray)) else wind_stress)
            if getattr(tau, "ufl_shape", None) != (2,):
                raise ShapeError(f"wind_stress must be a 2-vector, got {getattr(tau, 'ufl_shape', tau)}")
            F -= ufl.dot(tau, v) / (float(rho) * H) * dx
        if has_open:
            ds_open = sum((ds(t) for t in self.open_sea_tags[1:]), ds(self.open_sea_tags[0]))
            F += (gc * (self.eta_tide - eta_th) * ufl.dot(v, nvec) + H * ufl.dot(u_th, nvec) * q) * ds_open

        controls = [self.w_old] + ([self.drag] if self.drag is not None else [])
        self.controls = ("drag",) if self.drag is not None else ()
        # Newton (fewer iterations allowed than fem_operator's default: a step that needs more
        # is too long); its linear solver is MUMPS LU unless petsc_options name a KSP or PC
        newton = {k: v for k, v in NEWTON.items() if k.startswith("snes_")} | {"snes_max_it": 30}
        settings = model_solver(solver, petsc_options, **newton)
        user_configure = settings.configure_ksp

        def configure(ksp):   # the fields first, then what the user asked for
            self._name_fields(ksp)
            if user_configure is not None:
                user_configure(ksp)

        self._operator = fem_operator(F, self.w, controls=controls, linear=False, configure_ksp=configure,
                                      solver=settings)

        # ∫ η dx = eta_weights · state (exact for P1 η)
        weights = dolfinx.fem.assemble_vector(dolfinx.fem.form(q * ufl.dx))
        weights.scatter_reverse(dolfinx.la.InsertMode.add)
        self.eta_weights = torch.from_numpy(weights.array[: self.n].copy())
        self.bed_volume = self.comm.allreduce(
            dolfinx.fem.assemble_scalar(dolfinx.fem.form(self.h_b * ufl.dx(domain=mesh))), op=MPI.SUM)

    # -- linear solvers ---------------------------------------------------------------------------
    @staticmethod
    def fieldsplit_options(schur: str = "learned", *, factorization: str = "full") -> dict:
        """``petsc_options`` for GMRES with a Schur-complement block preconditioner (PCFIELDSPLIT).

        With the Jacobian's blocks ``[[A_uu, A_uη], [A_ηu, A_ηη]]``, the preconditioner is the
        block factorisation (``factorization``: ``"full"``, ``"upper"``, ``"lower"`` or
        ``"diag"``) with ``A_uu`` approximated by ILU(0) (block Jacobi + ILU(0) on several
        ranks) and the Schur complement preconditioned on PETSc's ``selfp`` matrix
        ``Ŝ = A_ηη − A_ηu D⁻¹ A_uη`` (``D`` the diagonal of ``A_uu``): the elevation mass over
        ``dt`` plus a depth-weighted Laplacian (about ``θ² g H dt``), nearly symmetric.
        ``schur`` preconditions ``Ŝ``: ``"learned"`` (:class:`~deepnum_fem.precond.TwoLevel`,
        learned FSAI smoother, MUMPS LU coarse solve), ``"twolevel_jacobi"`` (the same cycle
        with a Jacobi smoother), ``"gamg"``, or ``"lu"`` (MUMPS on ``Ŝ``, for reference).

        Every part has a transpose, as the adjoint's transposed solves need (SOR has none for a
        non-symmetric ``A_uu``). Update the dict to change any of it (e.g. ``"ksp_rtol"``). On
        the bundled bay (27k dofs, dt = 900 s) it takes about 70 GMRES iterations per Newton
        iteration, where ILU(0) on the whole matrix fails; MUMPS stays faster at such sizes.
        """
        if schur not in _SCHUR_PCS:
            raise ValueError(f"schur must be one of {sorted(_SCHUR_PCS)}, got {schur!r}")
        if factorization not in ("full", "upper", "lower", "diag"):
            raise ValueError(f"factorization must be 'full', 'upper', 'lower' or 'diag', got {factorization!r}")
        return {"ksp_type": "gmres", "ksp_gmres_restart": 200, "ksp_rtol": 1e-10, "ksp_atol": 1e-14,
                "ksp_max_it": 2000, "pc_type": "fieldsplit", "pc_fieldsplit_type": "schur",
                "pc_fieldsplit_schur_fact_type": factorization, "pc_fieldsplit_schur_precondition": "selfp",
                "fieldsplit_u_ksp_type": "preonly", "fieldsplit_u_pc_type": "bjacobi",
                "fieldsplit_eta_ksp_type": "preonly",
                **{f"fieldsplit_eta_{k}": v for k, v in _SCHUR_PCS[schur].items()}}

    def _name_fields(self, ksp: PETSc.KSP) -> None:
        """Give a PCFIELDSPLIT the fields ``u`` and ``eta``: their owned dofs, as global rows."""
        pc = ksp.getPC()
        if pc.getType() != "fieldsplit":
            return
        start = self.W.dofmap.index_map.local_range[0] * self.W.dofmap.index_map_bs
        fields = [(name, PETSc.IS().createGeneral(np.sort(start + dofs.numpy()).astype(PETSc.IntType),
                                                  comm=self.comm))
                  for name, dofs in (("u", self.u_dofs), ("eta", self.eta_dofs))]
        pc.setFieldSplitIS(*fields)
        for _, index_set in fields:      # the PC holds its own references
            index_set.destroy()

    # -- state ----------------------------------------------------------------------------------
    def drag_value(self) -> torch.Tensor:
        """The current drag control's tensor (a Constant's value, or a Function's owned dofs)."""
        if self.drag is None:
            raise ValueError("this model has a learned drag law (callable drag=), no drag coefficient control")
        if isinstance(self.drag, dolfinx.fem.Constant):
            return torch.tensor(np.asarray(self.drag.value, dtype=np.float64))
        return torch.from_numpy(self.drag.x.array[: n_owned(self.drag)].copy())

    def initial_state(self, elevation: Callable[[np.ndarray], np.ndarray] | float = 0.0,
                      velocity: Callable[[np.ndarray], np.ndarray] | None = None) -> torch.Tensor:
        """A mixed state tensor (owned dofs) from ``elevation(x)`` (or a level) and ``velocity(x)``
        (``x`` of shape ``(3, n)``, returning ``(n,)`` and ``(2, n)``); rest by default."""
        w0 = dolfinx.fem.Function(self.W)
        if callable(elevation):
            w0.sub(1).interpolate(elevation)
        else:
            level = float(elevation)
            w0.sub(1).interpolate(lambda x: np.full(x.shape[1], level))
        if velocity is not None:
            w0.sub(0).interpolate(velocity)
        w0.x.scatter_forward()
        return torch.from_numpy(w0.x.array[: self.n].copy())

    def _check_state(self, state: torch.Tensor, what: str) -> None:
        if state.shape != (self.n,):
            raise ShapeError(f"ShallowWater.{what}: a state of shape ({self.n},) (owned dofs of the mixed "
                             f"P2-P1 space) expected, got {tuple(state.shape)}")

    def elevation(self, state: torch.Tensor) -> torch.Tensor:
        """Owned dofs of ``η`` (the collapsed P1 space's order), ``(..., n_eta)``; differentiable."""
        if state.shape[-1] != self.n:
            raise ShapeError(f"ShallowWater.elevation: states of shape (..., {self.n}) expected, "
                             f"got {tuple(state.shape)}")
        return state[..., self.eta_dofs.to(state.device)]

    def velocity(self, state: torch.Tensor) -> torch.Tensor:
        """Owned P2 nodal velocities, ``(..., n_nodes, 2)`` (the collapsed P2 space's order)."""
        if state.shape[-1] != self.n:
            raise ShapeError(f"ShallowWater.velocity: states of shape (..., {self.n}) expected, "
                             f"got {tuple(state.shape)}")
        return state[..., self.u_dofs.to(state.device)].reshape(*state.shape[:-1], -1, 2)

    def volume(self, state: torch.Tensor) -> torch.Tensor:
        """Water volume ``∫ H dx = ∫ h_b dx + ∫ η dx`` (with wetting and drying ``∫ H̃ dx``, what
        the steps conserve; collective, differentiable in ``state``)."""
        if self.wetting_drying is not None:
            return self._wet_volume(self.elevation(state))
        return parallel.sum(state @ self.eta_weights.to(state.device, state.dtype), self.comm) + self.bed_volume

    def _wet_volume(self, eta: torch.Tensor) -> torch.Tensor:
        if getattr(self, "_wet_volume_op", None) is None:
            e = dolfinx.fem.Function(self.Q, name="elevation")
            depth = self.h_b + e
            alpha = self.wetting_drying
            self._wet_volume_op = functional(0.5 * (depth + ufl.sqrt(depth**2 + alpha**2)) * ufl.dx(domain=self.mesh),
                                             [e])
        return self._wet_volume_op(eta)

    def min_depth(self, state: torch.Tensor) -> float:
        """Smallest ``H = h_b + η`` at the P1 nodes (collective)."""
        H = self.h_b_nodes + self.elevation(state.detach()).cpu().numpy()
        return self.comm.allreduce(float(H.min()) if H.size else math.inf, op=MPI.MIN)

    def _check_depth(self, state: torch.Tensor, when: str) -> None:
        if self.wetting_drying is not None:   # the modified depth is positive by construction
            return
        depth = self.min_depth(state)
        if not depth > 0:   # the same value on every rank: all raise together
            raise ValueError(f"ShallowWater: the depth H = h_b + η is {depth:.3g} <= 0 somewhere {when}; "
                             "wetting and drying is not supported (deepen the bathymetry, lower the "
                             "forcing, or shorten dt)")

    def sensors(self, points) -> GaugeSensors:
        """Tide gauges at ``points`` (``(n, 2)``): ``η`` there from a state (see :class:`GaugeSensors`)."""
        return GaugeSensors(self, points)

    def gauge_sensors(self, points) -> GaugeSensors:
        """Deprecated name of :meth:`sensors`."""
        deprecated("ShallowWater.gauge_sensors", "ShallowWater.sensors")
        return GaugeSensors(self, points)

    def _output(self):
        return self.Q, "eta", self.elevation

    # -- time stepping ----------------------------------------------------------------------------
    def step(self, state: torch.Tensor, k: int = 0, *legacy, **controls: torch.Tensor | None) -> torch.Tensor:
        """One step from ``state`` at ``t0 + k dt`` to ``t0 + (k + 1) dt`` (collective).

        ``drag=``: the drag control's tensor (a 0-dim tensor for a Constant, the owned dofs for
        a Function); not given: its current value (no gradient). A model with a learned drag
        law has no drag control. The old form ``step(state, k, drag)`` is deprecated.
        """
        self._positional_control(legacy, controls, "drag")
        if self.drag is None and controls.pop("drag", None) is not None:
            raise ValueError("drag= given, but the model has a learned drag law (no drag control)")
        return super().step(state, k, **controls)

    def _step(self, state: torch.Tensor, k: int, controls: dict[str, torch.Tensor]) -> torch.Tensor:
        self._check_state(state, "step")
        self._check_depth(state, f"in the state before step {k}")
        t_a, t_b = self.t0 + k * self.dt, self.t0 + (k + 1) * self.dt
        self.eta_tide.value = (self.theta * tidal_elevation(self.tide, t_b)
                               + (1 - self.theta) * tidal_elevation(self.tide, t_a))
        out = self._operator(state, *(controls[name] for name in self.controls))
        self._check_depth(out, f"after step {k}")
        return out

    def control(self, name: str) -> torch.Tensor:
        """The drag control's current value (``name="drag"``): see :meth:`drag_value`."""
        self._check_control_name(name)
        return self.drag_value()

    @property
    def state_shape(self) -> tuple[int]:
        return (self.n,)

    @property
    def step_operator(self):
        """Deprecated name of :attr:`~deepnum_fem.models.base.TimeSteppingModel.operator`."""
        deprecated("ShallowWater.step_operator", "ShallowWater.operator")
        return self._operator
