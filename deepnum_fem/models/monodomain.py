"""The monodomain model of cardiac electrophysiology, split into a torch reaction step and
a FEM diffusion step that is a differentiable ``fem_operator``.

With the normalised potential ``v`` (see :mod:`deepnum_fem.models.ionic`) and time in ms,

    ∂v/∂t = ∇·(D ∇v) - I_ion(v, w) + I_stim,     ∂w/∂t = g(v, w),     D ∇v·n = 0,

where ``D = σ / (χ C_m)`` (mm²/ms) is the conductivity tensor over the membrane capacitance
per volume: ``D = D_t I + (D_l - D_t) f ⊗ f`` along fibres ``f``, optionally multiplied by a
scale field ``s(x)`` (a control: estimable). Each time step of length ``dt`` is split:

* reaction: the ionic ODEs at every node (P1 dof), in torch (forward Euler in ``v``, the
  model's own update of ``w``), differentiable by autograd, on CPU or GPU;
* diffusion: ``(M + θ dt K) vⁿ⁺¹ = (M - (1-θ) dt K) v*``, one linear ``fem_operator`` solve.
  Its operator depends only on ``dt``, ``D`` and ``s``: it is assembled and factorised once
  and reused by every step and every adjoint step while ``s`` keeps its value.

``splitting="godunov"`` (reaction dt, diffusion dt) or ``"strang"`` (reaction dt/2,
diffusion dt, reaction dt/2). Both are first order in ``dt`` here, because the reaction
step is forward Euler; Strang's symmetric arrangement has the smaller constant (measured
front speeds in the tests).

With a physiological ionic model (:class:`~deepnum_fem.models.TenTusscherPanfilov2006`) ``v``
is the potential in mV and the equations are unchanged (the diffusion is linear in ``v``),
but the numbers in ``v``'s units change with it: a :class:`Stimulus` amplitude is in mV/ms
(= pA/pF, e.g. 50–100 for 1–2 ms), the thresholds of :func:`activation_times` and
:func:`soft_activation_times` (and the latter's ``width``) are in mV (e.g. -40 and 2), and
the reaction wants steps of at most ~0.02–0.05 ms (``reaction_substeps``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dolfinx.fem
import dolfinx.geometry
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
from deepnum_fem.models.base import Domain, PointSensorsOf, TimeSteppingModel, deprecated, model_solver
from deepnum_fem.models.ecg import PseudoECG
from deepnum_fem.models.ionic import IonicModel
from deepnum_fem.ops.fem_operator import fem_operator
from deepnum_fem.sensors import point_weights

__all__ = ["Monodomain", "Stimulus", "activation_times", "soft_activation_times"]


#: Relative tolerance of a :class:`Stimulus` ball's surface (far above rounding, far below a cell).
EDGE_RTOL = 1e-9


@dataclass(frozen=True)
class Stimulus:
    """An applied current ``amplitude`` in a region during ``[start, start + duration)`` ms.

    The amplitude is in the units of dv/dt: 1/ms for the normalised ionic models, mV/ms
    (= pA/pF; positive depolarises) for :class:`~deepnum_fem.models.TenTusscherPanfilov2006`.

    The region is the ball ``|x - centre| <= radius`` or, when ``marker`` is given, the nodes
    where ``marker(x)`` is true (``x`` of shape ``(3, n)``, as ``dolfinx.mesh.locate_entities``).
    Nodes on the ball's surface are inside, to a relative tolerance of :data:`EDGE_RTOL`: node
    coordinates are computed per cell and differ in the last bits between cells, and so
    between partitions; without it the set (and the activation times) changed with the number
    of ranks. A ``marker`` should allow for that too (compare with a tolerance).
    """

    centre: Sequence[float] = (0.0, 0.0, 0.0)
    radius: float = 1.0
    start: float = 0.0
    duration: float = 2.0
    amplitude: float = 0.5
    marker: Callable[[np.ndarray], np.ndarray] | None = None

    def nodes(self, x: np.ndarray) -> np.ndarray:
        """Boolean mask of the points ``x`` (shape ``(n, 3)``) inside the region."""
        if self.marker is not None:
            return np.asarray(self.marker(x.T), dtype=bool)
        centre = np.zeros(3)
        centre[: len(self.centre)] = self.centre
        return np.linalg.norm(x - centre, axis=1) <= self.radius * (1.0 + EDGE_RTOL)

    def fraction_on(self, t0: float, t1: float) -> float:
        """Fraction of ``[t0, t1]`` during which the stimulus is on (its exact time integral)."""
        overlap = min(t1, self.start + self.duration) - max(t0, self.start)
        return max(overlap, 0.0) / (t1 - t0)


class Monodomain(TimeSteppingModel):
    """Monodomain model on a mesh, with P1 potential (see the module docstring); a
    :class:`~deepnum_fem.models.base.TimeSteppingModel`.

    The state is ``(1 + n_slow, n)``: the potential ``v`` and the ionic model's slow
    variables at the owned nodes. Its control, when built with ``conductivity_scale``, is
    ``scale``: the owned dofs of that Function.

    Args:
        domain: The tissue (mm): a ``MeshData`` (``dnf.io.load_left_ventricle()``; its
            boundaries are then known by name) or a mesh.
        ionic: The ionic model (``deepnum_fem.models.ionic``), possibly a :class:`HybridIonic`.
        dt: Time step (ms).
        diffusivity: ``D_l`` or ``(D_l, D_t)`` in mm²/ms (isotropic without ``fibres``).
        fibres: Unit fibre field (a vector Function, e.g. DG0), or None for isotropic tissue.
        conductivity_scale: A scalar Function ``s`` multiplying ``D``; the ``scale`` control.
            None: ``s = 1``.
        diffusivity_control: Make ``D_l`` and ``D_t`` controls (0-dim tensors, mm²/ms, named
            ``"D_l"`` and ``"D_t"``; ``diffusivity`` gives their default values): estimable
            like ``scale``. Needs ``fibres``. Each new value refactorises the diffusion
            operator once, at the next step.
        stimuli: Default stimulus protocol.
        theta: 1 backward Euler (default), 0.5 Crank–Nicolson.
        splitting: ``"godunov"`` or ``"strang"``.
        lumped_mass: Lump the mass matrix (vertex quadrature): an M-matrix, no undershoot at
            steep fronts.
        petsc_options: Options of the diffusion solve (default MUMPS LU, factorised once);
            any PETSc KSP/PC, used by the adjoint too, e.g. CG + a preconditioner for large
            meshes: ``{"ksp_type": "cg", "ksp_rtol": 1e-12, "pc_type": "python",
            "pc_python_type": "deepnum_fem.precond.fsai.LearnedFSAI"}`` (the operator is SPD).
        solver: All the solver settings as one :class:`~deepnum_fem.SolverOptions` (instead
            of ``petsc_options``).
        reaction_substeps: Reaction sub-steps per (half) step.
        reaction_order: 1 (default): each sub-step is one step of the ionic model (Rush–Larsen
            for gates, forward Euler for the rest: first order in dt). 2: Richardson
            extrapolation of it, ``2 Φ_{h/2}(Φ_{h/2}(s)) − Φ_h(s)``, second order for smooth
            solutions at three ionic steps per sub-step; with ``splitting="strang"`` and
            ``theta=0.5`` the whole step is then second order (tested). Gates may leave [0, 1]
            by O(h²) where they change fast.
        t0: Time (ms) of the state at step 0 (the stimuli's clock).
        facet_tags: Facet tags, when ``domain`` is a bare mesh.
    """

    def __init__(self, domain, ionic: IonicModel, *, dt: float,
                 diffusivity: float | tuple[float, float] = 0.1,
                 fibres: dolfinx.fem.Function | None = None,
                 conductivity_scale: dolfinx.fem.Function | None = None,
                 stimuli: Sequence[Stimulus] = (), theta: float = 1.0, splitting: str = "godunov",
                 lumped_mass: bool = False, petsc_options: dict | None = None,
                 solver: SolverOptions | None = None, reaction_substeps: int = 1, t0: float = 0.0,
                 facet_tags: dolfinx.mesh.MeshTags | None = None, reaction_order: int = 1,
                 diffusivity_control: bool = False):
        if splitting not in ("godunov", "strang"):
            raise ValueError(f"splitting must be 'godunov' or 'strang', got {splitting!r}")
        if not 0.0 <= theta <= 1.0:
            raise ValueError(f"theta must lie in [0, 1], got {theta}")
        if reaction_order not in (1, 2):
            raise ValueError(f"reaction_order must be 1 or 2, got {reaction_order!r}")
        if dt <= 0 or reaction_substeps < 1:
            raise ValueError(f"dt > 0 and reaction_substeps >= 1 expected, got dt={dt}, "
                             f"reaction_substeps={reaction_substeps}")
        self._domain = Domain.of(domain, facet_tags)
        mesh = self.mesh = self._domain.mesh
        self.ionic, self.dt, self.t0 = ionic, float(dt), float(t0)
        self.theta, self.splitting, self.reaction_substeps = theta, splitting, reaction_substeps
        self.reaction_order = reaction_order
        self.V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
        self.n = n_owned(dolfinx.fem.Function(self.V))
        self.coordinates = self.V.tabulate_dof_coordinates()[: self.n]
        self.v = dolfinx.fem.Function(self.V, name="v")
        self.v_star = dolfinx.fem.Function(self.V, name="v_after_reaction")
        self.conductivity_scale, self.fibres = conductivity_scale, fibres
        if diffusivity_control and fibres is None:
            raise ValueError("diffusivity_control=True needs a fibre field (it makes D_l and D_t controls); "
                             "for isotropic tissue estimate a conductivity_scale instead")
        self.D, (D_l, D_t) = self._conductivity(diffusivity, fibres)
        #: The UFL objects behind each control, in the order of :attr:`controls`.
        self.control_objects = {}
        if conductivity_scale is not None:
            self.control_objects["scale"] = conductivity_scale
        if diffusivity_control:
            self.control_objects["D_l"], self.control_objects["D_t"] = D_l, D_t
            self._diffusivity_defaults = {"D_l": float(D_l.value), "D_t": float(D_t.value)}
        self.controls = tuple(self.control_objects)
        if conductivity_scale is not None:
            self.D = conductivity_scale * self.D

        phi = ufl.TestFunction(self.V)
        dx_mass = (ufl.dx(metadata={"quadrature_rule": "vertex", "quadrature_degree": 1})
                   if lumped_mass else ufl.dx)
        v_mid = theta * self.v + (1.0 - theta) * self.v_star
        F = ((self.v - self.v_star) * phi * dx_mass
             + self.dt * ufl.inner(self.D * ufl.grad(v_mid), ufl.grad(phi)) * ufl.dx)
        controls = [self.v_star, *self.control_objects.values()]
        # M + θ dt K is symmetric (D is): the adjoint is the forward solve, whatever the solver.
        # No options: fem_operator's MUMPS LU; options naming a KSP or PC replace it entirely.
        self._operator = fem_operator(F, self.v, controls=controls, linear=True, symmetric=True,
                                      solver=model_solver(solver, petsc_options))
        self.stimuli = list(stimuli)

    @property
    def diffusion(self):
        """Deprecated name of :attr:`~deepnum_fem.models.base.TimeSteppingModel.operator`."""
        deprecated("Monodomain.diffusion", "Monodomain.operator")
        return self._operator

    def _conductivity(self, diffusivity, fibres):
        """The tensor ``D`` (UFL) and the Constants ``(D_l, D_t)`` it is made of."""
        d = self.mesh.geometry.dim
        if np.ndim(diffusivity) == 0:
            D_l = D_t = float(diffusivity)
        else:
            D_l, D_t = (float(x) for x in diffusivity)
        if fibres is None:
            if D_l != D_t:
                raise ValueError("anisotropic diffusivity (D_l, D_t) needs a fibre field")
            c = dolfinx.fem.Constant(self.mesh, D_l)
            return c, (c, c)
        if fibres.ufl_shape != (d,):
            raise ShapeError(f"fibres: a vector Function of shape ({d},) expected, got {fibres.ufl_shape}")
        c_l, c_t = dolfinx.fem.Constant(self.mesh, D_l), dolfinx.fem.Constant(self.mesh, D_t)
        return c_t * ufl.Identity(d) + (c_l - c_t) * ufl.outer(fibres, fibres), (c_l, c_t)

    # -- state ----------------------------------------------------------------------------
    def initial_state(self, *, device: torch.device | str | None = None) -> torch.Tensor:
        """The resting state of the owned nodes, shape ``(1 + n_slow, n_owned)``, float64."""
        return self.ionic.initial_state(self.n, device=device)

    @property
    def state_shape(self) -> tuple[int, int]:
        return (1 + self.ionic.n_slow, self.n)

    def control(self, name: str) -> torch.Tensor:
        """The value a step takes for a control not given: the conductivity scale's current
        owned dofs (``"scale"``; the last value a step was given), or the constructor's ``D_l``
        / ``D_t`` as 0-dim tensors (with ``diffusivity_control``)."""
        self._check_control_name(name)
        if name in ("D_l", "D_t"):   # the constructor's values: a step given others changes the Constants
            return torch.tensor(self._diffusivity_defaults[name], dtype=torch.float64)
        obj = self.control_objects[name]
        return torch.from_numpy(obj.x.array[: n_owned(obj)].copy())

    def stimulus_masks(self, stimuli: Sequence[Stimulus]) -> torch.Tensor:
        """``(len(stimuli), n_owned)`` masks times amplitudes (float64)."""
        rows = [s.amplitude * s.nodes(self.coordinates) for s in stimuli]
        return torch.tensor(np.array(rows, dtype=np.float64).reshape(len(rows), self.n))

    def stimulus_at(self, stimuli: Sequence[Stimulus], masks: torch.Tensor, t0: float, t1: float,
                    like: torch.Tensor) -> torch.Tensor | float:
        weights = [s.fraction_on(t0, t1) for s in stimuli]
        if not any(weights):
            return 0.0
        w = torch.tensor(weights, dtype=masks.dtype)
        return (w @ masks).to(device=like.device, dtype=like.dtype)

    # -- time stepping ----------------------------------------------------------------------
    def _react(self, state: torch.Tensor, t0: float, length: float, stimuli, masks) -> torch.Tensor:
        h = length / self.reaction_substeps
        for i in range(self.reaction_substeps):
            a = t0 + i * h
            if self.reaction_order == 1:
                state = self.ionic.step(state, h, self.stimulus_at(stimuli, masks, a, a + h, state))
                continue
            m = a + 0.5 * h     # Richardson: two half steps against one whole
            halves = self.ionic.step(state, 0.5 * h, self.stimulus_at(stimuli, masks, a, m, state))
            halves = self.ionic.step(halves, 0.5 * h, self.stimulus_at(stimuli, masks, m, a + h, state))
            state = 2.0 * halves - self.ionic.step(state, h, self.stimulus_at(stimuli, masks, a, a + h, state))
        return state

    def _diffuse(self, state: torch.Tensor, controls: dict[str, torch.Tensor]) -> torch.Tensor:
        device = state.device
        v_star = state[0].to("cpu", torch.float64)
        inputs = [v_star] + [controls[name].to("cpu", torch.float64) for name in self.controls]
        v = self._operator(*inputs).to(device=device, dtype=state.dtype)
        return torch.cat([v[None], state[1:]])

    def step(self, state: torch.Tensor, k: int = 0, *legacy, stimuli: Sequence[Stimulus] | None = None,
             masks: torch.Tensor | None = None, **controls: torch.Tensor | None) -> torch.Tensor:
        """Advance ``state`` over ``[t0 + k dt, t0 + (k + 1) dt]`` (collective).

        ``scale``: the conductivity scale's tensor (when the model has that control; default
        its current value). ``stimuli`` replaces the model's protocol for this step;
        ``masks`` are their :meth:`stimulus_masks` (computed when not given).
        """
        self._positional_control(legacy, controls, "scale")
        t_origin = None
        if "t0" in controls:
            deprecated("Monodomain.step(..., t0=)", "Monodomain(..., t0=)")
            t_origin = controls.pop("t0")
        return self._checked_step(state, k, controls, stimuli=stimuli, masks=masks, t_origin=t_origin)

    def _step(self, state: torch.Tensor, k: int, controls: dict[str, torch.Tensor], *,
              stimuli: Sequence[Stimulus] | None = None, masks: torch.Tensor | None = None,
              t_origin: float | None = None) -> torch.Tensor:
        t_origin = self.t0 if t_origin is None else t_origin
        stimuli = self.stimuli if stimuli is None else stimuli
        masks = self.stimulus_masks(stimuli) if masks is None else masks
        t = t_origin + k * self.dt
        half = self.dt if self.splitting == "godunov" else 0.5 * self.dt
        error, state = self._react_checked(state, t, half, stimuli, masks, controls)
        parallel.raise_on_any_rank(error, self.comm)   # a bad state, control or network fails every rank
        state = self._diffuse(state, controls)
        if self.splitting == "strang":
            error, state = self._react_checked(state, t + half, half, stimuli, masks)
            parallel.raise_on_any_rank(error, self.comm)
        return state

    def _react_checked(self, state, t, length, stimuli, masks, controls=None):
        for name in ("D_l", "D_t"):
            value = (controls or {}).get(name)
            if value is not None and not (value.numel() == 1 and float(value.detach()) > 0):
                return ValueError(f"Monodomain.step: {name} must be a positive number (mm²/ms), got "
                                  f"{value.detach().cpu().reshape(-1).tolist()}"), state
        if state.shape != (1 + self.ionic.n_slow, self.n):
            return ShapeError(f"Monodomain.step: state of shape {(1 + self.ionic.n_slow, self.n)} "
                              f"(variables, owned nodes) expected, got {tuple(state.shape)}"), state
        try:
            return None, self._react(state, t, length, stimuli, masks)
        except (ValueError, RuntimeError) as e:
            return e, state

    def simulate(self, n_steps: int, state0: torch.Tensor | None = None, *,
                 stimuli: Sequence[Stimulus] | None = None,
                 observe: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                 checkpoint_every: int | None = None,
                 **controls) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run ``n_steps`` steps from ``state0`` (rest by default); see
        :meth:`TimeSteppingModel.simulate`. ``stimuli`` replaces the model's protocol."""
        self._check_control_names(controls, "simulate")
        stimuli = self.stimuli if stimuli is None else list(stimuli)
        state0 = self.initial_state() if state0 is None else state0
        return self._rollout(state0, n_steps, self._given(controls), observe, checkpoint_every, stimuli=stimuli,
                             masks=self.stimulus_masks(stimuli))

    # -- observations -----------------------------------------------------------------------
    def boundary_nodes(self, which, tags: Sequence[int] | None = None) -> torch.Tensor:
        """Owned node indices (int64 tensor) on the boundaries ``which``: names of the mesh's
        physical groups (``["ENDO", "EPI"]``) or tag values. The old form
        ``boundary_nodes(facet_tags, tags)`` is deprecated."""
        if isinstance(which, dolfinx.mesh.MeshTags):
            deprecated("Monodomain.boundary_nodes(facet_tags, tags)", "Monodomain.boundary_nodes(names)")
            facets = Domain(self.mesh, which).facets(list(tags or []))
        else:
            facets = self._domain.facets(which)
        tdim = self.mesh.topology.dim
        self.mesh.topology.create_connectivity(tdim - 1, tdim)
        dofs = dolfinx.fem.locate_dofs_topological(self.V, tdim - 1, facets)
        return torch.from_numpy(np.sort(dofs[dofs < self.n]).astype(np.int64))

    def sensors(self, points) -> PointSensorsOf:
        """Point sensors of the potential ``v`` (P1 interpolation; collective)."""
        return PointSensorsOf(self.V, points, lambda state: state[..., 0, :])

    def point_weights(self, points: np.ndarray) -> torch.Tensor:
        """Weights ``W`` (``(n_points, n_owned)``, float64) such that
        ``parallel.sum(W @ v_owned)`` is ``v`` at ``points`` (P1 interpolation; collective).

        Each point is taken by the lowest rank that holds a cell containing it.
        """
        return point_weights(self.V, points)

    def pseudo_ecg(self, electrodes) -> PseudoECG:
        """The pseudo-ECG at ``electrodes`` (a mapping ``name -> position`` or an array of
        positions, outside the tissue): a :class:`~deepnum_fem.models.ecg.PseudoECG`, whose
        ``weights(**controls)`` are differentiable in this model's controls. Collective."""
        return PseudoECG(self, electrodes)

    def pseudo_ecg_weights(self, points: np.ndarray) -> torch.Tensor:
        """Weights ``W`` (``(n_points, n_owned)``) of the pseudo-ECG: ``parallel.sum(W @ v_owned)``
        is ``φ(x_e) = ∫ D∇v · ∇(1 / |x - x_e|) dx`` at each electrode ``x_e`` (outside the
        tissue), the extracellular potential of an unbounded homogeneous bath up to the factor
        ``1 / (4π σ_bath)``. Uses the controls' values a step takes when they are not given
        (:meth:`control`), without gradient (see :meth:`pseudo_ecg` for weights differentiable
        in them). Collective.
        """
        with torch.no_grad():
            return self.pseudo_ecg(points).weights()

    def _output(self):
        # a frame holds a state, or (as before) the potential alone
        return self.V, "v", lambda state: state if state.ndim == 1 else state[0]

