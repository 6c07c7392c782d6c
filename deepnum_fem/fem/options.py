"""PETSc solver options: the defaults and the one rule that combines them with a user's."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["DIRECT_LINEAR", "NEWTON", "solver_options"]

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

