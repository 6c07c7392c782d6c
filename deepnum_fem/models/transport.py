"""Advection–diffusion–reaction of a pollutant, one differentiable ``fem_operator`` per time step.

For a concentration ``c`` (e.g. µg/m³) in a wind field ``w`` (m/s),

    ∂c/∂t + w·∇c - ∇·(K ∇c) + k c = S(x, t),

with eddy diffusivity ``K`` (m²/s, optionally times a scale field that is a control), first-order
loss rate ``k`` (1/s: deposition, chemistry) and emission rate density ``S`` (µg/m³/s), a
control of every step. Boundaries: a prescribed concentration on the ``dirichlet`` boundaries
(by name, e.g. ``{"INFLOW": 0.0}``: the inflow, usually at the background 0), elsewhere zero
diffusive flux (walls, buildings, outflow: what reaches the outflow is advected out).

Discretisation: P1 in space with SUPG (streamline-upwind Petrov–Galerkin: the test function
``v + τ w·∇v`` on the element residual, ``τ = ((2/Δt)² + (2|w|/h)² + 9 (4K/h²)²)^(-1/2)``
(Shakib–Tezduyar), with ``h`` the element's length along the wind, ``2|w| / Σ|w·∇φ_i|``
(Tezduyar)). It is consistent, so smooth solutions converge, and it removes the node-to-node
wiggles of Galerkin at high Péclet numbers; it is not a discrete maximum principle (small
undershoots can remain next to sharp layers). θ-scheme in time (θ = 1/2 Crank–Nicolson,
second order; θ = 1 backward Euler, first order and damped).

The step operator depends on ``w, K, k, Δt`` only (and the diffusivity scale when there is
one): it is assembled and LU-factorised once and reused by every step and every adjoint step.
``dt = math.inf`` with ``theta = 1`` solves the steady problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from mpi4py import MPI

import dolfinx.fem
import dolfinx.io
import dolfinx.la
import dolfinx.mesh
import numpy as np
import torch
import ufl

from deepnum_fem import parallel
from deepnum_fem.convert import n_owned
from deepnum_fem.errors import ShapeError
from deepnum_fem.fem.options import SolverOptions
from deepnum_fem.io import write_frames
from deepnum_fem.models.base import Domain, PointSensorsOf, TimeSteppingModel, deprecated, model_solver
from deepnum_fem.ops.fem_operator import fem_operator

__all__ = ["NeuralEmission", "StreetEmission", "Transport", "gaussian_source", "line_source", "polyline_source",
           "potential_flow", "street_sources"]


def potential_flow(domain, *legacy, inflow="INFLOW", outflow="OUTFLOW", speed: float = 1.0, degree: int = 2,
                   facet_tags: dolfinx.mesh.MeshTags | None = None) -> dolfinx.fem.Function:
    """Irrotational, incompressible wind ``w = ∇φ`` around obstacles.

    ``Δφ = 0`` with ``w·n = -speed`` on the ``inflow`` boundaries (wind enters at ``speed``),
    ``φ = 0`` on the ``outflow`` boundaries (the wind leaves normal to them, the flux balances
    by itself) and ``w·n = 0`` on every other boundary (walls, buildings). ``φ`` is P``degree``;
    ``w`` is returned exactly, as a discontinuous vector Function of degree ``degree - 1``.
    ``domain`` is a ``MeshData`` (boundaries by name: ``"INFLOW"``) or a mesh with
    ``facet_tags`` (boundaries by name or tag value). The old form ``potential_flow(mesh,
    facet_tags, inflow, outflow)`` is deprecated.

    Potential flow has slip at walls and no wakes or recirculation: a cheap, smooth,
    divergence-free first guess of street-level wind, not a CFD solution.
    """
    if len(legacy) > 5:
        raise TypeError(f"potential_flow(mesh, facet_tags, inflow, outflow, speed, degree) takes at most 6 positional "
                        f"arguments, got {1 + len(legacy)}")
    if legacy:
        deprecated("potential_flow(mesh, facet_tags, inflow, outflow)",
                   "potential_flow(mesh_data, inflow=names, outflow=names)")
        old = dict(zip(("facet_tags", "inflow", "outflow", "speed", "degree"), legacy, strict=False))
        facet_tags, inflow, outflow = (old.get("facet_tags", facet_tags), old.get("inflow", inflow),
                                       old.get("outflow", outflow))
        speed, degree = old.get("speed", speed), old.get("degree", degree)
    where = Domain.of(domain, facet_tags)
    mesh, facet_tags = where.mesh, where.facet_tags
    inflow, outflow = where.tags(inflow), where.tags(outflow)
    tdim = mesh.topology.dim
    Q = dolfinx.fem.functionspace(mesh, ("Lagrange", degree))
    potential, psi = dolfinx.fem.Function(Q, name="potential"), ufl.TestFunction(Q)
    ds = ufl.Measure("ds", domain=mesh, subdomain_data=facet_tags)
    ds_in = sum((ds(int(t)) for t in inflow[1:]), ds(int(inflow[0])))
    outflow_facets = np.concatenate([facet_tags.find(int(t)) for t in outflow])
    mesh.topology.create_connectivity(tdim - 1, tdim)
    bc = dolfinx.fem.dirichletbc(0.0, dolfinx.fem.locate_dofs_topological(Q, tdim - 1, outflow_facets), Q)
    # a checked solve (MUMPS; a singular operator, e.g. with no outflow facet, is an error on
    # every rank), its PETSc objects released at once, on every rank together
    F = ufl.inner(ufl.grad(potential), ufl.grad(psi)) * ufl.dx + float(speed) * psi * ds_in
    solve = fem_operator(F, potential, bcs=[bc], linear=True, symmetric=True)
    with torch.no_grad():
        solve()
    solve.destroy()
    W = dolfinx.fem.functionspace(mesh, ("Discontinuous Lagrange", max(degree - 1, 0), (mesh.geometry.dim,)))
    w = dolfinx.fem.Function(W, name="wind")
    w.interpolate(dolfinx.fem.Expression(ufl.grad(potential), W.element.interpolation_points))
    return w


def _streamline_length(mesh: dolfinx.mesh.Mesh, w) -> ufl.core.expr.Expr:
    """Tezduyar's element length along ``w``: ``2|w| / Σ_i |w·∇φ_i|`` over the P1 basis of the cell
    (the cell diameter where ``w = 0``). ``w·∇φ_i = a·∇̂φ̂_i`` with ``a = J⁻¹ w``; the reference
    gradients of the simplex's hat functions are ``-Σ e_j`` and ``e_1 … e_d``."""
    a = ufl.dot(ufl.JacobianInverse(mesh), w)
    tdim = mesh.topology.dim
    total = abs(sum(a[j] for j in range(tdim))) + sum(abs(a[j]) for j in range(tdim))
    speed = ufl.sqrt(ufl.dot(w, w))
    return ufl.conditional(total > 1e-12 * speed + 1e-300, 2.0 * speed / (total + 1e-300), ufl.CellDiameter(mesh))


