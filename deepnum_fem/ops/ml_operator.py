"""Torch networks inside UFL forms, evaluated at quadrature points.

``N = dnf.ml_operator(net, operands=(u, ufl.grad(u)), quadrature_degree=2)`` is a UFL node
(a ``ufl.ExternalOperator``) usable in residuals and functionals. Before a form is compiled,
deepnum-fem replaces it by its *linearisation at the current state*

    N ≈ N0 + Σ_j D_j : (q_j - Q0_j),

where ``q_j`` are the operands (UFL expressions), ``Q0_j`` their values at the quadrature
points, ``N0 = net(Q0)`` and ``D_j = ∂N/∂q_j`` (by autograd), all stored in
quadrature-space Functions. At the state where the data were computed the node's value is
exactly ``N0``, and UFL's derivative of it is the consistent ``D_j ∂q_j/∂u`` (Newton) or
``D_j ∂q_j/∂m`` (adjoint, for controls inside operands). Gradients for the network weights
come from one vector-Jacobian product with the adjoint-weighted cotangent per point.

Memory per quadrature point (float64): operands ``n_in``, values ``n_out``, Jacobian
``n_out * n_in`` entries — nothing global and dense.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from mpi4py import MPI

import basix.ufl
import dolfinx.fem
import dolfinx.mesh
import numpy as np
import torch
import ufl

from deepnum_fem.errors import NonFiniteError, ShapeError
from deepnum_fem.fem.external import MLOperator, find_ml_operators, lower
from deepnum_fem.parallel import broadcast_parameters, network_name, user_code

__all__ = ["MLModel", "MLOperator", "find_ml_operators", "lower", "ml_operator", "ml_parameter_gradients",
           "unique_parameters"]


_serials = itertools.count()

class MLModel:
    """A network, its operands and the quadrature data of its linearisation."""

    def __init__(self, net: torch.nn.Module, operands: Sequence, Q: dolfinx.fem.FunctionSpace, *,
                 device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
        self.net = net
        self.Q = Q
        # made in the same order on every rank: a rank-independent order for collective work
        # (memory addresses, and so id(), differ between ranks)
        self.serial = next(_serials)
        self.name = network_name(net)
        self.degree = Q.ufl_element().embedded_superdegree
        self.device = torch.device(device)
        params = list(net.parameters())
        self.dtype = dtype or (params[0].dtype if params else torch.float64)
        self.operands = [ufl.as_ufl(q) for q in operands]
        msh = Q.mesh
        self.comm = msh.comm
        self.value_shape = tuple(Q.ufl_element().reference_value_shape)
        self.n_out = int(np.prod(self.value_shape, dtype=int))
        cell = msh.basix_cell()

        # One space per shape, and the Functions of a space copies of its first, which share its
        # ghost-exchange plan: a new space costs an MPI communicator, a new plan two more on more
        # than one rank.
        self.N0 = dolfinx.fem.Function(Q, name="ml_value")
        default = basix.ufl.quadrature_element(cell, value_shape=self.value_shape, degree=self.degree)
        first = {self.value_shape: self.N0} if Q.ufl_element() == default else {}

        def function(shape: tuple[int, ...], name: str) -> dolfinx.fem.Function:
            if shape not in first:
                element = basix.ufl.quadrature_element(cell, value_shape=shape, degree=self.degree)
                first[shape] = dolfinx.fem.Function(dolfinx.fem.functionspace(msh, element), name=name)
                return first[shape]
            f = first[shape].copy()
            f.name = name
            f.x.array[:] = 0.0
            return f

        points = Q.element.interpolation_points
        self.Q0 = [function(q.ufl_shape, f"ml_operand{j}") for j, q in enumerate(self.operands)]
        self.D = [function(self.value_shape + q.ufl_shape, f"ml_jacobian{j}") for j, q in enumerate(self.operands)]
        self.expressions = [dolfinx.fem.Expression(q, points) for q in self.operands]
        self.sizes = [int(np.prod(q.ufl_shape, dtype=int)) for q in self.operands]
        self.n_in = sum(self.sizes)
        self.n_points = Q.dofmap.index_map.size_local
        broadcast_parameters(net, comm=self.comm)
        net.to(self.device)
        self._last: tuple[torch.Tensor, tuple] | None = None   # operands and weights last evaluated

    # -- symbolic ---------------------------------------------------------------------------
    def surrogate(self) -> ufl.core.expr.Expr:
        """``N0 + Σ_j D_j : (q_j - Q0_j)``, the node's linearisation at the stored state."""
        expr = self.N0
        out_idx = ufl.indices(len(self.value_shape))
        for q, Q0, D in zip(self.operands, self.Q0, self.D, strict=True):
            diff = q - Q0
            if q.ufl_shape:
                in_idx = ufl.indices(len(q.ufl_shape))
                term = D[(*out_idx, *in_idx)] * diff[in_idx]
                term = ufl.as_tensor(term, out_idx) if out_idx else term
            else:
                term = D * diff
            expr = expr + term
        return expr

    @property
    def data_functions(self) -> list[dolfinx.fem.Function]:
        return [self.N0, *self.Q0, *self.D]

    # -- evaluation -------------------------------------------------------------------------
    def operand_values(self) -> torch.Tensor:
        """Evaluate the operands at the quadrature points; the owned ones as (n_points, n_in)."""
        for expr, Q0 in zip(self.expressions, self.Q0, strict=True):
            Q0.interpolate(expr)
        return self._stored_operands()

    def _stored_operands(self) -> torch.Tensor:
        """The operand values last evaluated, owned points: float64 (n_points, n_in), a copy."""
        return torch.from_numpy(np.concatenate([
            Q0.x.array[: self.n_points * size].reshape(self.n_points, size)
            for Q0, size in zip(self.Q0, self.sizes, strict=True)], axis=1))

    def update(self, *, force: bool = False) -> None:
        """Evaluate operands, network and its Jacobian at every owned point; store them (collective).

        The network is skipped when the operands and the weights are those of the last
        evaluation (weights compared by storage and torch's in-place version counter), unless
        ``force``.
        """
        X = self.operand_values()
        signature = tuple((p.data_ptr(), p._version) for p in self.net.parameters())
        unchanged = self._last is not None and self._last[1] == signature and torch.equal(self._last[0], X)
        if not force and self.comm.allreduce(int(unchanged), op=MPI.MIN):
            return
        packed = np.zeros((0, self.n_out * (1 + self.n_in)))
        with user_code(f"ml_operator network {self.name} (values and Jacobian at the quadrature points)",
                       self.comm):
            x_dev = X.to(self.device, self.dtype)                   # one host -> device transfer
            if self.n_points:
                self._check_batch_shape(x_dev)

                val, jac = self._values_and_jacobians(x_dev)
                packed = torch.cat([val.reshape(self.n_points, -1), jac.reshape(self.n_points, -1)], dim=1)
                packed = packed.detach().to("cpu", torch.float64).numpy()   # one device -> host transfer
            if not np.all(np.isfinite(packed)):
                raise NonFiniteError(f"ml_operator: the network returned NaN/Inf at "
                                     f"{int((~np.isfinite(packed)).any(axis=1).sum())} quadrature point(s) "
                                     "on this rank (values or Jacobian)")
        self._store(packed)
        self._last = (X, signature)

    def _values_and_jacobians(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``N(x_p)`` and ``∂N/∂q (x_p)`` at every point: one batched forward and one backward
        per output component (the network acts on each point alone, so the gradient of the
        sum over points of an output is that output's per-point gradient).

        Plain autograd, inside identity saved-tensor hooks: it also runs inside a rollout
        block that ``torch.utils.checkpoint`` records (whose hooks must not see this graph,
        and under which ``torch.func`` transforms refuse to run).
        """
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
            x = x.detach().requires_grad_(True)
            y = self.net(x).reshape(self.n_points, self.n_out)
            rows = []
            for i in range(self.n_out):
                (g,) = torch.autograd.grad(y[:, i].sum(), x, retain_graph=i + 1 < self.n_out, allow_unused=True)
                rows.append(torch.zeros_like(x) if g is None else g)
        return y.detach(), torch.stack(rows, dim=1).detach()

    def _check_batch_shape(self, x: torch.Tensor) -> None:
        with torch.no_grad():
            y = self.net(x[:1])
        if y.shape[0] != 1 or y[0].numel() != self.n_out:
            raise ShapeError(f"ml_operator: for input of shape (n_points, {self.n_in}) the network must return "
                             f"(n_points, *{self.value_shape}); for 1 point it returned {tuple(y.shape)}")

    def _store(self, packed: np.ndarray) -> None:
        n = self.n_points
        self.N0.x.array[: n * self.n_out] = packed[:, : self.n_out].reshape(-1)
        jac = packed[:, self.n_out:].reshape(n, self.n_out, self.n_in)
        start = 0
        for D, size in zip(self.D, self.sizes, strict=True):
            D.x.array[: n * self.n_out * size] = jac[:, :, start:start + size].reshape(-1)
            start += size
        for fn in self.data_functions:
            fn.x.scatter_forward()

    def parameter_vjp(self, w: np.ndarray) -> list[torch.Tensor | None]:
        """``Σ_p w_p · ∂N_p/∂θ`` for each parameter, at the operands stored by :meth:`update`.

        ``w`` holds one weight per owned point and output component (the owned entries of
        an assembled vector over the quadrature space).
        """
        params = list(self.net.parameters())
        if not params:
            return []
        X = self._stored_operands().to(self.device, self.dtype)
        weights = torch.from_numpy(w.reshape(self.n_points, self.n_out)).to(self.device, self.dtype)
        with torch.enable_grad():
            y = self.net(X).reshape(self.n_points, self.n_out)
            grads = torch.autograd.grad(y, params, grad_outputs=weights, allow_unused=True)
        return list(grads)


def ml_operator(net: torch.nn.Module, operands: Sequence, function_space: dolfinx.fem.FunctionSpace | None = None,
                *, quadrature_degree: int | None = None, value_shape: tuple[int, ...] = (),
                device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> MLOperator:
    """A torch network ``N = net(operands)`` at quadrature points, as a UFL expression.

    Args:
        net: ``torch.nn.Module`` mapping a tensor ``(n_points, n_in)`` — the operands'
            components concatenated in order (a vector ``grad(u)`` gives 2 or 3 columns) — to
            ``(n_points, *value_shape)``, acting on each point alone (no batch statistics).
            Its parameters are broadcast from rank 0.
        operands: UFL expressions evaluable at quadrature points (``u``, ``grad(u)``,
            ``SpatialCoordinate``, other Functions, Constants), of rank 0, 1 or 2.
        function_space: A quadrature space for the output; or give ``quadrature_degree``
            (and ``value_shape``) and it is made. Its degree is the quadrature degree of every
            integral that contains ``N``.
        device: Where the network runs (``"cpu"``, ``"cuda"``); operands move there in one
            transfer per evaluation, results back in one.
        dtype: The network's dtype (default: that of its parameters); values are cast at the
            boundary, the FEM side stays float64.

    Returns:
        The UFL node; use it in forms given to :func:`dnf.fem_operator` and
        :func:`dnf.functional`, which evaluate it and send gradients to ``net``.
    """
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"ml_operator needs a torch.nn.Module, got {type(net).__name__}")
    operands = tuple(ufl.as_ufl(q) for q in operands)
    if not operands:
        raise ValueError("ml_operator needs at least one operand")
    for j, q in enumerate(operands):
        if len(q.ufl_shape) > 2:
            raise ShapeError(f"ml_operator: operand {j} has rank {len(q.ufl_shape)} (shape {q.ufl_shape}); "
                             "operands must be scalars, vectors or matrices")
        if ufl.algorithms.extract_arguments(q):
            raise ValueError(f"ml_operator: operand {j} contains a test or trial function; operands are "
                             "coefficients and expressions of them")
    domains = list({d for q in operands for d in ufl.domain.extract_domains(q)})
    if function_space is None:
        if quadrature_degree is None or not domains:
            raise ValueError("ml_operator needs function_space= (a quadrature space), or quadrature_degree= "
                             "with an operand that lives on a mesh")
        msh = dolfinx.mesh.Mesh(domains[0].ufl_cargo(), domains[0])
        function_space = dolfinx.fem.functionspace(msh, basix.ufl.quadrature_element(
            msh.basix_cell(), value_shape=tuple(value_shape), degree=quadrature_degree))
    if not _is_quadrature(function_space.ufl_element()):
        raise ValueError(f"ml_operator needs a quadrature space (basix.ufl.quadrature_element), got "
                         f"{function_space.ufl_element()}")
    model = MLModel(net, operands, function_space, device=device, dtype=dtype)
    return MLOperator(*operands, function_space=function_space, model=model)


def _is_quadrature(element) -> bool:
    if type(element).__name__ == "_QuadratureElement":
        return True
    sub = getattr(element, "_sub_element", None)   # blocked (vector/tensor) quadrature element
    return sub is not None and _is_quadrature(sub)


def unique_parameters(models: Sequence[MLModel]) -> list[torch.nn.Parameter]:
    """The parameters of the models' networks, each once (a network in several nodes shares them), in order."""
    seen: dict[int, torch.nn.Parameter] = {}
    for m in models:
        for p in m.net.parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


def ml_parameter_gradients(models: Sequence[MLModel], cotangents: Sequence, params: Sequence[torch.Tensor],
                           *, scale: float) -> list[torch.Tensor | None]:
    """``scale * VJP(net, w)`` summed over models, for each of ``params``.

    ``cotangents[i].assemble()`` gives the owned per-point weights ``w`` of model ``i`` (an
    assembled vector over its quadrature space).
    """
    totals: dict[int, torch.Tensor] = {}
    for model, cot in zip(models, cotangents, strict=True):
        w = scale * cot.assemble()
        vjp: list[torch.Tensor | None] = []
        with user_code(f"ml_operator network {model.name} (gradient of its weights)", model.comm):
            vjp = model.parameter_vjp(w)
        for p, g in zip(model.net.parameters(), vjp, strict=True):
            if g is not None:
                totals[id(p)] = totals[id(p)] + g if id(p) in totals else g
    return [totals.get(id(p)) for p in params]


class ParameterGradients:
    """Gradients of network weights summed over the samples of a backward pass: ``add`` once per
    sample, ``outputs`` for autograd (each on its weight's device and dtype)."""

    def __init__(self, params: Sequence[torch.Tensor]):
        self.params = list(params)
        self.total: list[torch.Tensor | None] = [None] * len(self.params)

    def add(self, models: Sequence[MLModel], cotangents: Sequence, *, scale: float) -> None:
        """Add ``scale * VJP`` of every model's network (see :func:`ml_parameter_gradients`)."""
        for i, g in enumerate(ml_parameter_gradients(models, cotangents, self.params, scale=scale)):
            if g is not None:
                self.total[i] = g if self.total[i] is None else self.total[i] + g

    def outputs(self) -> list[torch.Tensor | None]:
        return [None if g is None else g.to(device=p.device, dtype=p.dtype)
                for p, g in zip(self.params, self.total, strict=True)]
