"""A DOLFINx solve of ``F(u; m) = 0`` as a torch operation with an adjoint backward pass."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dolfinx.fem
import numpy as np
import torch
import ufl

from deepnum_fem.errors import DeepnumFemError, NonFiniteError, ShapeError
from deepnum_fem.fem.checks import DIRECT_RTOL
from deepnum_fem.fem.problem import AdjointProblem
from deepnum_fem.ops._inputs import check_inputs, gather_gradients, host_values
from deepnum_fem.ops.ml_operator import ml_parameter_gradients, unique_parameters
from deepnum_fem.parallel import check_collective_call, raise_on_any_rank


class FemOperator:
    """Torch operation ``m -> u`` solving ``F(u; m) = 0`` (see :func:`fem_operator`)."""

    def __init__(self, F: ufl.Form, u: dolfinx.fem.Function, *, controls: Sequence = (),
                 bcs: Sequence[dolfinx.fem.DirichletBC] = (), petsc_options: dict | None = None,
                 adjoint_petsc_options: dict | None = None, linear: bool | None = None,
                 symmetric: bool | None = None, petsc_options_prefix: str | None = None,
                 initial_guess: str = "previous", configure_ksp: Callable | None = None,
                 nullspace: str | Sequence[dolfinx.fem.Function] | None = None, direct_rtol: float = DIRECT_RTOL,
                 jit_options: dict | None = None, form_compiler_options: dict | None = None):
        self.problem = AdjointProblem(
            F, u, list(controls), bcs=bcs, petsc_options=petsc_options,
            adjoint_petsc_options=adjoint_petsc_options, linear=linear, symmetric=symmetric,
            petsc_options_prefix=petsc_options_prefix, initial_guess=initial_guess, configure_ksp=configure_ksp,
            nullspace=nullspace, direct_rtol=direct_rtol,
            jit_options=jit_options, form_compiler_options=form_compiler_options)
        #: The weights of the networks in ``F`` (its ml_operators): inputs of the op too, so that
        #: autograd sends them gradients.
        self.ml_parameters = unique_parameters(self.problem.ml_models)

    def parameter_gradients(self) -> list[torch.Tensor | None]:
        """``-VJP(N_theta, (dF/dN)^T lam)`` for :attr:`ml_parameters` at the adjoint state the
        problem holds, this rank's share."""
        problem = self.problem
        return ml_parameter_gradients(problem.ml_models, problem.ml_controls, self.ml_parameters, scale=-1.0)

    @property
    def u(self) -> dolfinx.fem.Function:
        """The state Function; holds the latest forward solution."""
        return self.problem.u

    @property
    def linear(self) -> bool:
        return self.problem.linear

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

    def destroy(self) -> None:
        """Release the solver's PETSc objects now, on all ranks together (collective). Without
        it they live until the interpreter exits; an operation cannot be called afterwards."""
        self.problem.destroy()

    def __repr__(self) -> str:
        kind = "linear" if self.linear else "Newton"
        return f"FemOperator({kind}, {len(self.problem.controls)} control(s), prefix={self.problem.prefix!r})"


def fem_operator(F: ufl.Form, u: dolfinx.fem.Function, *, controls: Sequence = (),
                 bcs: Sequence[dolfinx.fem.DirichletBC] = (), petsc_options: dict | None = None,
                 adjoint_petsc_options: dict | None = None, **kwargs) -> FemOperator:
    """Make the solve of the residual ``F(u; controls) = 0`` a differentiable torch operation.

    Args:
        F: Residual form, linear or nonlinear in ``u``, with a test function on ``u``'s space.
        u: The unknown; it holds the latest solution (and the Newton initial guess).
        controls: Functions (any space) and Constants the operation is differentiable in;
            each call takes one tensor per control (a Function's owned dofs, a Constant's value).
        bcs: Dirichlet conditions on ``u``; their values are fixed (not controls).
        petsc_options: Forward solver options. Linear problems default to MUMPS LU, nonlinear
            ones to SNES Newton with MUMPS. Given options replace the default linear solver
            whole when they name ``ksp_type`` or ``pc_type``, and merge key by key otherwise
            (:func:`deepnum_fem.fem.options.solver_options`).
        adjoint_petsc_options: Options of the adjoint solve of a nonlinear problem; default
            the forward's linear-solver options. Linear problems reuse the forward solver.
        **kwargs: ``linear`` (force the detection), ``symmetric`` (skip the symmetry check),
            ``initial_guess`` (Newton starts from the ``"previous"`` solution, the default, or
            from ``"zero"``), ``configure_ksp`` (a callable applied to each KSP the operation
            solves with, before its first setup, e.g. to set a PCFIELDSPLIT's fields),
            ``nullspace`` (linear problems whose operator is singular on purpose: ``"constant"``
            or Functions on ``u``'s space spanning the null space of the operator and of its
            transpose; right-hand sides and solutions, forward and adjoint, are projected
            orthogonal to it), ``direct_rtol`` (largest true residual, relative to the
            right-hand side, accepted from a direct solve; default 1e-6),
            ``petsc_options_prefix``, ``jit_options``, ``form_compiler_options``.

    Raises:
        SolverError: on every rank, when a solve fails or its result is not a solution: a
            Krylov method that did not converge, a direct solve whose true residual is too
            large, a singular operator (MUMPS null pivots, or constants mapped to zero) without
            a ``nullspace``.

    Returns:
        The operation; ``op(*tensors)`` returns the owned dofs of ``u``.
    """
    return FemOperator(F, u, controls=controls, bcs=bcs, petsc_options=petsc_options,
                       adjoint_petsc_options=adjoint_petsc_options, **kwargs)


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
        param_grads: list[torch.Tensor | None] = [None] * len(ctx.op.ml_parameters)

        def collect(b: int) -> None:
            per_sample[b] = problem.control_gradients(needed)
            if need_params:
                for i, g in enumerate(ctx.op.parameter_gradients()):
                    if g is not None:
                        param_grads[i] = g if param_grads[i] is None else param_grads[i] + g

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
        for p, g in zip(ctx.op.ml_parameters, param_grads, strict=True):
            grads.append(None if g is None else g.to(device=p.device, dtype=p.dtype))
        return tuple(grads)
