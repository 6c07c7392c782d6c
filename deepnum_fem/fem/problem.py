"""Forward and adjoint solves of a residual ``F(u; m) = 0`` with PETSc (no torch here)."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import itertools
from collections.abc import Sequence

from petsc4py import PETSc

import dolfinx.fem
import dolfinx.fem.petsc
import numpy as np
import ufl

from deepnum_fem._ufl_caches import release_ufl_traversers
from deepnum_fem.errors import DeepnumFemError, SolverError
from deepnum_fem.fem import checks
from deepnum_fem.fem.controls import Control
from deepnum_fem.fem.dofs import n_owned, owned_array
from deepnum_fem.fem.external import lower as lower_ml
from deepnum_fem.fem.forms import ValueSnapshot, coefficients_and_constants, depends_on, is_constant
from deepnum_fem.fem.nullspace import NullSpace
from deepnum_fem.fem.options import DIRECT_LINEAR, NEWTON, SolverOptions, solver_options
from deepnum_fem.fem.petsc_solvers import BorrowedPC, ksp_options, options_in_database, preconditioner_errors

_prefix_counter = itertools.count()
# Every problem by creation number, held until it is destroyed explicitly or at exit. Destroying a
# PETSc object that holds a parallel factorisation (MUMPS) is collective: left to garbage
# collection, ranks release problems at different moments and in different orders (a reference
# cycle collected on one rank only, at main()'s return or at exit) and deadlock. Held here, every
# problem is destroyed on all ranks together, in creation order: by FemOperator.destroy() or by
# this exit hook, which runs before mpi4py and petsc4py finalise.
_live_problems: dict[int, AdjointProblem] = {}


@atexit.register
def destroy_live_problems() -> None:
    """Destroy every problem not yet destroyed, in creation order (collective: call it on all
    ranks together). Runs at exit; a long program (a test suite) may call it between phases to
    give back PETSc objects and the MPI communicators their meshes hold (MPICH allows about
    2,000 per process). Operators whose problems are destroyed can no longer be used."""
    for key in sorted(_live_problems):
        _live_problems[key].destroy()


@dataclasses.dataclass(frozen=True)
class SolveCounts:
    """What a problem has done since it was made (read-only; see :attr:`AdjointProblem.counts`).
    Solves are counted once they have passed their checks: a failed solve is not counted.

    Attributes:
        assemblies: Operator (Jacobian) assemblies by this package, forward and adjoint; for a
            direct solver each is one numerical factorisation at the next solve. Newton's own
            Jacobian assemblies are in ``newton_iterations``.
        forward_solves: Forward solves, a batched solve counting one per right-hand side.
        newton_iterations: Newton iterations of the counted forward solves (0 for linear problems).
        adjoint_solves: Adjoint solves, a batched solve counting one per right-hand side.
        recycled_adjoints: Adjoint solves of a Newton problem preconditioned by the forward's
            last factorisation instead of a factorisation of their own.
    """

    assemblies: int = 0
    forward_solves: int = 0
    newton_iterations: int = 0
    adjoint_solves: int = 0
    recycled_adjoints: int = 0


class AdjointProblem:
    """A residual ``F(u; m) = 0`` that can be solved for ``u`` and differentiated in ``m``.

    Linear problems (``dF/du`` independent of ``u``) are solved with one Krylov solve;
    nonlinear ones with PETSc SNES (DOLFINx ``NonlinearProblem``). The adjoint
    ``(dF/du)^T lam = g`` reuses the forward factorisation when the operator is unchanged
    since the forward solve, and the operator is assembled only once when it depends on no
    control.

    ``configure_ksp(ksp)``, when given, is called on each KSP the problem solves with (the
    linear solver, or the Newton solver's and the adjoint's) once its options are set and
    before its first setup: e.g. to give a PCFIELDSPLIT its fields (``pc.setFieldSplitIS``).

    Every solve is checked before its result is used: the KSP's convergence; for direct solves
    (``preonly``) the true residual (at most ``direct_rtol`` of the right-hand side), MUMPS's
    null pivots and, at each assembly, whether the operator maps constants to zero. A singular
    operator is an error unless its ``nullspace`` is given (linear problems): then the
    right-hand sides (forward and adjoint) and the solutions are projected orthogonal to it.
    """

    def __init__(self, F: ufl.Form, u: dolfinx.fem.Function, controls: Sequence, *,
                 bcs: Sequence[dolfinx.fem.DirichletBC] = (), solver: SolverOptions | None = None):
        solver = SolverOptions() if solver is None else solver
        if not isinstance(solver, SolverOptions):
            raise TypeError(f"solver= must be a SolverOptions, got {type(solver).__name__}")
        self.solver_options = solver
        initial_guess, linear, symmetric = solver.initial_guess, solver.linear, solver.symmetric
        nullspace, configure_ksp = solver.nullspace, solver.configure_ksp
        adjoint_petsc_options = solver.adjoint_petsc_options
        self.initial_guess = initial_guess
        self.u = u
        self.V = u.function_space
        self.bcs = list(bcs)
        self.comm = self.V.mesh.comm
        opts = {"jit_options": solver.jit_options, "form_compiler_options": solver.form_compiler_options}
        _check_controls(F, u, controls, self.bcs)
        F, self.ml_models = lower_ml(F)
        ml_data = [f for m in self.ml_models for f in m.data_functions]
        ml_on_u = any(depends_on(q, [u]) for m in self.ml_models for q in m.operands)

        J = ufl.derivative(F, u, ufl.TrialFunction(self.V))
        self.linear = (not (depends_on(J, [u]) or ml_on_u)) if linear is None else bool(linear)
        # Symmetric operators let the adjoint reuse the forward solve as it is; otherwise it is a
        # transposed solve (same factorisation), which is always right. Symmetry is measured only
        # for an operator that depends on no control: values at one state say nothing of others.
        self._declared_symmetric = symmetric
        self.symmetric = symmetric
        self._operator_fixed = self.linear and not depends_on(J, [*controls, *ml_data])
        # A linear operator free of networks is reassembled (and refactorised) only when the
        # values it depends on change: a time loop with a fixed conductivity control pays one
        # factorisation per rollout, and its adjoint steps reuse it.
        self._operator_cacheable = self.linear and not depends_on(J, ml_data)
        self._operator_inputs = ValueSnapshot(coefficients_and_constants(ufl.algorithms.expand_derivatives(J)),
                                              self.comm)

        number = next(_prefix_counter)
        prefix = solver.petsc_options_prefix or f"dnf_op{number}_"
        self.prefix = prefix
        user = dict(solver.petsc_options or {})
        self.petsc_options = solver_options(user, DIRECT_LINEAR if self.linear else NEWTON)
        self.adjoint_petsc_options = (dict(adjoint_petsc_options) if adjoint_petsc_options is not None
                                      else solver_options(ksp_options(user), DIRECT_LINEAR))
        if nullspace is not None and not self.linear:
            raise DeepnumFemError("nullspace= is supported for linear problems; a Newton problem needs "
                                  "conditions that make its Jacobian non-singular")
        self.nullspace = NullSpace(self.V, nullspace) if nullspace is not None else None
        self.checks = checks.SolveChecks(self.V.dofmap.index_map_bs, self.nullspace, solver.direct_rtol,
                                         linear=self.linear)

        self.F = dolfinx.fem.form(F, **opts)
        self.J = dolfinx.fem.form(J, **opts)
        self.A = dolfinx.fem.petsc.create_matrix(self.J)
        if self.nullspace is not None:   # Krylov solvers project by themselves
            petsc_nullspace = self.nullspace.petsc(u)
            self.A.setNullSpace(petsc_nullspace)
            self.A.setTransposeNullSpace(petsc_nullspace)
        self.b = dolfinx.fem.petsc.create_vector(self.V)
        self.x = dolfinx.fem.petsc.create_vector(self.V)
        # a copy shares u's ghost-exchange plan; a new Function would make its own: two MPI
        # communicators on more than one rank, for every operator
        self.lam = u.copy()
        self.lam.name = "adjoint"
        self.lam.x.array[:] = 0.0
        # an adjoint action that does not depend on u, m or a network is a fixed matrix: assembled
        # once (again only when its inputs change), then applied by a transposed mat-vec
        self.controls = [Control(m, F, self.lam, fixed_unless=[u, *ml_data], comm=self.comm, **opts)
                         for m in controls]
        # -(dF/dN0)^T lam: the per-point cotangent of each network's output
        self.ml_controls = [Control(m.N0, F, self.lam, **opts) for m in self.ml_models]
        self._affine = self._affine_rhs(F, u, controls)

        if self.linear:
            self.ksp = self._make_ksp(self.A, prefix, self.petsc_options)
            self.adj_ksp = self.ksp
            self._newton = None
        else:
            self._newton = dolfinx.fem.petsc.NonlinearProblem(
                F, u, bcs=self.bcs, J=J, petsc_options_prefix=prefix,
                petsc_options=self.petsc_options, **opts)
            db = PETSc.Options()
            for k in self.petsc_options:   # DOLFINx leaves them in the database; each solve sets them again
                db.delValue(f"{prefix}{k}")
            if self.ml_models:
                self._hook_ml_into_snes()
            self.adj_A = dolfinx.fem.petsc.create_matrix(self.J)
            self.adj_ksp = self._make_ksp(self.adj_A, f"{prefix}adjoint_", self.adjoint_petsc_options)
            # Default adjoint: GMRES on dF/du(u*) preconditioned by the factorisation SNES already
            # holds (of dF/du at the last iterate, close to u*): a few triangular solves instead
            # of a new factorisation. Explicit adjoint_petsc_options switch it off, and so does an
            # iterative Newton solver (no factorisation to borrow: the adjoint KSP, with the same
            # KSP and PC options, is as good).
            factorised = self._newton.solver.getKSP().getPC().getType() in ("lu", "cholesky")
            self._recycle_ksp = (self._make_recycling_ksp(prefix)
                                 if adjoint_petsc_options is None and factorised else None)
        if configure_ksp is not None:
            for ksp in [self.ksp] if self.linear else [self._newton.solver.getKSP(), self.adj_ksp]:
                configure_ksp(ksp)
        self._newton_pc_token: object | None = None
        self._adj_assembled_for: object | None = None
        self._assembled_for: object | None = None   # token of the state the operator belongs to
        self._bc_mask = self._make_bc_mask()
        self._counts = SolveCounts()
        self._number = number
        _live_problems[number] = self
        release_ufl_traversers()   # CPython 3.13.0 kept UFL's traversers, and so this mesh, alive

    # -- what it holds and has done ------------------------------------------------------
    @property
    def counts(self) -> SolveCounts:
        """Assemblies and solves so far (a snapshot; this rank's view, the same on every rank)."""
        return self._counts

    def _count(self, **increments: int) -> None:
        self._counts = dataclasses.replace(
            self._counts, **{k: getattr(self._counts, k) + v for k, v in increments.items()})

    @property
    def solver(self) -> PETSc.KSP | PETSc.SNES:
        """The forward solver: the KSP of a linear problem, the SNES of a nonlinear one. Set its
        options through ``petsc_options``; it is destroyed with the problem."""
        return self.ksp if self.linear else self._newton.solver

    @property
    def adjoint_solver(self) -> PETSc.KSP:
        """The KSP of the adjoint solves (a linear problem's forward KSP)."""
        return self.adj_ksp

    # -- construction helpers -----------------------------------------------------------
    def _make_ksp(self, A: PETSc.Mat, prefix: str, options: dict) -> PETSc.KSP:
        ksp = PETSc.KSP().create(self.comm)
        ksp.setOperators(A)
        ksp.setOptionsPrefix(prefix)
        # the options only while they are read (the global database stays clean); a
        # preconditioner's own error (a TwoLevel option it does not know) raised as such
        with options_in_database(prefix, options), preconditioner_errors():
            ksp.setFromOptions()
        return ksp

    def _make_recycling_ksp(self, prefix: str) -> PETSc.KSP:
        ksp = PETSc.KSP().create(self.comm)
        ksp.setOptionsPrefix(f"{prefix}adjoint_recycled_")
        ksp.setType("gmres")
        ksp.setOperators(self.adj_A)
        ksp.setTolerances(rtol=1e-12, atol=1e-50, max_it=40)
        pc = ksp.getPC()
        pc.setType("python")
        pc.setPythonContext(BorrowedPC(self._newton.solver.getKSP().getPC()))
        return ksp

    @contextlib.contextmanager
    def _solving(self, ksp: PETSc.KSP):
        """Around every solve with ``ksp``: its options in the database (the Newton solver's
        with the SNES ones), and preconditioners' own errors raised as such."""
        prefix = ksp.getOptionsPrefix()
        options = self.petsc_options if prefix == self.prefix else (
            self.adjoint_petsc_options if prefix == f"{self.prefix}adjoint_" else {})
        with options_in_database(prefix, options), preconditioner_errors():
            yield

    def _make_bc_mask(self) -> np.ndarray:
        mask = np.ones(n_owned(self.u))
        full = np.ones_like(self.u.x.array)
        for bc in self.bcs:
            bc.set(full, alpha=0.0)
        mask[:] = full[: mask.size]
        return mask

    # -- forward ------------------------------------------------------------------------
    def solve(self, token: object) -> np.ndarray:
        """Solve for ``u`` with the controls' current values; return owned ``u`` (a copy).

        ``token`` names this state: a later :meth:`solve_adjoint` with the same token may
        reuse the operator assembled here.
        """
        if self.linear:
            self._solve_linear()
        else:
            self._solve_newton()
            its = self._newton.solver.getIterationNumber()
            self._newton_pc_token = token if its > 0 else None   # its = 0: SNES set up no PC
        self._assembled_for = token
        return owned_array(self.u).copy()

    def _assemble_operator(self, A: PETSc.Mat) -> None:
        self._count(assemblies=1)
        A.zeroEntries()
        dolfinx.fem.petsc.assemble_matrix(A, self.J, bcs=self.bcs)
        A.assemble()
        if self._operator_fixed and self._declared_symmetric is None:
            self.symmetric = bool(A.isSymmetric(1e-10 * max(A.norm(), 1e-300)))
        self.checks.assembled(A)

    def _operator_is_current(self) -> bool:
        """Whether the values the operator depends on are those of its last assembly (collective)."""
        return self._operator_inputs.unchanged()

    def forget_operator(self) -> None:
        """Make the next solve assemble (and refactorise) the operator again, as when the values
        it depends on have changed (collective; benchmarks time a cold step this way)."""
        self._operator_inputs.forget()
        self._assembled_for = self._adj_assembled_for = None

    @property
    def shares_factorisation(self) -> bool:
        """Linear with an operator that depends on no control: one factorisation for all solves."""
        return self._operator_fixed

    def _affine_rhs(self, F: ufl.Form, u, controls) -> ValueSnapshot | None:
        """When F is affine in all controls jointly, each ``dF/dm_i`` a fixed matrix ``B_i`` free
        of every control, the right-hand side is ``F(0; 0) + Σ B_i m_i``: ``F(0; 0)`` (lifted)
        is assembled only when what it depends on changes, and each solve costs mat-vecs
        instead of an assembly. Returns the snapshot of those dependencies, or None."""
        if not (self.linear and controls and not self.ml_models
                and all(c.is_fixed_matrix for c in self.controls)
                and not any(m in c.matrix_inputs for c in self.controls for m in controls)):
            return None
        self._b0 = self.b.duplicate()
        self._bm = self.b.duplicate()
        inputs = coefficients_and_constants(F) - {u, *controls}
        return ValueSnapshot([*inputs, *(bc.g for bc in self.bcs)], self.comm)

    def _assemble_affine_residual(self, operator_changed: bool) -> None:
        if not self._affine.unchanged() or operator_changed:
            saved = [np.array(c.m.value if is_constant(c.m) else c.m.x.array, copy=True) for c in self.controls]
            for c in self.controls:
                c.assign(np.zeros(c.shape))
            self._assemble_residual()           # F(0; 0), lifted, with the Dirichlet rows
            self.b.copy(self._b0)
            for c, values in zip(self.controls, saved, strict=True):
                (c.m.value if is_constant(c.m) else c.m.x.array)[...] = values
        self._b0.copy(self.b)
        for c in self.controls:
            c.matrix().mult(c.m.x.petsc_vec, self._bm)
            self.b.axpy(1.0, self._bm)
        dolfinx.fem.petsc.set_bc(self.b, self.bcs, x0=self.u.x.petsc_vec, alpha=-1.0)

    def _solve_linear(self) -> None:
        self.u.x.array[:] = 0.0
        self.update_ml()   # networks first: the operator may contain their Jacobians
        operator_changed = not (self._operator_cacheable and self._operator_is_current())
        if operator_changed:
            self._assemble_operator(self.A)
            self.ksp.setOperators(self.A)
        if self._affine is not None:
            self._assemble_affine_residual(operator_changed)
        else:
            self._assemble_residual()
        self.checks.project(self.b.getArray())
        with self._solving(self.ksp):
            self.ksp.solve(self.b, self.x)
        self.checks.solution(self.ksp, "forward linear solve", self.b, self.x)
        self._count(forward_solves=1)
        owned_array(self.u)[:] = -self.x.getArray(readonly=True)
        self.u.x.scatter_forward()

    def _assemble_residual(self) -> None:
        """b = F(u) with Dirichlet rows u - g, as DOLFINx's Newton solver builds it."""
        x0 = self.u.x.petsc_vec
        with self.b.localForm() as local:
            local.set(0.0)
        dolfinx.fem.petsc.assemble_vector(self.b, self.F)
        dolfinx.fem.petsc.apply_lifting(self.b, [self.J], bcs=[self.bcs], x0=[x0], alpha=-1.0)
        self.b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        dolfinx.fem.petsc.set_bc(self.b, self.bcs, x0=x0, alpha=-1.0)

    def _solve_newton(self) -> None:
        if self.initial_guess == "zero" or not np.all(np.isfinite(self.u.x.array)):
            self.u.x.array[:] = 0.0   # also: a failed earlier solve must not poison the next guess
        self._callback_error = None
        with self._solving(self._newton.solver.getKSP()):
            self._newton.solve()
        snes = self._newton.solver
        if self._callback_error is not None:
            self.u.x.array[:] = 0.0
            error, self._callback_error = self._callback_error, None
            raise error
        reason = snes.getConvergedReason()
        if reason <= 0:
            its, fnorm = snes.getIterationNumber(), snes.getFunctionNorm()
            ksp_reason = snes.getKSP().getConvergedReason()
            self.u.x.array[:] = 0.0
            raise SolverError(
                f"Newton solve ({self.prefix}) did not converge: SNES reason {checks.reason_name(reason, PETSc.SNES)}"
                f" after {its} iterations, residual norm {fnorm:.3e}; last linear solve "
                f"{checks.reason_name(ksp_reason)}. Try a line search "
                "('snes_linesearch_type': 'bt'), a better initial guess or smaller steps.")
        if snes.getIterationNumber() > 0:   # 0 iterations: SNES factorised nothing
            try:
                self.checks.singular(snes.getKSP(), "Newton solve's last Jacobian")
            except SolverError:
                self.u.x.array[:] = 0.0
                raise
        self._count(forward_solves=1, newton_iterations=snes.getIterationNumber())

    def solve_many(self, samples: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
        """Solve a batch of right-hand sides with one ``KSPMatSolve`` (fixed linear operator).

        With MUMPS this is one multi-RHS triangular solve. Returns owned ``u``, shape (B, n).
        """
        if not self.shares_factorisation:
            raise DeepnumFemError("solve_many needs a linear problem whose operator depends on no control")
        if not self._operator_is_current():
            self._assemble_operator(self.A)
            self.ksp.setOperators(self.A)
        rhs = np.empty((n_owned(self.u), len(samples)), order="F")
        for b, values in enumerate(samples):
            self.set_state(values, None)
            self.u.x.array[:] = 0.0
            self.update_ml()
            self._assemble_residual()
            rhs[:, b] = self.b.getArray(readonly=True)
        states = -self._mat_solve(rhs, transpose=False, what="batched forward solve").T
        self._count(forward_solves=len(samples))
        owned_array(self.u)[:] = states[-1]
        self.u.x.scatter_forward()
        return np.ascontiguousarray(states)

    def solve_adjoint_many(self, rhs: np.ndarray) -> np.ndarray:
        """Adjoint solves for a batch of cotangents ``rhs`` (B, n) with one ``KSPMatSolve``."""
        cols = np.asfortranarray((rhs * self._bc_mask).T)
        lams = self._mat_solve(cols, transpose=not self.symmetric, what="batched adjoint solve").T
        self._count(adjoint_solves=cols.shape[1])
        return np.ascontiguousarray(lams)

    def set_adjoint(self, lam_owned: np.ndarray) -> None:
        owned_array(self.lam)[:] = lam_owned
        self.lam.x.scatter_forward()

    def _mat_solve(self, cols: np.ndarray, *, transpose: bool, what: str) -> np.ndarray:
        n, nrhs = cols.shape
        for j in range(nrhs):
            self.checks.project(cols[:, j])
        B = PETSc.Mat().createDense(((n, PETSc.DECIDE), (PETSc.DECIDE, nrhs)), array=cols, comm=self.comm)
        B.assemble()
        X = B.duplicate()
        try:
            with self._solving(self.ksp):
                (self.ksp.matSolveTranspose if transpose else self.ksp.matSolve)(B, X)
            out = np.array(X.getDenseArray(readonly=True), order="F")
            self.checks.columns(self.ksp, what, B, out, transpose=transpose)
            return out
        finally:
            B.destroy()
            X.destroy()

    # -- adjoint ------------------------------------------------------------------------
    def solve_adjoint(self, rhs: np.ndarray, token: object) -> None:
        """Solve ``(dF/du)^T lam = rhs`` (Dirichlet rows zeroed) at the current state.

        The caller has restored the controls and ``u`` of the state named ``token``.
        """
        self.update_ml()
        if self.linear:
            if not (self._assembled_for is token
                    or (self._operator_cacheable and self._operator_is_current())):
                self._assemble_operator(self.A)
            self._assembled_for = token
            ksp = self.ksp
        else:
            # PETSc re-factorises by itself when the matrix's values have changed
            if self._adj_assembled_for is not token:
                self._assemble_operator(self.adj_A)
                self._adj_assembled_for = token
            ksp = self.adj_ksp
        self.b.getArray()[:] = rhs * self._bc_mask
        self.checks.project(self.b.getArray())
        recycled = (not self.linear and self._recycle_ksp is not None and self._newton_pc_token is token
                    and self._solve_with(self._recycle_ksp, check=False))
        if not recycled:
            self._solve_with(ksp, check=True)
        self._count(adjoint_solves=1, recycled_adjoints=int(bool(recycled)))
        self.set_adjoint(self.x.getArray(readonly=True))

    def _solve_with(self, ksp: PETSc.KSP, *, check: bool) -> bool:
        with self._solving(ksp):
            (ksp.solve if self.symmetric else ksp.solveTranspose)(self.b, self.x)
        if check:
            self.checks.solution(ksp, "adjoint solve", self.b, self.x, transpose=not self.symmetric)
        return ksp.getConvergedReason() > 0

    def control_gradients(self, needed: Sequence[bool]) -> list[np.ndarray | None]:
        """``-(dF/dm)^T lam`` for each control whose gradient is needed."""
        return [(-c.assemble() if need else None) for c, need in zip(self.controls, needed, strict=True)]

    # -- networks in the form ------------------------------------------------------------
    def update_ml(self) -> None:
        """Evaluate every network at the current state (values and Jacobians at the points);
        a network whose operands and weights did not change is not run again."""
        for m in self.ml_models:
            m.update()

    def _hook_ml_into_snes(self) -> None:
        """Re-evaluate the networks whenever SNES asks for the residual at a new iterate."""
        snes = self._newton.solver
        fvec, (residual, args, kwargs) = snes.getFunction()
        A, P, (jacobian, jargs, jkwargs) = snes.getJacobian()

        def sync(x: PETSc.Vec) -> None:
            x.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
            x.copy(self.u.x.petsc_vec)
            self.u.x.scatter_forward()
            self.update_ml()

        # An exception inside a PETSc callback would surface as an opaque PETSc error: keep it,
        # make SNES stop (NaN residual), and raise it after the solve (on every rank, as
        # update_ml decides errors collectively).
        def residual_ml(snes_, x, b):
            try:
                sync(x)
            except DeepnumFemError as e:
                self._callback_error = e
                b.set(np.nan)
                return
            residual(snes_, x, b, *(args or ()), **(kwargs or {}))

        def jacobian_ml(snes_, x, J, P_):
            try:
                sync(x)
            except DeepnumFemError as e:
                self._callback_error = e
                return
            jacobian(snes_, x, J, P_, *(jargs or ()), **(jkwargs or {}))

        snes.setFunction(residual_ml, fvec)
        snes.setJacobian(jacobian_ml, A, P)

    # -- state ----------------------------------------------------------------------------
    def set_state(self, control_values: Sequence[np.ndarray], u_owned: np.ndarray | None) -> None:
        for c, v in zip(self.controls, control_values, strict=True):
            c.assign(v)
        if u_owned is not None:
            owned_array(self.u)[:] = u_owned
            self.u.x.scatter_forward()

    @property
    def destroyed(self) -> bool:
        """Whether :meth:`destroy` has run (then the problem cannot solve)."""
        return self._number not in _live_problems

    def destroy(self) -> None:
        """Destroy the PETSc objects (collective; safe to call twice). The problem is unusable after."""
        _live_problems.pop(self._number, None)
        if self._newton is not None:      # its SNES, KSP (factorisation), matrix and vectors
            newton = self._newton
            for obj in (newton.solver, newton.A, newton.P_mat, newton.b, newton.x):
                if obj is not None:
                    obj.destroy()
        for obj in (self.A, self.b, self.x, getattr(self, "adj_A", None), getattr(self, "_b0", None),
                    getattr(self, "_bm", None), self.ksp if self.linear else self.adj_ksp,
                    getattr(self, "_recycle_ksp", None)):
            if obj is not None:
                obj.destroy()
        for c in [*self.controls, *self.ml_controls]:
            c.destroy()


def _check_controls(F, u, controls, bcs) -> None:
    present = coefficients_and_constants(F)
    for i, m in enumerate(controls):
        if not isinstance(m, dolfinx.fem.Function | dolfinx.fem.Constant):
            raise TypeError(f"control {i} must be a dolfinx.fem.Function or Constant, got {type(m).__name__}")
        if m is u:
            raise DeepnumFemError("the unknown u cannot also be a control")
        for bc in bcs:
            if bc.g is m or bc.g is getattr(m, "_cpp_object", None):
                raise DeepnumFemError(
                    f"control {i} is the value of a Dirichlet condition; boundary-value controls "
                    "are not supported yet: impose the boundary value weakly (Nitsche) in F instead")
        if m not in present:
            raise DeepnumFemError(
                f"control {i} ({getattr(m, 'name', type(m).__name__)}) does not appear in the residual F; "
                "pass only Functions/Constants that F contains")
