"""A scalar UFL form as a torch operation: the global value and its derivatives."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import dolfinx.fem
import torch
import ufl

from deepnum_fem._ufl_caches import release_ufl_traversers
from deepnum_fem.fem.controls import Control
from deepnum_fem.fem.external import lower as lower_ml
from deepnum_fem.fem.forms import coefficients_and_constants
from deepnum_fem.ops._inputs import check_inputs, gather_gradients, host_values
from deepnum_fem.ops.ml_operator import ParameterGradients, unique_parameters
from deepnum_fem.parallel import check_collective_call

_serials = itertools.count()


class Functional:
    """Torch operation ``inputs -> J(inputs)`` for a scalar form (see :func:`functional`)."""

    def __init__(self, form: ufl.Form, inputs: Sequence, *, jit_options: dict | None = None,
                 form_compiler_options: dict | None = None):
        if form.arguments():
            raise ValueError(f"functional needs a scalar form (no test or trial functions), got one "
                             f"of rank {len(form.arguments())}")
        if not inputs:
            raise ValueError("functional needs at least one input (Function or Constant)")
        present = coefficients_and_constants(form)
        for i, m in enumerate(inputs):
            if not isinstance(m, dolfinx.fem.Function | dolfinx.fem.Constant):
                raise TypeError(f"input {i} must be a dolfinx.fem.Function or Constant, got {type(m).__name__}")
            if m not in present:
                raise ValueError(f"input {i} ({getattr(m, 'name', 'Constant')}) does not appear in the form")
        opts = {"jit_options": jit_options, "form_compiler_options": form_compiler_options}
        form, self.ml_models = lower_ml(form)
        self.form = dolfinx.fem.form(form, **opts)
        self.inputs = [Control(m, form, None, **opts) for m in inputs]
        self.ml_cotangents = [Control(m.N0, form, None, **opts) for m in self.ml_models]
        self.ml_parameters = unique_parameters(self.ml_models)
        self.comm = self.form.mesh.comm
        self.serial = next(_serials)   # made in the same order on every rank (collective)
        release_ufl_traversers()   # CPython 3.13.0 kept UFL's traversers, and so this mesh, alive

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        """Assemble the form with the inputs' values.

        Returns:
            float64 0-dim tensor with the global value, identical on every rank (shape
            ``(batch,)`` for batched inputs), on the inputs' device.
        """
        batch = check_inputs("functional", tensors, self.inputs, self.comm, self.ml_parameters,
                             call=f"functional #{self.serial}")
        return _Assemble.apply(self, batch, len(tensors), *tensors, *self.ml_parameters)

    def value(self) -> float:
        """Global value with the inputs' current values (collective)."""
        for m in self.ml_models:
            m.update()
        return self.comm.allreduce(dolfinx.fem.assemble_scalar(self.form))


def functional(form: ufl.Form, inputs: Sequence, **kwargs) -> Functional:
    """Make a scalar form a torch operation of the tensors of its ``inputs``.

    Args:
        form: Scalar UFL form, e.g. ``(u - d)**2 * dx``.
        inputs: Functions (states or controls) and Constants; one tensor per input at call.
        **kwargs: ``jit_options``, ``form_compiler_options``.

    The gradient for a Function input is ``dJ/dm`` at its owned dofs; for a Constant input,
    it is this rank's share of ``dJ/dc`` (``dnf.parallel.allreduce_gradients`` sums them).
    """
    return Functional(form, inputs, **kwargs)


class _Assemble(torch.autograd.Function):
    @staticmethod
    def forward(ctx, J: Functional, batch: int | None, n_inputs: int, *inputs: torch.Tensor) -> torch.Tensor:
        tensors = inputs[:n_inputs]
        values = []
        for sample in host_values(tensors, J.inputs, batch):
            for c, v in zip(J.inputs, sample, strict=True):
                c.assign(v)
            values.append(J.value())
        out = torch.tensor(values if batch is not None else values[0], dtype=torch.float64,
                           device=tensors[0].device)
        ctx.J, ctx.batch, ctx.n_inputs = J, batch, n_inputs
        ctx.save_for_backward(*tensors)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        tensors = ctx.saved_tensors
        J: Functional = ctx.J
        needed = ctx.needs_input_grad[3:3 + ctx.n_inputs]
        need_params = any(ctx.needs_input_grad[3 + ctx.n_inputs:])
        check_collective_call(f"functional #{J.serial} backward", J.comm, (tuple(needed), need_params))
        param_grads = ParameterGradients(J.ml_parameters)
        g_out = grad_out.detach().to("cpu", torch.float64).numpy()
        samples = host_values(tensors, J.inputs, ctx.batch)
        per_sample = []
        for b, sample in enumerate(samples):
            for c, v in zip(J.inputs, sample, strict=True):
                c.assign(v)
            for m in J.ml_models:
                m.update()
            weight = float(g_out[b] if ctx.batch is not None else g_out)
            per_sample.append([weight * c.assemble() if need else None
                               for c, need in zip(J.inputs, needed, strict=True)])
            if need_params:
                param_grads.add(J.ml_models, J.ml_cotangents, scale=weight)
        grads: list[torch.Tensor | None] = [None, None, None]
        grads += gather_gradients(tensors, J.inputs, per_sample, needed, ctx.batch)
        return (*grads, *param_grads.outputs())