def activation_times(traces: torch.Tensor, dt: float, threshold: float = 0.5, *, t0: float = 0.0,
                     never: float | None = None) -> torch.Tensor:
    """First time each node's ``v`` crosses ``threshold`` upwards, by linear interpolation.

    ``threshold`` is in ``v``'s units: the default 0.5 is for the normalised potential; for a
    model in mV (:class:`~deepnum_fem.models.TenTusscherPanfilov2006`) pass e.g. ``-40.0``.

    ``traces[k]`` is ``v`` at time ``t0 + (k + 1) dt`` (what :meth:`Monodomain.simulate`
    observes). Nodes that never cross get ``never`` (default: one step after the last sample).
    Differentiable in the two samples around the crossing (piecewise smooth).
    """
    n_steps = traces.shape[0]
    never = t0 + (n_steps + 1) * dt if never is None else never
    above = traces >= threshold
    k = torch.argmax(above.to(torch.int8), dim=0)            # first sample at or above
    v1 = traces.gather(0, k[None]).squeeze(0)
    v0 = traces.gather(0, (k - 1).clamp(min=0)[None]).squeeze(0)
    later = k > 0
    frac = torch.where(later, (threshold - v0) / torch.where(later, v1 - v0, 1.0), 1.0)
    t = t0 + (k.to(traces.dtype) + frac) * dt                # sample k sits at t0 + (k + 1) dt
    return torch.where(above.any(dim=0), t, torch.full_like(t, never))


def soft_activation_times(traces: torch.Tensor, dt: float, threshold: float = 0.5, *,
                          t0: float = 0.0, width: float = 0.05) -> torch.Tensor:
    """A smooth surrogate of :func:`activation_times`: ``t0 + dt (1/2 + Σ_k σ((threshold - v_k) / width))``,
    the time spent below threshold. For an upstroke that stays above threshold it is the
    crossing time up to ``O(dt)`` and ``O(width)`` of the upstroke; differentiable everywhere.
    ``threshold`` and ``width`` are in ``v``'s units (see :func:`activation_times`).
    """
    return t0 + dt * (0.5 + torch.sigmoid((threshold - traces) / width).sum(dim=0))
