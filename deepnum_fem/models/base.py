"""The interface every time-stepping model has: a state, a step with named controls, a rollout,
observations, output and an explicit end.

A model advances a state tensor (owned dofs, float64) one time step at a time. What a user may
differentiate, besides the initial state, are its *controls*: tensors named in
:attr:`TimeSteppingModel.controls`, passed by keyword to :meth:`~TimeSteppingModel.step` and
:meth:`~TimeSteppingModel.simulate` (in a rollout, a control may also be a function of the step
index ``k``). A control that is not given takes its default (:meth:`~TimeSteppingModel.control`)
and gets no gradient. Boundaries are named as in the mesh file: pass the ``MeshData`` of
``dnf.io``/``dnf.geometry`` (or a mesh, facet tags and a name → tag mapping) and refer to its
physical groups (``"INFLOW"``, ``"OPEN_SEA"``) or to tag values.

======================  ===========================  ==========================  ==========================
                        :class:`Monodomain`          :class:`Transport`          :class:`ShallowWater`
======================  ===========================  ==========================  ==========================
state                   ``(1 + n_slow, n)``: v,      ``(n,)``: concentration     ``(n,)``: the mixed P2–P1
                        gating variables                                         (u, η) dofs
controls                ``scale`` (of the            ``source`` (emission, per   ``drag`` (a coefficient
                        conductivity, if built       step), ``scale`` (of the    or a field, unless a
                        with one)                    diffusivity, if built with  learned law)
                                                     one)
operator                the diffusion solve          the step solve              the Newton step
======================  ===========================  ==========================  ==========================
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Callable, Mapping, Sequence

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import torch

from deepnum_fem.errors import DeepnumFemError
from deepnum_fem.fem.options import SolverOptions
from deepnum_fem.io import write_frames
from deepnum_fem.ops.timestepping import rollout
from deepnum_fem.sensors import PointSensors

__all__ = ["Domain", "TimeSteppingModel", "model_solver"]

Control = torch.Tensor | Callable[[int], torch.Tensor]


class Domain:
    """A mesh with its named boundaries: what a model needs to find ``"INFLOW"``.

    Built from a DOLFINx ``MeshData`` (what ``dnf.io.load_*`` and ``dnf.geometry`` return: its
    physical groups name the tags), or from a mesh with optional facet tags and names.
    """

    def __init__(self, mesh: dolfinx.mesh.Mesh, facet_tags: dolfinx.mesh.MeshTags | None = None,
                 names: Mapping[str, int] | None = None):
        self.mesh, self.facet_tags = mesh, facet_tags
        self.names = {str(k): int(v) for k, v in (names or {}).items()}

    @classmethod
    def of(cls, domain, facet_tags: dolfinx.mesh.MeshTags | None = None) -> Domain:
        """A :class:`Domain` from a ``Domain``, a ``MeshData`` or a mesh (with ``facet_tags``)."""
        if isinstance(domain, Domain):
            return domain
        if isinstance(domain, dolfinx.mesh.Mesh):
            return cls(domain, facet_tags)
        mesh = getattr(domain, "mesh", None)
        if not isinstance(mesh, dolfinx.mesh.Mesh):
            raise TypeError(f"a dolfinx Mesh, a MeshData (dnf.io / dnf.geometry) or a Domain expected, "
                            f"got {type(domain).__name__}")
        facet_dim = mesh.topology.dim - 1
        groups = getattr(domain, "physical_groups", None) or {}
        names = {name: g.tag for name, g in groups.items() if g.dim == facet_dim}
        return cls(mesh, domain.facet_tags if facet_tags is None else facet_tags, names)

    def tag(self, which: str | int) -> int:
        """The facet tag value of a boundary name (or a value, returned as it is)."""
        if isinstance(which, str):
            if which not in self.names:
                known = ", ".join(sorted(self.names)) or "none: pass a MeshData or names="
                raise ValueError(f"no boundary named {which!r}; the mesh names {known}")
            return self.names[which]
        if isinstance(which, (int, np.integer)) and not isinstance(which, bool):
            return int(which)
        raise TypeError(f"a boundary is a name (str) or a tag value (int), got {which!r}")

    def tags(self, which: str | int | Sequence[str | int]) -> tuple[int, ...]:
        """Tag values of one boundary or several."""
        items = [which] if isinstance(which, (str, int, np.integer)) else list(which)
        return tuple(self.tag(w) for w in items)

    def facets(self, which: str | int | Sequence[str | int]) -> np.ndarray:
        """This rank's facets (local indices, sorted) on the given boundaries."""
        values = self.tags(which)
        if self.facet_tags is None:
            raise ValueError(f"boundary {which!r} asked for, but the model has no facet tags: pass a "
                             "MeshData (dnf.io.load_*, dnf.geometry) or facet_tags=")
        found = [self.facet_tags.find(v) for v in values]
        return np.unique(np.concatenate(found)).astype(np.int32) if found else np.zeros(0, np.int32)


