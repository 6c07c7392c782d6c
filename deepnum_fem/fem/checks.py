"""Checks that a solve returned a solution: true residuals of direct and Krylov solves, singular
operators."""

from __future__ import annotations

import math

from petsc4py import PETSc

import numpy as np

from deepnum_fem.errors import SolverError
from deepnum_fem.fem.nullspace import NullSpace

__all__ = ["DIRECT_RTOL", "KRYLOV_RESIDUAL_FACTOR", "SolveChecks", "constant_kernel", "mumps_null_pivots",
           "reason_name", "residual_ratio", "singular_hint"]

#: A direct solve whose true residual exceeds this fraction of the right-hand side is an error.
DIRECT_RTOL = 1e-6

#: A Krylov solve whose true residual exceeds this many times its own ``ksp_rtol`` (relative to
#: the right-hand side), and ``direct_rtol``, is an error: its stopping test measured something else.
KRYLOV_RESIDUAL_FACTOR = 1e3

#: ``‖A c‖∞ ≤ KERNEL_RTOL ‖A‖∞`` for a constant ``c`` means ``A`` maps constants to rounding:
#: a Laplacian without a Dirichlet condition (its row sums cancel to ~1e-15 ‖A‖).
KERNEL_RTOL = 1e-13


def constant_kernel(A: PETSc.Mat, bs: int) -> int | None:
    """The first block component whose constant vector ``A`` maps to zero, else None (collective).

    One mat-vec per component: a pure-Neumann Poisson or elasticity operator (constants, or
    translations, in its null space) is found whatever the solver or right-hand side.
    """
    scale = A.norm(PETSc.NormType.INFINITY)
    e, y = A.createVecs()
    try:
        for c in range(bs):
            values = e.getArray()
            values[:] = 0.0
            values[c::bs] = 1.0
            A.mult(e, y)
            if y.norm(PETSc.NormType.INFINITY) <= KERNEL_RTOL * scale:
                return c
        return None
    finally:
        e.destroy()
        y.destroy()


def mumps_null_pivots(ksp: PETSc.KSP) -> int:
    """Null pivots MUMPS found in the last factorisation of ``ksp``'s PC (0 for other solvers).

    Needs null-pivot detection on (``mat_mumps_icntl_24 1``, set by
    :func:`deepnum_fem.fem.options.solver_options`); the count is global (MUMPS ``INFOG(28)``).
    """
    pc = ksp.getPC()
    if pc.getType() not in ("lu", "cholesky") or pc.getFactorSolverType() != "mumps":
        return 0
    return int(pc.getFactorMatrix().getMumpsInfog(28))


def residual_ratio(A: PETSc.Mat, b: PETSc.Vec, x: PETSc.Vec, *, transpose: bool = False) -> float:
    """``‖b − A x‖₂ / ‖b‖₂`` (``Aᵀ`` when ``transpose``); 0 for ``b = 0 = A x`` (collective)."""
    r = b.duplicate()
    try:
        (A.multTranspose if transpose else A.mult)(x, r)
        r.axpy(-1.0, b)
        nr, nb = r.norm(), b.norm()
    finally:
        r.destroy()
    if nb > 0:
        return nr / nb
    return 0.0 if nr == 0 else math.inf


def singular_hint(bs: int, *, linear: bool = True) -> str:
    """What to tell a user whose operator is singular (a null space can be given to linear problems)."""
    kernel = "constants" if bs == 1 else "constant vectors (translations; rotations too for elasticity)"
    cause = f"the usual cause is a pure-Neumann problem or a forgotten bcs= ({kernel} in the null space). "
    if not linear:
        return cause + "Add Dirichlet conditions (a null space can be given to linear problems only)"
    return (cause + "Add Dirichlet conditions, or, when the problem is meant to be singular, give its null space: "
            "fem_operator(..., nullspace='constant') or nullspace=[Functions spanning it]")


def reason_name(reason: int, cls=PETSc.KSP) -> str:
    """A PETSc converged/diverged reason by name and number: ``'DIVERGED_ITS (-3)'``."""
    names = {v: k for k, v in vars(cls.ConvergedReason).items() if isinstance(v, int)}
    return f"{names.get(reason, 'UNKNOWN')} ({reason})"


