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
from deepnum_fem.io import write_frames
from deepnum_fem.models.ionic import IonicModel
from deepnum_fem.ops.fem_operator import fem_operator
from deepnum_fem.ops.timestepping import rollout
from deepnum_fem.sensors import point_weights

__all__ = ["Monodomain", "Stimulus", "activation_times", "soft_activation_times"]


#: Relative tolerance of a :class:`Stimulus` ball's surface (far above rounding, far below a cell).
EDGE_RTOL = 1e-9


@dataclass(frozen=True)
class Stimulus:
    """An applied current ``amplitude`` (1/ms) in a region during ``[start, start + duration)`` ms.

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


class Monodomain:
    """Monodomain model on a mesh, with P1 potential (see the module docstring).

    Args:
        mesh: The tissue (mm).
        ionic: The ionic model (``deepnum_fem.models.ionic``), possibly a :class:`HybridIonic`.
        dt: Time step (ms).
        diffusivity: ``D_l`` or ``(D_l, D_t)`` in mm²/ms (isotropic without ``fibres``).
        fibres: Unit fibre field (a vector Function, e.g. DG0), or None for isotropic tissue.
        conductivity_scale: A scalar Function ``s`` multiplying ``D``; a control of the
            diffusion step, so its tensor (passed to :meth:`step`/:meth:`simulate`) receives
            gradients. None: ``s = 1``.
        stimuli: Default stimulus protocol.
        theta: 1 backward Euler (default), 0.5 Crank–Nicolson.
        splitting: ``"godunov"`` or ``"strang"``.
        lumped_mass: Lump the mass matrix (vertex quadrature): an M-matrix, no undershoot at
            steep fronts.
        petsc_options: Options of the diffusion solve (default MUMPS LU, factorised once);
            any PETSc KSP/PC, used by the adjoint too, e.g. CG + a preconditioner for large
            meshes: ``{"ksp_type": "cg", "ksp_rtol": 1e-12, "pc_type": "python",
            "pc_python_type": "deepnum_fem.precond.fsai.LearnedFSAI"}`` (the operator is SPD).
        reaction_substeps: Reaction sub-steps per (half) step.
    """

    def __init__(self, mesh: dolfinx.mesh.Mesh, ionic: IonicModel, *, dt: float,
                 diffusivity: float | tuple[float, float] = 0.1,
                 fibres: dolfinx.fem.Function | None = None,
                 conductivity_scale: dolfinx.fem.Function | None = None,
                 stimuli: Sequence[Stimulus] = (), theta: float = 1.0, splitting: str = "godunov",
                 lumped_mass: bool = False, petsc_options: dict | None = None,
                 reaction_substeps: int = 1):
        if splitting not in ("godunov", "strang"):
            raise ValueError(f"splitting must be 'godunov' or 'strang', got {splitting!r}")
        if not 0.0 <= theta <= 1.0:
            raise ValueError(f"theta must lie in [0, 1], got {theta}")
        if dt <= 0 or reaction_substeps < 1:
            raise ValueError(f"dt > 0 and reaction_substeps >= 1 expected, got dt={dt}, "
                             f"reaction_substeps={reaction_substeps}")
        self.mesh, self.ionic, self.dt = mesh, ionic, float(dt)
        self.theta, self.splitting, self.reaction_substeps = theta, splitting, reaction_substeps
        self.comm = mesh.comm
        self.V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
        self.n = n_owned(dolfinx.fem.Function(self.V))
        self.coordinates = self.V.tabulate_dof_coordinates()[: self.n]
        self.v = dolfinx.fem.Function(self.V, name="v")
        self.v_star = dolfinx.fem.Function(self.V, name="v_after_reaction")
        self.conductivity_scale = conductivity_scale
        self.D = self._conductivity(diffusivity, fibres)
        if conductivity_scale is not None:
            self.D = conductivity_scale * self.D

        phi = ufl.TestFunction(self.V)
        dx_mass = (ufl.dx(metadata={"quadrature_rule": "vertex", "quadrature_degree": 1})
                   if lumped_mass else ufl.dx)
        v_mid = theta * self.v + (1.0 - theta) * self.v_star
        F = ((self.v - self.v_star) * phi * dx_mass
             + self.dt * ufl.inner(self.D * ufl.grad(v_mid), ufl.grad(phi)) * ufl.dx)
        controls = [self.v_star] + ([conductivity_scale] if conductivity_scale is not None else [])
        # M + θ dt K is symmetric (D is): the adjoint is the forward solve, whatever the solver.
        # No options: fem_operator's MUMPS LU; options naming a KSP or PC replace it entirely.
        self.diffusion = fem_operator(F, self.v, controls=controls, petsc_options=petsc_options, linear=True,
                                      symmetric=True)
        self.stimuli = list(stimuli)

    def _conductivity(self, diffusivity, fibres):
        d = self.mesh.geometry.dim
        if np.ndim(diffusivity) == 0:
            D_l = D_t = float(diffusivity)
        else:
            D_l, D_t = (float(x) for x in diffusivity)
        if fibres is None:
            if D_l != D_t:
                raise ValueError("anisotropic diffusivity (D_l, D_t) needs a fibre field")
            return dolfinx.fem.Constant(self.mesh, D_l)
        if fibres.ufl_shape != (d,):
            raise ShapeError(f"fibres: a vector Function of shape ({d},) expected, got {fibres.ufl_shape}")
        return D_t * ufl.Identity(d) + (D_l - D_t) * ufl.outer(fibres, fibres)

    # -- state ----------------------------------------------------------------------------
    def initial_state(self, *, device: torch.device | str | None = None) -> torch.Tensor:
        """The resting state of the owned nodes, shape ``(1 + n_slow, n_owned)``, float64."""
        return self.ionic.initial_state(self.n, device=device)

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
            state = self.ionic.step(state, h, self.stimulus_at(stimuli, masks, a, a + h, state))
        return state

    def _diffuse(self, state: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        device = state.device
        v_star = state[0].to("cpu", torch.float64)
        inputs = [v_star] if self.conductivity_scale is None else [v_star, self._check_scale(scale)]
        v = self.diffusion(*inputs).to(device=device, dtype=state.dtype)
        return torch.cat([v[None], state[1:]])

    def _check_scale(self, scale: torch.Tensor | None) -> torch.Tensor:
        if scale is None:
            raise ValueError("this model has a conductivity_scale control: pass its tensor as scale=")
        return scale.to("cpu", torch.float64)

    def step(self, state: torch.Tensor, k: int, scale: torch.Tensor | None = None, *,
             stimuli: Sequence[Stimulus] | None = None, masks: torch.Tensor | None = None,
             t0: float = 0.0) -> torch.Tensor:
        """Advance ``state`` over ``[t0 + k dt, t0 + (k + 1) dt]``."""
        stimuli = self.stimuli if stimuli is None else stimuli
        masks = self.stimulus_masks(stimuli) if masks is None else masks
        t = t0 + k * self.dt
        half = self.dt if self.splitting == "godunov" else 0.5 * self.dt
        error, state = self._react_checked(state, t, half, stimuli, masks)
        parallel.raise_on_any_rank(error, self.comm)   # a bad state or network fails every rank
        state = self._diffuse(state, scale)
        if self.splitting == "strang":
            error, state = self._react_checked(state, t + half, half, stimuli, masks)
            parallel.raise_on_any_rank(error, self.comm)
        return state

    def _react_checked(self, state, t, length, stimuli, masks):
        if state.shape != (1 + self.ionic.n_slow, self.n):
            return ShapeError(f"Monodomain.step: state of shape {(1 + self.ionic.n_slow, self.n)} "
                              f"(variables, owned nodes) expected, got {tuple(state.shape)}"), state
        try:
            return None, self._react(state, t, length, stimuli, masks)
        except (ValueError, RuntimeError) as e:
            return e, state

    def simulate(self, n_steps: int, state0: torch.Tensor | None = None, *,
                 scale: torch.Tensor | None = None, stimuli: Sequence[Stimulus] | None = None,
                 observe: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                 checkpoint_every: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run ``n_steps`` steps from ``state0`` (rest by default); see :func:`dnf.rollout`.

        ``observe(state, k)`` sees the state after step ``k`` (time ``(k + 1) dt``).
        ``checkpoint_every`` bounds memory for long horizons: only every k-th state is kept
        and blocks are recomputed in the backward pass.
        """
        stimuli = self.stimuli if stimuli is None else list(stimuli)
        masks = self.stimulus_masks(stimuli)
        state0 = self.initial_state() if state0 is None else state0
        return rollout(lambda s, k: self.step(s, k, scale, stimuli=stimuli, masks=masks),
                       state0, n_steps, observe=observe, checkpoint_every=checkpoint_every)

    # -- observations -----------------------------------------------------------------------
    def boundary_nodes(self, facet_tags: dolfinx.mesh.MeshTags, tags: Sequence[int]) -> torch.Tensor:
        """Owned node indices on the facets carrying any of ``tags`` (int64 tensor)."""
        tdim = self.mesh.topology.dim
        self.mesh.topology.create_connectivity(tdim - 1, tdim)
        facets = np.concatenate([facet_tags.find(t) for t in tags]) if tags else np.zeros(0, np.int32)
        dofs = dolfinx.fem.locate_dofs_topological(self.V, tdim - 1, facets)
        return torch.from_numpy(np.sort(dofs[dofs < self.n]).astype(np.int64))

    def point_weights(self, points: np.ndarray) -> torch.Tensor:
        """Weights ``W`` (``(n_points, n_owned)``, float64) such that
        ``parallel.sum(W @ v_owned)`` is ``v`` at ``points`` (P1 interpolation; collective).

        Each point is taken by the lowest rank that holds a cell containing it.
        """
        return point_weights(self.V, points)

    def pseudo_ecg_weights(self, points: np.ndarray) -> torch.Tensor:
        """Weights ``W`` (``(n_points, n_owned)``) of the pseudo-ECG: ``parallel.sum(W @ v_owned)``
        is ``φ(x_e) = ∫ D∇v · ∇(1 / |x - x_e|) dx`` at each electrode ``x_e`` (outside the
        tissue), the extracellular potential of an unbounded homogeneous bath up to the factor
        ``1 / (4π σ_bath)``. Uses the conductivity scale's current values. Collective.
        """
        x = ufl.SpatialCoordinate(self.mesh)
        phi = ufl.TestFunction(self.V)
        d = self.mesh.geometry.dim
        electrode = dolfinx.fem.Constant(self.mesh, np.zeros(d))
        r = ufl.sqrt(ufl.inner(x - electrode, x - electrode))
        form = dolfinx.fem.form(ufl.inner(self.D * ufl.grad(phi), ufl.grad(1.0 / r)) * ufl.dx)
        rows = []
        for p in np.asarray(points, dtype=np.float64).reshape(-1, d):
            electrode.value[:] = p
            vec = dolfinx.fem.assemble_vector(form)
            vec.scatter_reverse(dolfinx.la.InsertMode.add)
            rows.append(vec.array[: self.n].copy())
        return torch.tensor(np.array(rows).reshape(len(rows), self.n))

    def write_xdmf(self, path, frames: Sequence[tuple[float, torch.Tensor]]) -> None:
        """Write ``v`` at the given ``(time, owned v)`` frames to an XDMF file (collective)."""
        write_frames(path, self.V, frames, "v")

    def destroy(self) -> None:
        """Release the PETSc objects of the model's solver now, on all ranks together
        (collective); the model cannot step afterwards."""
        self.diffusion.destroy()


def activation_times(traces: torch.Tensor, dt: float, threshold: float = 0.5, *, t0: float = 0.0,
                     never: float | None = None) -> torch.Tensor:
    """First time each node's ``v`` crosses ``threshold`` upwards, by linear interpolation.

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
    """
    return t0 + dt * (0.5 + torch.sigmoid((threshold - traces) / width).sum(dim=0))
