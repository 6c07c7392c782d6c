"""Checks that a solve returned a solution: true residuals of direct solves, singular operators."""

from __future__ import annotations

import math

from petsc4py import PETSc

__all__ = ["constant_kernel", "mumps_null_pivots", "reason_name", "residual_ratio", "singular_hint"]

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


def singular_hint(bs: int) -> str:
    """What to tell a user whose operator is singular."""
    kernel = "constants" if bs == 1 else "constant vectors (translations; rotations too for elasticity)"
    return (f"the usual cause is a pure-Neumann problem or a forgotten bcs= ({kernel} in the null space). "
            "Add Dirichlet conditions, or, when the problem is meant to be singular, give its null space: "
            "fem_operator(..., nullspace='constant') or nullspace=[Functions spanning it]")


def reason_name(reason: int, cls=PETSc.KSP) -> str:
    """A PETSc converged/diverged reason by name and number: ``'DIVERGED_ITS (-3)'``."""
    names = {v: k for k, v in vars(cls.ConvergedReason).items() if isinstance(v, int)}
    return f"{names.get(reason, 'UNKNOWN')} ({reason})"