class SolveChecks:
    """What a problem checks of each solve before its result is used (all collective, so every
    rank raises together): the KSP's convergence; for a direct solve (``preonly``) MUMPS's null
    pivots, whether the operator maps constants to zero (probed at each assembly) and the
    true residual. With a ``nullspace``, right-hand sides and solutions are projected
    orthogonal to it instead, and as many null pivots as its dimension are allowed.
    """

    def __init__(self, bs: int, nullspace: NullSpace | None, direct_rtol: float = DIRECT_RTOL, *,
                 linear: bool = True):
        self.bs, self.nullspace, self.direct_rtol, self.linear = bs, nullspace, float(direct_rtol), linear
        #: whether each assembly asks if constants are mapped to zero (linear operators without a null space)
        self.probe_kernel = linear and nullspace is None
        self.singular_component: int | None = None

    def assembled(self, A: PETSc.Mat) -> None:
        """Probe a newly assembled operator (one mat-vec per block component)."""
        if self.probe_kernel:
            self.singular_component = constant_kernel(A, self.bs)

    def project(self, values: np.ndarray) -> None:
        """Remove the null-space components of owned ``values`` in place (no-op without one)."""
        if self.nullspace is not None:
            self.nullspace.project(values)

    def solution(self, ksp: PETSc.KSP, what: str, b: PETSc.Vec, x: PETSc.Vec, *, transpose: bool = False) -> None:
        """Raise unless ``x`` solves ``A x = b`` (``Aᵀ`` when ``transpose``); projects ``x`` first."""
        self.converged(ksp, what)
        self.project(x.getArray())
        ratio = residual_ratio(ksp.getOperators()[0], b, x, transpose=transpose)
        if ksp.getType() != "preonly":
            self._krylov_residual(ksp, what, ratio, b.norm())
            return
        self.singular(ksp, what)
        self._residual(ksp, what, ratio)

    def columns(self, ksp: PETSc.KSP, what: str, B: PETSc.Mat, X: np.ndarray, *, transpose: bool) -> None:
        """:meth:`solution` for each column of a batched solve ``A X = B`` (``X`` projected in place)."""
        self.converged(ksp, what)
        for j in range(X.shape[1]):
            self.project(X[:, j])
        krylov = ksp.getType() != "preonly"
        if not krylov:
            self.singular(ksp, what)
        A = ksp.getOperators()[0]
        b, x = A.createVecs()
        try:
            for j in range(X.shape[1]):
                B.getColumnVector(j, b)
                x.getArray()[:] = X[:, j]
                ratio = residual_ratio(A, b, x, transpose=transpose)
                if krylov:
                    self._krylov_residual(ksp, f"{what} (column {j})", ratio, b.norm())
                else:
                    self._residual(ksp, f"{what} (column {j})", ratio)
        finally:
            b.destroy()
            x.destroy()

    @staticmethod
    def converged(ksp: PETSc.KSP, what: str) -> None:
        reason = ksp.getConvergedReason()
        if reason < 0:
            raise SolverError(
                f"{what} ({ksp.getOptionsPrefix()}) failed: KSP reason {reason_name(reason)} "
                f"after {ksp.getIterationNumber()} iterations, residual norm {ksp.getResidualNorm():.3e}")

    def singular(self, ksp: PETSc.KSP, what: str) -> None:
        """Raise if the last factorisation of ``ksp`` found the operator singular (beyond the null
        space given): MUMPS's null pivots, or constants mapped to zero at the last assembly."""
        pivots = mumps_null_pivots(ksp)
        allowed = self.nullspace.dim if self.nullspace is not None else 0
        if pivots > allowed:
            beyond = f" beyond the {allowed} null-space vector(s) given" if allowed else ""
            raise SolverError(f"{what} ({ksp.getOptionsPrefix()}): MUMPS found {pivots} null pivot(s), the operator "
                              f"is singular{beyond}; {singular_hint(self.bs, linear=self.linear)}")
        if self.singular_component is not None:
            component = f" (component {self.singular_component})" if self.bs > 1 else ""
            raise SolverError(f"{what} ({ksp.getOptionsPrefix()}): the operator maps constant vectors{component} "
                              f"to zero, so it is singular; {singular_hint(self.bs, linear=self.linear)}")

    def _residual(self, ksp: PETSc.KSP, what: str, ratio: float) -> None:
        if ratio <= self.direct_rtol:
            return
        pc = ksp.getPC().getType()
        if pc not in ("lu", "cholesky"):
            cause = (f"ksp_type 'preonly' applies the preconditioner '{pc}' once, which is not a solve: choose a "
                     "Krylov method (ksp_type 'cg' for symmetric positive definite operators, else 'gmres'), "
                     "or a factorisation (pc_type 'lu')")
        else:
            cause = ("the operator is singular or nearly so (a condition number beyond ~1/direct_rtol); "
                     + singular_hint(self.bs))
        raise SolverError(f"{what} ({ksp.getOptionsPrefix()}): the true residual is {ratio:.3e} of the right-hand "
                          f"side after a preonly solve (allowed: direct_rtol = {self.direct_rtol:g}); {cause}")

    def _krylov_residual(self, ksp: PETSc.KSP, what: str, ratio: float, b_norm: float) -> None:
        """A Krylov method stops on its own residual norm, which with left preconditioning (GMRES's
        default) is the preconditioned one: it can report convergence while ``b - A x`` is far
        larger. Allowed: :data:`KRYLOV_RESIDUAL_FACTOR` times the tolerance it was given, and
        never less than ``direct_rtol`` (what a factorisation is allowed)."""
        rtol, atol, _, _ = ksp.getTolerances()
        allowed = max(KRYLOV_RESIDUAL_FACTOR * max(rtol, atol / b_norm if b_norm > 0 else 0.0), self.direct_rtol)
        if ratio <= allowed:
            return
        raise SolverError(
            f"{what} ({ksp.getOptionsPrefix()}): the Krylov method '{ksp.getType()}' reported convergence "
            f"({reason_name(ksp.getConvergedReason())}, ksp_rtol {rtol:g}) but the true residual is {ratio:.3e} of "
            f"the right-hand side (allowed: {allowed:.1e}, the larger of {KRYLOV_RESIDUAL_FACTOR:g} x ksp_rtol and "
            f"direct_rtol): its {_norm_name(ksp)} residual norm misjudged the error. Stop on the true residual "
            "('ksp_norm_type': 'unpreconditioned', or 'ksp_type': 'fgmres', which preconditions on the right), or "
            "use a better preconditioner")


def _norm_name(ksp: PETSc.KSP) -> str:
    names = {v: k.lower() for k, v in vars(PETSc.KSP.NormType).items() if isinstance(v, int)}
    return names.get(ksp.getNormType(), "own")