class Transport(TimeSteppingModel):
    """Pollutant transport on a mesh (see the module docstring); a
    :class:`~deepnum_fem.models.base.TimeSteppingModel`.

    The state is the concentration's owned P1 dofs, ``(n,)``. Controls: ``source``, the
    emission over a step (P1 dofs, at ``t + θ dt``; default zero); when built with
    ``diffusivity_scale``, ``scale`` (that Function's owned dofs); when built with
    ``wind_control=True``, ``wind`` (the wind Function's owned dofs, e.g. from
    calling a :class:`~deepnum_fem.models.SteadyWind`, or a constant
    wind's vector). A new wind's value costs one new factorisation; the steps that share it
    share that factorisation.

    Args:
        domain: The domain (metres): a ``MeshData`` (``dnf.io.load_city()``; its boundaries
            are then known by name) or a mesh.
        wind: A vector Function (e.g. from :func:`potential_flow`), a UFL vector expression,
            or a constant vector (tuple).
        dt: Time step (s); ``math.inf`` for the steady problem (with ``theta=1``).
        diffusivity: Eddy diffusivity ``K`` (m²/s).
        decay: Loss rate ``k`` (1/s).
        diffusivity_scale: A scalar Function ``s(x)`` multiplying ``K``; the ``scale``
            control. None: ``s = 1``.
        wind_control: Make the wind (a Function or a constant vector) the ``wind`` control.
        dirichlet: ``{boundary: value}``, where ``c = value``; a boundary is a name of the
            mesh's physical groups (``"INFLOW"``) or a tag value. The old list of
            ``(facet indices, value)`` pairs is deprecated.
        theta: 1/2 Crank–Nicolson (default), 1 backward Euler.
        supg: Add the SUPG stabilisation (default True).
        petsc_options: Options of the step solve (default MUMPS LU, factorised once).
        solver: All the solver settings as one :class:`~deepnum_fem.SolverOptions`.
        quadrature_degree: Of the step's forms (4: exact for P1 with a P1 wind apart from τ).
        t0: Time (s) of the state at step 0.
        facet_tags: Facet tags, when ``domain`` is a bare mesh.
    """

    def __init__(self, domain, wind, *, dt: float, diffusivity: float = 1.0,
                 decay: float = 0.0, diffusivity_scale: dolfinx.fem.Function | None = None,
                 dirichlet=None, theta: float = 0.5, supg: bool = True, petsc_options: dict | None = None,
                 solver: SolverOptions | None = None, quadrature_degree: int = 4, t0: float = 0.0,
                 facet_tags: dolfinx.mesh.MeshTags | None = None, wind_control: bool = False):
        self._domain = Domain.of(domain, facet_tags)
        mesh = self._domain.mesh
        if not dt > 0:
            raise ValueError(f"dt must be > 0 (math.inf for the steady problem), got {dt}")
        if not 0.0 <= theta <= 1.0:
            raise ValueError(f"theta must lie in [0, 1], got {theta}")
        if math.isinf(dt) and theta != 1.0:
            raise ValueError(f"the steady problem (dt = inf) needs theta = 1, got theta = {theta}")
        if diffusivity < 0 or decay < 0:
            raise ValueError(f"diffusivity and decay must be >= 0, got {diffusivity} and {decay}")
        self.mesh, self.dt, self.theta, self.t0 = mesh, float(dt), float(theta), float(t0)
        self.V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
        self.c = dolfinx.fem.Function(self.V, name="c")
        self.c_old = dolfinx.fem.Function(self.V, name="c_previous")
        self.source = dolfinx.fem.Function(self.V, name="emission")
        self.n = n_owned(self.c)
        self.coordinates = self.V.tabulate_dof_coordinates()[: self.n, : mesh.geometry.dim]
        self.wind = self._wind(wind)
        self.diffusivity_scale = diffusivity_scale
        if wind_control and not isinstance(self.wind, (dolfinx.fem.Function, dolfinx.fem.Constant)):
            raise TypeError(f"Transport(wind_control=True) needs the wind as a Function or a constant vector, got "
                            f"{type(self.wind).__name__}")
        self.controls = (("source",) + (("scale",) if diffusivity_scale is not None else ())
                         + (("wind",) if wind_control else ()))
        K = dolfinx.fem.Constant(mesh, float(diffusivity))
        self.K = K if diffusivity_scale is None else diffusivity_scale * K
        k = dolfinx.fem.Constant(mesh, float(decay))
        inv_dt = dolfinx.fem.Constant(mesh, 0.0 if math.isinf(dt) else 1.0 / dt)

        v = ufl.TestFunction(self.V)
        # τ is not a polynomial: without a set degree UFL estimates a needlessly high one
        dx = ufl.dx(metadata={"quadrature_degree": quadrature_degree})
        c_mid = theta * self.c + (1.0 - theta) * self.c_old
        w = self.wind
        F = ((self.c - self.c_old) * inv_dt * v + ufl.dot(w, ufl.grad(c_mid)) * v
             + ufl.inner(self.K * ufl.grad(c_mid), ufl.grad(v)) + k * c_mid * v - self.source * v) * dx
        if supg:
            h = _streamline_length(mesh, w)
            speed = ufl.sqrt(ufl.dot(w, w))
            self.tau = ((2.0 * inv_dt) ** 2 + (2.0 * speed / h) ** 2 + 9.0 * (4.0 * self.K / h**2) ** 2) ** -0.5
            residual = ((self.c - self.c_old) * inv_dt + ufl.dot(w, ufl.grad(c_mid))
                        - ufl.div(self.K * ufl.grad(c_mid)) + k * c_mid - self.source)
            F += self.tau * ufl.dot(w, ufl.grad(v)) * residual * dx

        tdim = mesh.topology.dim
        mesh.topology.create_connectivity(tdim - 1, tdim)
        bcs = [dolfinx.fem.dirichletbc(float(value), dolfinx.fem.locate_dofs_topological(
            self.V, tdim - 1, np.asarray(facets, dtype=np.int32)), self.V)
               for facets, value in self._dirichlet_facets(dirichlet)]
        controls = ([self.c_old, self.source] + ([diffusivity_scale] if diffusivity_scale is not None else [])
                    + ([self.wind] if wind_control else []))
        # fem_operator's default (MUMPS LU) under the user's options, by its one rule
        self._operator = fem_operator(F, self.c, controls=controls, bcs=bcs, linear=True, symmetric=False,
                                      solver=model_solver(solver, petsc_options))
        # ∫ φ_i dx: the integral of a P1 field is exact as mass · c
        weights = dolfinx.fem.assemble_vector(dolfinx.fem.form(v * ufl.dx))
        weights.scatter_reverse(dolfinx.la.InsertMode.add)   # ghost cells' shares to the owners
        self.mass_weights = torch.from_numpy(weights.array[: self.n].copy())
        self.minimum = self._lowest = math.inf

    def _dirichlet_facets(self, dirichlet) -> list[tuple[np.ndarray, float]]:
        if dirichlet is None:
            return []
        if isinstance(dirichlet, dict):
            return [(self._domain.facets(which), float(value)) for which, value in dirichlet.items()]
        deprecated("Transport(dirichlet=[(facets, value)])", "Transport(dirichlet={boundary name: value})")
        return [(np.asarray(facets, dtype=np.int32), float(value)) for facets, value in dirichlet]

    @property
    def step_operator(self):
        """Deprecated name of :attr:`~deepnum_fem.models.base.TimeSteppingModel.operator`."""
        deprecated("Transport.step_operator", "Transport.operator")
        return self._operator

    def _wind(self, wind):
        d = self.mesh.geometry.dim
        if isinstance(wind, (tuple, list, np.ndarray)):
            wind = dolfinx.fem.Constant(self.mesh, np.asarray(wind, dtype=np.float64))
        if getattr(wind, "ufl_shape", None) != (d,):
            raise ShapeError(f"Transport: a wind vector of shape ({d},) expected, "
                             f"got {getattr(wind, 'ufl_shape', type(wind).__name__)}")
        return wind

    # -- state ----------------------------------------------------------------------------
    def zeros(self) -> torch.Tensor:
        """A zero concentration (or source) over the owned dofs, float64."""
        return torch.zeros(self.n, dtype=torch.float64)

    def initial_state(self) -> torch.Tensor:
        """Clean air: a zero concentration (owned dofs, float64)."""
        return self.zeros()

    @property
    def state_shape(self) -> tuple[int]:
        return (self.n,)

    def control(self, name: str) -> torch.Tensor:
        """``source``: zero; ``scale``, ``wind``: the current owned dofs of the diffusivity
        scale and the wind (a constant wind: its vector)."""
        self._check_control_name(name)
        if name == "source":
            return self.zeros()
        if name == "wind":
            if isinstance(self.wind, dolfinx.fem.Constant):
                return torch.from_numpy(np.array(self.wind.value, dtype=np.float64))
            return torch.from_numpy(self.wind.x.array[: n_owned(self.wind)].copy())
        return torch.from_numpy(self.diffusivity_scale.x.array[: n_owned(self.diffusivity_scale)].copy())

    def interpolate(self, fn: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
        """Owned dofs of ``fn`` (of points ``(n, gdim)``) at the P1 nodes."""
        return torch.as_tensor(np.asarray(fn(self.coordinates), dtype=np.float64).reshape(self.n))

    def mass(self, c: torch.Tensor) -> torch.Tensor:
        """``∫ c dx`` over the whole mesh (collective, differentiable)."""
        return parallel.sum(c @ self.mass_weights.to(c.device, c.dtype), self.comm)

    # -- time stepping ----------------------------------------------------------------------
    def step(self, state: torch.Tensor, k: int = 0, *legacy, **controls: torch.Tensor | None) -> torch.Tensor:
        """One step from ``state`` at ``t0 + k dt`` (collective); ``source`` (the emission over
        the step, P1 dofs at ``t + θ dt``) and ``scale`` by keyword. The old form
        ``step(c, source, scale)`` is deprecated."""
        if legacy and not (isinstance(k, torch.Tensor) or k is None):
            raise TypeError("Transport.step takes (state, k) and its controls by keyword: step(c, k, source=..., "
                            "scale=...)")
        if len(legacy) > 1:
            raise TypeError(f"Transport.step(c, source, scale) takes at most 3 positional arguments, got "
                            f"{2 + len(legacy)}")
        if isinstance(k, torch.Tensor) or k is None or legacy:
            deprecated("Transport.step(c, source, scale)", "Transport.step(c, k, source=..., scale=...)")
            controls.update({name: v for name, v in zip(("source", "scale"), (k, *legacy), strict=False)
                             if v is not None})
            k = 0
        if self.diffusivity_scale is None and controls.get("scale") is not None:
            raise ValueError("scale= given, but the model was built without diffusivity_scale")
        return super().step(state, k, **controls)

    def _step(self, state: torch.Tensor, k: int, controls: dict[str, torch.Tensor]) -> torch.Tensor:
        if state.shape != (self.n,):
            raise ShapeError(f"Transport.step: a concentration of shape ({self.n},) (owned dofs) expected, "
                             f"got {tuple(state.shape)}")
        c = self._operator(state, *(controls[name] for name in self.controls))
        self._lowest = min(self._lowest, float(c.detach().min()) if c.numel() else math.inf)
        return c

    def simulate(self, n_steps: int, state0: torch.Tensor | None = None, *,
                 observe: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                 checkpoint_every: int | None = None, sources: Callable[[int], torch.Tensor] | None = None,
                 **controls) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run ``n_steps`` steps from ``state0`` (zero by default); see
        :meth:`TimeSteppingModel.simulate`.

        ``source=`` is the emission, a tensor or ``k -> tensor`` over step ``k`` (time
        ``[k dt, (k + 1) dt]``), e.g. ``lambda k: emission(t0 + (k + θ) dt)`` (``sources=`` is
        its deprecated name). The smallest concentration met is stored in ``self.minimum``
        (collective, after the run): undershoot below zero measures the scheme's departure
        from positivity.
        """
        if sources is not None:
            deprecated("Transport.simulate(sources=)", "Transport.simulate(source=)")
            controls["source"] = sources
        self._lowest = math.inf
        result = super().simulate(n_steps, state0, observe=observe, checkpoint_every=checkpoint_every, **controls)
        self.minimum = self.comm.allreduce(self._lowest, op=MPI.MIN)
        return result

    # -- observations and output ---------------------------------------------------------------
    def sensors(self, points) -> PointSensorsOf:
        """Point sensors of the concentration (P1 interpolation; collective)."""
        return PointSensorsOf(self.V, points, lambda state: state)

    def _output(self):
        return self.V, "c", lambda state: state

    def write_xdmf(self, path, frames: Sequence[tuple[float, torch.Tensor]], name: str = "c") -> None:
        """Write ``(time, owned dofs)`` frames of a P1 field to an XDMF file (collective)."""
        write_frames(path, self.V, frames, name)


# -- emissions ------------------------------------------------------------------------------------
def gaussian_source(points: torch.Tensor, centre, rate, width: float) -> torch.Tensor:
    """A point source of ``rate`` (µg/s) spread as a Gaussian of standard deviation ``width`` (m):
    rate density ``rate · N(x; centre, width² I)`` at ``points`` (``(n, d)``). Differentiable
    in ``centre`` and ``rate``."""
    points = torch.as_tensor(points, dtype=torch.float64)
    centre = torch.as_tensor(centre, dtype=points.dtype)
    d = points.shape[1]
    r2 = ((points - centre) ** 2).sum(dim=1)
    return rate * torch.exp(-0.5 * r2 / width**2) / (2 * math.pi * width**2) ** (d / 2)


def line_source(points: torch.Tensor, start, end, rate, width: float) -> torch.Tensor:
    """A line source (a street's traffic) from ``start`` to ``end`` emitting ``rate`` per metre
    (µg/s/m), spread across the line as a Gaussian of standard deviation ``width``: its
    integral over a plane cut across the line is ``rate``. Differentiable in ``rate``."""
    points = torch.as_tensor(points, dtype=torch.float64)
    a, b = (torch.as_tensor(p, dtype=points.dtype) for p in (start, end))
    ab = b - a
    s = (((points - a) @ ab) / (ab @ ab)).clamp(0.0, 1.0)
    r2 = ((points - (a + s[:, None] * ab)) ** 2).sum(dim=1)
    d = points.shape[1]
    return rate * torch.exp(-0.5 * r2 / width**2) / (2 * math.pi * width**2) ** ((d - 1) / 2)


def polyline_source(points: torch.Tensor, polyline, rate, width: float) -> torch.Tensor:
    """A street's traffic along a polyline ``(m, 2)`` (a street centreline) emitting ``rate`` per
    metre (µg/s/m): a Gaussian of standard deviation ``width`` in the distance to the nearest
    point of the polyline, so that its integral over a plane cut across any segment is ``rate``
    (and over the whole plane ``rate (length + sqrt(2π) width)``: the two rounded ends). A bend
    neither doubles nor drops emissions. Differentiable in ``rate``."""
    points = torch.as_tensor(points, dtype=torch.float64)
    line = torch.as_tensor(np.asarray(polyline, dtype=np.float64))
    if line.ndim != 2 or line.shape[0] < 2 or line.shape[1] != points.shape[1]:
        raise ShapeError(f"polyline_source: a polyline of shape (m >= 2, {points.shape[1]}) expected, "
                         f"got {tuple(line.shape)}")
    a, ab = line[:-1], line[1:] - line[:-1]                              # (segments, d)
    rel = points[:, None, :] - a[None]                                   # (n, segments, d)
    s = ((rel * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-300)).clamp(0.0, 1.0)
    r2 = ((rel - s[..., None] * ab) ** 2).sum(-1).min(dim=1).values
    d = points.shape[1]
    return rate * torch.exp(-0.5 * r2 / width**2) / (2 * math.pi * width**2) ** ((d - 1) / 2)


def street_sources(points: torch.Tensor, streets: Sequence, width: float) -> torch.Tensor:
    """The emission of each street per unit rate: ``(len(streets), n)`` rows of
    :func:`polyline_source` with ``rate = 1``; ``rates @ street_sources(...)`` is the traffic
    field of per-street ``rates`` (µg/s/m), differentiable in them."""
    return torch.stack([polyline_source(points, street, 1.0, width) for street in streets])


class NeuralEmission(torch.nn.Module):
    """A learned emission field ``S_θ(x, t) = profile(t) · (prior(x) + N_θ(x))`` at fixed nodes.

    ``N_θ`` is an MLP on Gaussian radial-basis features of the position (centres on a regular
    grid over ``bounds``, width = grid spacing): localised features let a small network place
    a source where the data put it. The output layer starts at zero, so the untrained field is
    the prior.

    Args:
        points: Node coordinates ``(n, d)`` (a model's owned P1 nodes).
        bounds: ``(lower corner, upper corner)`` of the region where emissions may be corrected.
        centres: Number of RBF centres per axis.
        hidden: Width of the two hidden layers.
        prior: The known inventory ``(n,)`` (zero when None).
        profile: A known time factor ``t -> float`` (traffic cycle); 1 when None.
        scale: Output scale of ``N_θ`` (the inventory's magnitude).
    """

    def __init__(self, points, bounds, *, centres: Sequence[int] = (12, 8), hidden: int = 32,
                 prior: torch.Tensor | None = None, profile: Callable[[float], float] | None = None,
                 scale: float = 1.0):
        super().__init__()
        points = torch.as_tensor(np.asarray(points), dtype=torch.float64)
        lo, hi = (torch.as_tensor(b, dtype=torch.float64) for b in bounds)
        if len(centres) != points.shape[1] or lo.shape != (points.shape[1],):
            raise ShapeError(f"NeuralEmission: {points.shape[1]}-dimensional points need {points.shape[1]} "
                             f"centre counts and bounds, got {list(centres)} and {lo.tolist()}")
        axes = [torch.linspace(float(a), float(b), int(n)) for a, b, n in zip(lo, hi, centres, strict=True)]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, points.shape[1])
        spacing = (hi - lo) / (torch.as_tensor(list(centres), dtype=torch.float64) - 1).clamp(min=1)
        features = torch.exp(-0.5 * (((points[:, None, :] - grid[None]) / spacing) ** 2).sum(-1))
        # rank-local data (each rank's nodes): plain attributes, so that parameters and
        # checkpoints are the same on every rank and for any number of ranks
        self.features = features.float()
        self.prior = torch.zeros(len(points), dtype=torch.float64) if prior is None else prior.detach().double()
        self.net = torch.nn.Sequential(torch.nn.Linear(grid.shape[0], hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, 1))
        torch.nn.init.zeros_(self.net[-1].weight)
        torch.nn.init.zeros_(self.net[-1].bias)
        self.profile, self.scale = profile, float(scale)

    def correction(self) -> torch.Tensor:
        """``N_θ`` at the nodes, float64."""
        device = self.net[0].weight.device
        return self.scale * self.net(self.features.to(device)).squeeze(-1).double()

    def field(self) -> torch.Tensor:
        """``prior + N_θ`` at the nodes (the emission before the time profile)."""
        correction = self.correction()
        return self.prior.to(correction.device) + correction

    def forward(self, t: float) -> torch.Tensor:
        factor = 1.0 if self.profile is None else float(self.profile(t))
        return factor * self.field()


class StreetEmission(torch.nn.Module):
    """A learned traffic emission that cannot go negative: each street's inventory rate times a
    learned factor, plus a learned non-negative residual source for what the inventory misses,

        S(x, t) = profile(t) · (Σ_i r_i e^{a_i} B_i(x) + scale · softplus(N_θ(x) - 4)),

    with ``B = street_sources(...)`` (per unit rate), inventory rates ``r_i >= 0``, learned
    log-factors ``a_i`` (zero at the start: the inventory as it is) and ``N_θ`` the RBF network
    of :class:`NeuralEmission` (its output starts at zero, so the residual starts at
    ``softplus(-4) scale ≈ 0.018 scale`` everywhere, small and with a gradient).

    Args:
        points: Node coordinates ``(n, d)`` (a model's owned P1 nodes).
        basis: ``(n_streets, n)`` per-unit-rate street fields (:func:`street_sources`).
        rates: The inventory's rates ``r_i`` (µg/s/m), ``(n_streets,)``, non-negative.
        bounds: ``(lower corner, upper corner)`` of the residual network's RBF grid.
        scale: The residual's magnitude (µg/m³/s).
        profile: A known time factor ``t -> float``; 1 when None.
        centres, hidden: Of the residual network (see :class:`NeuralEmission`).
        comm: The ranks whose nodes ``points`` and ``basis`` hold (collective to build).
    """

    OFFSET = 4.0

    def __init__(self, points, basis: torch.Tensor, rates, bounds, *, scale: float = 1.0,
                 profile: Callable[[float], float] | None = None, centres: Sequence[int] = (12, 12),
                 hidden: int = 32, comm: MPI.Comm = MPI.COMM_WORLD):
        super().__init__()
        basis = torch.as_tensor(basis, dtype=torch.float64)
        rates = torch.as_tensor(rates, dtype=torch.float64).reshape(-1)
        if basis.ndim != 2 or basis.shape[0] != rates.shape[0]:
            raise ShapeError(f"StreetEmission: basis (n_streets, n) and rates (n_streets,) expected, got "
                             f"{tuple(basis.shape)} and {tuple(rates.shape)}")
        # the fields are this rank's nodes: decided on every rank together
        negative = bool((rates < 0).any()) or bool((basis < 0).any())
        parallel.raise_on_any_rank(ValueError("StreetEmission: the inventory's rates and the street fields must "
                                              "be >= 0") if negative else None, comm)
        self.basis, self.rates = basis, rates.clone()       # rank-local and fixed: not parameters
        self.log_factors = torch.nn.Parameter(torch.zeros(rates.shape[0], dtype=torch.float64))
        self.residual = NeuralEmission(points, bounds, centres=centres, hidden=hidden, scale=1.0)
        self.profile, self.scale = profile, float(scale)

    def factors(self) -> torch.Tensor:
        """The learned factors ``e^{a_i}`` of the streets' rates."""
        return torch.exp(self.log_factors)

    def field(self) -> torch.Tensor:
        """``S`` before the time profile, at the nodes (float64, >= 0)."""
        streets = (self.rates * self.factors()) @ self.basis
        residual = self.scale * torch.nn.functional.softplus(self.residual.correction() - self.OFFSET)
        return streets + residual.to(streets.device)

    def forward(self, t: float) -> torch.Tensor:
        factor = 1.0 if self.profile is None else float(self.profile(t))
        if factor < 0:
            raise ValueError(f"StreetEmission: the time profile must be >= 0, got {factor} at t = {t}")
        return factor * self.field()
