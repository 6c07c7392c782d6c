"""PETSc solver options: the defaults and the one rule that combines them with a user's."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace

from deepnum_fem.fem.checks import DIRECT_RTOL

__all__ = ["DIRECT_LINEAR", "NEWTON", "SolverOptions", "solver_options"]

#: A direct solve: MUMPS LU.
DIRECT_LINEAR = {"ksp_type": "preonly", "pc_type": "lu", "pc_factor_mat_solver_type": "mumps"}
#: Newton's method without line search, each step a direct solve.
NEWTON = {"snes_type": "newtonls", "snes_linesearch_type": "none", "snes_rtol": 1e-10, "snes_atol": 1e-12,
          "snes_max_it": 50, **DIRECT_LINEAR}
#: With MUMPS: detect null pivots (below 1e-12 ||A||) instead of dividing by them, so that a
#: singular operator is reported (see :mod:`deepnum_fem.fem.checks`), not solved into ~1e13.
_MUMPS_NULL_PIVOTS = {"mat_mumps_icntl_24": 1, "mat_mumps_cntl_3": 1e-12}
_SOLVER_FAMILIES = ("ksp", "pc", "mat")
_FACTORISATIONS = ("lu", "cholesky")


def solver_options(user: Mapping | None, defaults: Mapping) -> dict:
    """``user``'s options over ``defaults``, by one rule used by every operator and model.

    * Options of other families (``snes_*``) and nested solvers' (``fieldsplit_*``, ``mg_*``)
      merge key by key.
    * The default linear solver (its ``ksp_*``, ``pc_*`` and ``mat_*`` options) is kept only
      when the user names neither ``ksp_type`` nor ``pc_type``: ``{"pc_type": "gamg"}`` gets
      PETSc's default Krylov method with GAMG, not the default's ``preonly`` (one V-cycle).
    * A MUMPS factorisation detects null pivots, unless the user sets ``mat_mumps_icntl_24``.
    """
    user = dict(user or {})
    chose_solver = any(k in user for k in ("ksp_type", "pc_type"))
    options = {k: v for k, v in defaults.items() if not (chose_solver and k.split("_")[0] in _SOLVER_FAMILIES)}
    options.update(user)
    if options.get("pc_type") in _FACTORISATIONS and options.get("pc_factor_mat_solver_type") == "mumps":
        if "mat_mumps_icntl_24" not in user:
            for k, v in _MUMPS_NULL_PIVOTS.items():
                options.setdefault(k, v)
    return options



@dataclass(frozen=True)
class SolverOptions:
    """How an operation solves ``F(u; m) = 0`` and its adjoint: one object for every operation
    and model (``dnf.fem_operator(F, u, solver=SolverOptions(...))``, ``Monodomain(...,
    solver=...)``), or the same names as keyword arguments of :func:`deepnum_fem.fem_operator`.

    Attributes:
        petsc_options: Forward solver options. Linear problems default to MUMPS LU, nonlinear
            ones to SNES Newton with MUMPS; combined with the defaults by :func:`solver_options`.
        adjoint_petsc_options: The adjoint solve's options for a nonlinear problem (default:
            the forward's linear-solver options); a linear problem's adjoint reuses its solver.
        linear: Force the linearity detection (None: detect from the form).
        symmetric: Declare the operator symmetric or not (None: measured when the operator
            depends on no control, else unsymmetric: the adjoint is a transposed solve).
        initial_guess: Newton starts from the ``"previous"`` solution or from ``"zero"``.
        configure_ksp: Called on each KSP the operation solves with once its options are set
            and before its first setup (e.g. to give a PCFIELDSPLIT its fields).
        nullspace: For a linear operator singular on purpose: ``"constant"`` or Functions on
            ``u``'s space spanning the null space of the operator and of its transpose.
        direct_rtol: Largest true residual, relative to the right-hand side, accepted from a
            direct (``preonly``) solve.
        petsc_options_prefix: The solvers' PETSc options prefix (default: a unique one).
        jit_options, form_compiler_options: Passed to ``dolfinx.fem.form``.
    """

    petsc_options: Mapping | None = None
    adjoint_petsc_options: Mapping | None = None
    linear: bool | None = None
    symmetric: bool | None = None
    initial_guess: str = "previous"
    configure_ksp: Callable | None = None
    nullspace: str | Sequence | None = None
    direct_rtol: float = DIRECT_RTOL
    petsc_options_prefix: str | None = None
    jit_options: Mapping | None = None
    form_compiler_options: Mapping | None = None

    def __post_init__(self):
        if self.initial_guess not in ("previous", "zero"):
            raise ValueError(f"initial_guess must be 'previous' or 'zero', got {self.initial_guess!r}")
        if not self.direct_rtol > 0:
            raise ValueError(f"direct_rtol must be > 0, got {self.direct_rtol}")

    @classmethod
    def build(cls, solver: SolverOptions | None = None, **options) -> SolverOptions:
        """``solver`` (or the defaults) with ``options`` set over it; an unknown name is a
        ``TypeError`` that lists the known ones."""
        if solver is not None and not isinstance(solver, SolverOptions):
            raise TypeError(f"solver= must be a SolverOptions, got {type(solver).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown solver option(s) {unknown}; expected some of {sorted(known)}")
        return replace(solver or cls(), **options)

    def merged(self, **petsc_defaults) -> SolverOptions:
        """A copy whose ``petsc_options`` lie over ``petsc_defaults`` (a model's own defaults,
        e.g. Newton tolerances), key by key."""
        return replace(self, petsc_options={**petsc_defaults, **dict(self.petsc_options or {})})
