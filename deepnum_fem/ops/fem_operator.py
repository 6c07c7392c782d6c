"""A DOLFINx solve of ``F(u; m) = 0`` as a torch operation with an adjoint backward pass."""

from __future__ import annotations

from collections.abc import Sequence

import dolfinx.fem
import numpy as np
import torch
import ufl

from deepnum_fem.errors import DeepnumFemError, NonFiniteError, ShapeError
from deepnum_fem.fem.options import SolverOptions
from deepnum_fem.fem.problem import AdjointProblem
from deepnum_fem.ops._inputs import check_inputs, gather_gradients, host_values
from deepnum_fem.ops.ml_operator import ParameterGradients, unique_parameters
from deepnum_fem.parallel import check_collective_call, raise_on_any_rank


class FemOperator:
    """Torch operation ``m -> u`` solving ``F(u; m) = 0`` (see :func:`fem_operator`)."""

    def __init__(self, F: ufl.Form, u: dolfinx.fem.Function, *, controls: Sequence = (),
                 bcs: Sequence[dolfinx.fem.DirichletBC] = (), solver: SolverOptions | None = None,
                 **options):
        self.problem = AdjointProblem(F, u, list(controls), bcs=bcs, solver=SolverOptions.build(solver, **options))
        #: The weights of the networks in ``F`` (its ml_operators): inputs of the op too, so that
        #: autograd sends them gradients.
        self.ml_parameters = unique_parameters(self.problem.ml_models)

    @property
    def u(self) -> dolfinx.fem.Function:
        """The state Function; holds the latest forward solution."""
        return self.problem.u

    @property
    def linear(self) -> bool:
        """Whether the operation is a linear solve (else Newton)."""
        return self.problem.linear

    @property
    def counts(self):
        """Assemblies and solves so far: :class:`~deepnum_fem.fem.problem.SolveCounts`."""
        return self.problem.counts

    @property
    def solver(self):
        """The forward PETSc solver (KSP, or SNES for Newton); ``problem.adjoint_solver`` is the
        adjoint's."""
        return self.problem.solver

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        """Solve for the state given one tensor per control.

        Returns:
            float64 tensor of the owned dofs of ``u``: shape ``(n_owned * bs,)``, or
            ``(batch, n_owned * bs)`` when inputs carry a leading batch dimension. It lives on
            the inputs' device.
        """
        self._check_alive("called")
        batch = check_inputs("fem_operator", tensors, self.problem.controls, self.problem.comm,
                             self.ml_parameters, call=f"fem_operator {self.problem.prefix}")
        # network weights of ml_operators in F are inputs too, so autograd sends them gradients
        return _FemSolve.apply(self, batch, len(tensors), *tensors, *self.ml_parameters)

    def _check_alive(self, what: str) -> None:
        if self.problem.destroyed:   # the same on every rank: destroy() is collective
            raise DeepnumFemError(f"{self!r} was destroyed (op.destroy() or destroy_live_problems()) and cannot "
                                  f"be {what}; build a new operation")

    @property
    def destroyed(self) -> bool:
        """Whether :meth:`destroy` has run (the same on every rank)."""
        return self.problem.destroyed

    def destroy(self) -> None:
        """Release the solver's PETSc objects now, on all ranks together (collective). Without
        it they live until the interpreter exits; an operation cannot be called afterwards."""
        self.problem.destroy()

    def __repr__(self) -> str:
        kind = "linear" if self.linear else "Newton"
        return f"FemOperator({kind}, {len(self.problem.controls)} control(s), prefix={self.problem.prefix!r})"


