"""The PETSc side of a problem's solvers: their options in the database only while they are
read, a preconditioner's own errors raised as such, and a PC that lends another solver's."""

from __future__ import annotations

import contextlib

from petsc4py import PETSc

from deepnum_fem.errors import DeepnumFemError, SolverError

__all__ = ["BorrowedPC", "ksp_options", "options_in_database", "preconditioner_errors", "set_options"]


def ksp_options(options: dict) -> dict:
    """The linear-solver part of a PETSc options dict (for the adjoint of a Newton solve): all but
    the SNES options, so that nested solvers' options (``fieldsplit_*``, ``mg_levels_*``) stay."""
    return {k: v for k, v in options.items() if k.split("_")[0] != "snes"}


def set_options(prefix: str, options: dict) -> None:
    """Put ``options`` into PETSc's global database under ``prefix``."""
    db = PETSc.Options()
    for k, v in options.items():
        db[f"{prefix}{k}"] = v


@contextlib.contextmanager
def options_in_database(prefix: str, options: dict):
    """The options back in PETSc's database for the duration of a solve, removed after.

    The solvers' own options are read when they are made, and the database is then cleaned;
    but nested solvers (PCFIELDSPLIT's splits, a Schur complement's solver, the levels of
    PCMG) are made, and read theirs, only when the preconditioner is first set up, in a solve.
    """
    set_options(prefix, options)
    try:
        yield
    finally:
        db = PETSc.Options()
        for k in options:
            db.delValue(f"{prefix}{k}")


class BorrowedPC:
    """PETSc python-PC context applying another solver's already set-up preconditioner."""

    def __init__(self, pc: PETSc.PC):
        self.pc = pc

    def apply(self, pc: PETSc.PC, x: PETSc.Vec, y: PETSc.Vec) -> None:
        self.pc.apply(x, y)

    def applyTranspose(self, pc: PETSc.PC, x: PETSc.Vec, y: PETSc.Vec) -> None:  # noqa: N802 (PETSc's name)
        self.pc.applyTranspose(x, y)


@contextlib.contextmanager
def preconditioner_errors():
    """Raise a deepnum-fem preconditioner's own error (e.g. ``LearnedFSAI`` on a matrix without a
    positive diagonal) instead of the bare ``PETSc.Error`` that PETSc reports, whose cause it is.
    Those preconditioners decide their errors on all ranks together. Any other PETSc error
    becomes a :class:`~deepnum_fem.SolverError` that says what its code usually means."""
    try:
        yield
    except PETSc.Error as e:
        cause = e.__cause__
        if isinstance(cause, DeepnumFemError):
            raise cause from cause.__cause__   # keeps a NetworkError's original exception
        hint = PETSC_ERROR_HINTS.get(e.ierr, "")
        raise SolverError(f"PETSc failed inside a solve: error code {e.ierr} (PETSc's message and stack are "
                          f"printed on stderr){'; ' + hint if hint else ''}") from e


#: What a PETSc error code raised inside a solve usually means for a user's options.
PETSC_ERROR_HINTS = {
    56: ("an operation the chosen solver does not support, most often a transposed solve (the adjoint of a "
         "non-symmetric operator) with a preconditioner that has no transpose, e.g. SOR or Eisenstat, also as "
         "a multigrid smoother: use ILU ('pc_type': 'ilu', or 'mg_levels_pc_type': 'ilu' for GAMG) or LU"),
    71: ("a zero pivot in a factorisation: the operator is singular, or needs pivoting (use 'pc_type': 'lu' with "
         "'pc_factor_mat_solver_type': 'mumps')"),
}