def model_solver(solver: SolverOptions | None, petsc_options: Mapping | None, **petsc_defaults) -> SolverOptions:
    """A model's solver settings: ``solver`` with the ``petsc_options`` argument (if given) and
    the model's own PETSc defaults underneath."""
    if petsc_options is not None and solver is not None and solver.petsc_options is not None:
        raise TypeError("give the PETSc options either as petsc_options= or inside solver=, not both")
    solver = SolverOptions.build(solver) if petsc_options is None else SolverOptions.build(
        solver, petsc_options=petsc_options)
    return solver.merged(**petsc_defaults) if petsc_defaults else solver


class TimeSteppingModel(abc.ABC):
    """A time-stepping model: ``state_{k+1} = step(state_k, k, **controls)``.

    Attributes: ``mesh``; ``dt``, the time step; ``t0``, the time of the state at step 0;
    :attr:`controls`; :attr:`comm`, :attr:`operator` and :attr:`domain` (read-only).

    A subclass sets ``mesh``, ``dt``, ``t0``, ``controls``, ``_domain`` and ``_operator`` (the
    step's :class:`~deepnum_fem.FemOperator`) and implements :meth:`initial_state`,
    :meth:`control`, :meth:`sensors`, ``_step(state, k, controls)`` (one step with every
    control's tensor) and ``_output()`` (what :meth:`write_xdmf` writes).
    """

    #: The mesh, its communicator, the time step and the time of the state at step 0.
    mesh: dolfinx.mesh.Mesh
    dt: float
    t0: float = 0.0
    #: Names of the step's controls, in the order of the step operation's inputs.
    controls: tuple[str, ...] = ()
    _operator = None

    @property
    def comm(self):
        """The mesh's communicator: every method of a model is collective on it."""
        if "_comm" not in self.__dict__:
            self._comm = self.mesh.comm
        return self._comm

    @property
    def operator(self):
        """The step's differentiable solve (a :class:`~deepnum_fem.FemOperator`): its
        ``counts`` and ``solver`` show what it has done and with what."""
        return self._operator

    @property
    def domain(self) -> Domain:
        """The mesh with its named boundaries."""
        return self._domain

    # -- state and controls ---------------------------------------------------------------
    @abc.abstractmethod
    def initial_state(self) -> torch.Tensor:
        """The model's rest state (float64, owned dofs)."""

    @property
    def state_shape(self) -> tuple[int, ...]:
        """The shape of this rank's state tensor."""
        return tuple(self.initial_state().shape)

    @abc.abstractmethod
    def control(self, name: str) -> torch.Tensor:
        """The value a step uses for control ``name`` when it is not given (no gradient)."""

    def _check_control_names(self, given: Mapping[str, object], what: str) -> None:
        """A control given as None counts as not given."""
        unknown = sorted(name for name, value in given.items() if value is not None and name not in self.controls)
        if unknown:
            known = ", ".join(self.controls) or "none (built without a control)"
            raise TypeError(f"{type(self).__name__}.{what}: unknown control(s) {unknown}; this model's "
                            f"controls: {known}")

    def _check_control_name(self, name: str) -> None:
        if name not in self.controls:
            known = ", ".join(self.controls) or "none (built without a control)"
            raise ValueError(f"{type(self).__name__}.control: no control named {name!r}; this model's controls: "
                             f"{known}")

    def _control_values(self, given: Mapping[str, torch.Tensor | None], like: torch.Tensor) -> dict:
        return {name: (self.control(name).to(like) if given.get(name) is None else given[name])
                for name in self.controls}

    def _positional_control(self, legacy: tuple, controls: dict, name: str) -> None:
        """The deprecated ``step(state, k, control)``: at most one positional control, ``name``,
        moved into ``controls`` with a warning."""
        what = type(self).__name__
        if len(legacy) > 1:
            raise TypeError(f"{what}.step takes (state, k) and controls by keyword, got {2 + len(legacy)} "
                            "positional arguments")
        if legacy:
            deprecated(f"{what}.step(state, k, {name})", f"{what}.step(state, k, {name}={name})", stacklevel=4)
            controls[name] = legacy[0]

    @staticmethod
    def _given(controls: Mapping) -> dict:
        return {name: value for name, value in controls.items() if value is not None}

    def time(self, k: int) -> float:
        """The time at the end of step ``k``: ``t0 + (k + 1) dt``."""
        return self.t0 + (k + 1) * self.dt

    # -- time stepping ----------------------------------------------------------------------
    def step(self, state: torch.Tensor, k: int = 0, **controls: torch.Tensor | None) -> torch.Tensor:
        """Advance ``state`` from ``t0 + k dt`` to ``t0 + (k + 1) dt`` (collective).

        ``controls``: tensors by name (see :attr:`controls`); one not given takes
        :meth:`control`'s value. Differentiable in ``state`` and in every control given.
        """
        return self._checked_step(state, k, controls)

    def _checked_step(self, state: torch.Tensor, k: int, controls: dict, **options) -> torch.Tensor:
        """:meth:`_step` of a live model, with the controls checked and their defaults filled in;
        ``options`` (a subclass's own step options) go to :meth:`_step` as they are."""
        self._check_alive()
        self._check_control_names(controls, "step")
        return self._step(state, int(k), self._control_values(controls, state), **options)

    @abc.abstractmethod
    def _step(self, state: torch.Tensor, k: int, controls: dict[str, torch.Tensor]) -> torch.Tensor:
        """One step with every control's tensor given."""

    def simulate(self, n_steps: int, state0: torch.Tensor | None = None, *,
                 observe: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                 checkpoint_every: int | None = None,
                 **controls: Control | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run ``n_steps`` steps from ``state0`` (:meth:`initial_state` by default).

        Args:
            n_steps: Number of steps.
            state0: The state at ``t0``.
            observe: ``observe(state, k)`` sees the state after step ``k`` (time
                :meth:`time` ``(k)``); the results are stacked.
            checkpoint_every: Keep only every k-th state and recompute the blocks between in
                the backward pass (see :func:`deepnum_fem.rollout`).
            **controls: By name, a tensor used at every step or a function ``k -> tensor``.

        Returns:
            ``(final state, stacked observations or None)``.
        """
        self._check_control_names(controls, "simulate")
        state0 = self.initial_state() if state0 is None else state0
        return self._rollout(state0, n_steps, self._given(controls), observe, checkpoint_every)

    def _rollout(self, state0, n_steps, controls, observe, checkpoint_every, **step_options):
        def at(k: int) -> dict:
            return {name: (value(k) if callable(value) else value) for name, value in controls.items()}

        return rollout(lambda s, k: self.step(s, k, **at(k), **step_options), state0, n_steps,
                       observe=observe, checkpoint_every=checkpoint_every)

    # -- observations and output -------------------------------------------------------------
    @abc.abstractmethod
    def sensors(self, points) -> Callable[[torch.Tensor], torch.Tensor]:
        """Point sensors of the model's observed field: ``sensors(state)`` gives its values at
        ``points`` (global, the same on every rank; collective), ``sensors.local(state)`` this
        rank's share. Both take a leading time or batch dimension and are differentiable."""

    def write_xdmf(self, path, frames: Sequence[tuple[float, torch.Tensor]]) -> None:
        """Write ``(time, state)`` frames of the model's output field to an XDMF file (collective)."""
        V, name, field = self._output()
        write_frames(path, V, [(t, field(s)) for t, s in frames], name)

    @abc.abstractmethod
    def _output(self) -> tuple[dolfinx.fem.FunctionSpace, str, Callable[[torch.Tensor], torch.Tensor]]:
        """(space, name, state -> owned dofs of the field) written by :meth:`write_xdmf`."""

    # -- lifetime ---------------------------------------------------------------------------
    @property
    def destroyed(self) -> bool:
        """Whether :meth:`destroy` has run."""
        return self._operator is not None and self._operator.problem.destroyed

    def _check_alive(self) -> None:
        if self.destroyed:   # the same on every rank: destroy() is collective
            raise DeepnumFemError(f"this {type(self).__name__} was destroyed and cannot step; build a new one")

    def destroy(self) -> None:
        """Release the PETSc objects of the model's solvers now, on all ranks together
        (collective; safe to call twice); the model cannot step afterwards."""
        if self._operator is not None:
            self._operator.destroy()

    def __repr__(self) -> str:   # not collective: a repr may be asked for on one rank only
        return (f"{type(self).__name__}(dt={self.dt:g}, state {self.state_shape} on rank {self.comm.rank} of "
                f"{self.comm.size}, controls={list(self.controls)})")


class PointSensorsOf:
    """:class:`~deepnum_fem.sensors.PointSensors` of a field picked out of a model's state."""

    def __init__(self, V: dolfinx.fem.FunctionSpace, points, field: Callable[[torch.Tensor], torch.Tensor]):
        self.sensors = PointSensors(V, np.asarray(points, dtype=np.float64))
        self.field, self.comm = field, V.mesh.comm

    def local(self, state: torch.Tensor) -> torch.Tensor:
        """This rank's share of the values at the points (sum it with ``dnf.parallel.sum``)."""
        return self.sensors.local(self.field(state))

    def __call__(self, state: torch.Tensor) -> torch.Tensor:
        """The values at the points (the same on every rank; collective)."""
        return self.sensors(self.field(state))


def deprecated(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is replaced by ``new`` and goes in the next release (``stacklevel``:
    the caller of the deprecated spelling, as for ``warnings.warn``)."""
    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}",
                  DeprecationWarning, stacklevel=stacklevel)