def fem_operator(F: ufl.Form, u: dolfinx.fem.Function, *, controls: Sequence = (),
                 bcs: Sequence[dolfinx.fem.DirichletBC] = (), solver: SolverOptions | None = None,
                 **options) -> FemOperator:
    """Make the solve of the residual ``F(u; controls) = 0`` a differentiable torch operation.

    Args:
        F: Residual form, linear or nonlinear in ``u``, with a test function on ``u``'s space.
        u: The unknown; it holds the latest solution (and the Newton initial guess).
        controls: Functions (any space) and Constants the operation is differentiable in;
            each call takes one tensor per control (a Function's owned dofs, a Constant's value).
        bcs: Dirichlet conditions on ``u``; their values are fixed (not controls).
        solver: A :class:`~deepnum_fem.fem.options.SolverOptions` (``dnf.SolverOptions``):
            forward and adjoint solver settings in one object, shared by operations and models.
        **options: Any field of :class:`~deepnum_fem.fem.options.SolverOptions`, set over
            ``solver``: ``petsc_options`` (forward solver; linear problems default to MUMPS
            LU, nonlinear ones to SNES Newton with MUMPS; options naming ``ksp_type`` or
            ``pc_type`` replace the default linear solver whole, others merge key by key),
            ``adjoint_petsc_options`` (a nonlinear problem's adjoint solve; a linear one
            reuses the forward solver), ``linear``, ``symmetric``, ``initial_guess``
            (``"previous"`` or ``"zero"``), ``configure_ksp``, ``nullspace`` (``"constant"`` or
            Functions spanning the null space of a singular operator and of its transpose;
            right-hand sides and solutions are projected orthogonal to it), ``direct_rtol``
            (default 1e-6), ``petsc_options_prefix``, ``jit_options``,
            ``form_compiler_options``. An unknown name is a ``TypeError``.

    Raises:
        SolverError: on every rank, when a solve fails or its result is not a solution: a
            Krylov method that did not converge, a direct solve whose true residual is too
            large, a singular operator (MUMPS null pivots, or constants mapped to zero) without
            a ``nullspace``.

    Returns:
        The operation; ``op(*tensors)`` returns the owned dofs of ``u``.
    """
    return FemOperator(F, u, controls=controls, bcs=bcs, solver=solver, **options)


class _FemSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, op: FemOperator, batch: int | None, n_controls: int, *inputs: torch.Tensor) -> torch.Tensor:
        problem = op.problem
        tensors = inputs[:n_controls]
        samples = host_values(tensors, problem.controls, batch)
        tokens, states = [], []
        if batch is not None and batch > 1 and problem.shares_factorisation:
            out = problem.solve_many(samples)   # one multi-RHS solve
            tokens = [None] * batch
        else:
            for values in samples:
                token = object()
                problem.set_state(values, None)
                states.append(problem.solve(token))
                tokens.append(token)
            out = np.stack(states) if batch is not None else states[0]
        device = tensors[0].device if tensors else torch.device("cpu")
        result = torch.from_numpy(out).to(device)
        ctx.op, ctx.batch, ctx.tokens, ctx.n_controls = op, batch, tokens, n_controls
        ctx.save_for_backward(*tensors, result)
        return result

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_u: torch.Tensor):
        *tensors, result = ctx.saved_tensors
        problem = ctx.op.problem
        ctx.op._check_alive("differentiated")
        needed = list(ctx.needs_input_grad[3:3 + ctx.n_controls])
        need_params = any(ctx.needs_input_grad[3 + ctx.n_controls:])
        check_collective_call(f"fem_operator {problem.prefix} backward", problem.comm,
                              (tuple(needed), need_params))
        grad_host = grad_u.detach().to("cpu", torch.float64).numpy()
        error = None
        if grad_host.shape != tuple(result.shape):
            error = ShapeError(f"fem_operator backward: cotangent of shape {grad_host.shape} for a "
                               f"state of shape {tuple(result.shape)}")
        elif not np.all(np.isfinite(grad_host)):
            error = NonFiniteError("fem_operator backward: the incoming gradient holds NaN/Inf; "
                                   "check the loss")
        raise_on_any_rank(error, problem.comm)

        samples = host_values(tensors, problem.controls, ctx.batch)
        states = result.detach().cpu().numpy()
        n = len(samples)
        per_sample: list[list[np.ndarray | None]] = [None] * n  # type: ignore[list-item]
        param_grads = ParameterGradients(ctx.op.ml_parameters)

        def collect(b: int) -> None:
            per_sample[b] = problem.control_gradients(needed)
            if need_params:   # -VJP(N_theta, (dF/dN)^T lam), this rank's share
                param_grads.add(problem.ml_models, problem.ml_controls, scale=-1.0)

        if ctx.batch is not None and n > 1 and problem.shares_factorisation:
            lams = problem.solve_adjoint_many(grad_host)   # one multi-RHS adjoint solve
            for b in range(n):
                problem.set_state(samples[b], states[b])
                problem.update_ml()
                problem.set_adjoint(lams[b])
                collect(b)
        # Last solved sample first: its operator may still be factorised.
        for b in reversed(range(n)):
            if per_sample[b] is not None:
                continue
            u_b = states[b] if ctx.batch is not None else states
            g_b = grad_host[b] if ctx.batch is not None else grad_host
            problem.set_state(samples[b], u_b)
            problem.solve_adjoint(g_b, ctx.tokens[b])
            collect(b)

        grads: list[torch.Tensor | None] = [None, None, None]
        grads += gather_gradients(tensors, problem.controls, per_sample, needed, ctx.batch)
        return (*grads, *param_grads.outputs())
