"""A failure on one rank stops every rank: user code that raises, requires_grad that differs,
ops called out of step. Each test has a timeout, so a hang fails instead of blocking the suite."""

from __future__ import annotations

from mpi4py import MPI

import dolfinx
import dolfinx.fem as fem
import dolfinx.mesh
import numpy as np
import pytest
import torch
import ufl

import deepnum_fem as dnf
from deepnum_fem.errors import NetworkError

COMM = MPI.COMM_WORLD
LAST = COMM.size - 1
pytestmark = pytest.mark.timeout(120)


class FailsOnLastRank(torch.nn.Module):
    """A small network that raises RuntimeError on the last rank once ``armed``."""

    def __init__(self, when: str = "forward"):
        super().__init__()
        self.lin = torch.nn.Linear(1, 1).double()
        self.armed = False
        self.when = when

    def forward(self, x):
        if self.armed and COMM.rank == LAST and self.when == "forward":
            raise RuntimeError("boom in the network")
        y = self.lin(x)
        if self.armed and COMM.rank == LAST and self.when == "backward":
            y = _RaiseInBackward.apply(y)
        return y[:, 0]


class _RaiseInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y):
        return y.clone()

    @staticmethod
    def backward(ctx, g):
        raise ValueError("boom in the weights' backward")


@pytest.fixture(scope="module")
def poisson():
    msh = dolfinx.mesh.create_unit_square(COMM, 8, 8)
    V = fem.functionspace(msh, ("Lagrange", 1))
    u, v = fem.Function(V), ufl.TestFunction(V)
    f = fem.Function(V, name="f")
    msh.topology.create_connectivity(1, 2)
    bc = fem.dirichletbc(0.0, fem.locate_dofs_topological(V, 1, dolfinx.mesh.exterior_facet_indices(msh.topology)), V)
    return msh, V, u, v, f, bc


def _expect_everywhere(error, *words):
    for w in words:
        assert w in str(error.value), f"{w!r} not in {error.value}"


@pytest.mark.parametrize("linear", [True, False], ids=["linear", "newton"])
def test_network_raising_on_one_rank_raises_on_all(poisson, linear):
    msh, V, u, v, f, bc = poisson
    net = FailsOnLastRank()
    # linear: the network depends on x only; Newton: on u
    operand = ufl.SpatialCoordinate(msh)[0] if linear else u
    N = dnf.ml_operator(net, operands=(operand,), quadrature_degree=2)
    F = ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx + N * v * ufl.dx - f * v * ufl.dx
    op = dnf.fem_operator(F, u, controls=[f], bcs=[bc])
    assert op.linear == linear
    m = torch.ones(V.dofmap.index_map.size_local, dtype=torch.float64)
    op(m)
    net.armed = True
    with torch.no_grad():
        net.lin.bias += 1.0    # new weights: the network runs again
    with pytest.raises(NetworkError) as e:
        op(m)
    _expect_everywhere(e, "RuntimeError", "boom in the network", "FailsOnLastRank")
    if COMM.rank != LAST:
        assert f"[rank {LAST}]" in str(e.value)
    else:
        assert isinstance(e.value.__cause__, RuntimeError)
    op.destroy()


def test_network_raising_in_its_weight_backward_on_one_rank(poisson):
    msh, V, u, v, f, bc = poisson
    net = FailsOnLastRank(when="backward")
    N = dnf.ml_operator(net, operands=(ufl.SpatialCoordinate(msh)[0],), quadrature_degree=2)
    F = ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx + N * v * ufl.dx - f * v * ufl.dx
    op = dnf.fem_operator(F, u, controls=[f], bcs=[bc])
    J = dnf.functional(u**2 * ufl.dx, inputs=[u])
    m = torch.ones(V.dofmap.index_map.size_local, dtype=torch.float64)
    loss = J(op(m))
    net.armed = True
    with pytest.raises(NetworkError) as e:
        loss.backward()
    _expect_everywhere(e, "ValueError", "boom in the weights' backward", "gradient of its weights")
    op.destroy()


@pytest.mark.parametrize("kind", ["function", "constant"])
def test_requires_grad_differing_between_ranks_is_refused(poisson, kind):
    msh, V, u, v, f, bc = poisson
    c = fem.Constant(msh, 1.0)
    control = f if kind == "function" else c
    F = c * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx - f * v * ufl.dx
    op = dnf.fem_operator(F, u, controls=[control], bcs=[bc])
    m = (torch.ones(V.dofmap.index_map.size_local, dtype=torch.float64) if kind == "function"
         else torch.tensor(1.0, dtype=torch.float64))
    m.requires_grad_(COMM.rank != LAST or COMM.size == 1)
    if COMM.size == 1:   # nothing can differ on one rank: the op runs and differentiates
        dnf.parallel.sum(op(m).sum()).backward()
        assert m.grad is not None
    else:
        with pytest.raises(dnf.DeepnumFemError, match="require grad differ between ranks"):
            op(m)
    op.destroy()


def test_parallel_sum_refuses_requires_grad_on_some_ranks_only():
    x = torch.ones(2, dtype=torch.float64, requires_grad=COMM.rank == 0)
    if COMM.size == 1:   # one rank cannot disagree with itself
        assert dnf.parallel.sum(x).requires_grad
        return
    with pytest.raises(dnf.DeepnumFemError, match="requires grad on rank"):
        dnf.parallel.sum(x)


def test_batch_of_size_zero_is_refused(poisson):
    msh, V, u, v, f, bc = poisson
    op = dnf.fem_operator(ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx - f * v * ufl.dx, u,
                          controls=[f], bcs=[bc])
    with pytest.raises(dnf.ShapeError, match="batch of size 0"):
        op(torch.ones((0, V.dofmap.index_map.size_local), dtype=torch.float64))
    op.destroy()


def test_collective_checks_catch_ops_called_out_of_step(poisson, monkeypatch):
    """With DNF_CHECK_COLLECTIVES=1, ranks at different ops raise (naming each rank's call)
    instead of hanging; without it the same program would deadlock on 2 ranks."""
    msh, V, u, v, f, bc = poisson
    monkeypatch.setenv("DNF_CHECK_COLLECTIVES", "1")
    a = dnf.fem_operator(ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx - f * v * ufl.dx, u,
                         controls=[f], bcs=[bc])
    J = dnf.functional(f**2 * ufl.dx, inputs=[f])
    m = torch.ones(V.dofmap.index_map.size_local, dtype=torch.float64)
    a(m)                                  # in step: passes the check
    J(m)
    if COMM.size == 1:
        return
    with pytest.raises(dnf.DeepnumFemError, match="not at the same collective call") as e:
        if COMM.rank == 0:
            a(m)
        else:
            J(m)
    assert "rank 0:" in str(e.value) and "rank 1:" in str(e.value)
    a.destroy()


def test_collective_checks_catch_a_requires_grad_pattern_in_backward(poisson, monkeypatch):
    monkeypatch.setenv("DNF_CHECK_COLLECTIVES", "1")
    msh, V, u, v, f, bc = poisson
    J = dnf.functional(f**2 * ufl.dx, inputs=[f])
    m = torch.ones(V.dofmap.index_map.size_local, dtype=torch.float64, requires_grad=True)
    j = J(m)
    j.backward()
    np.testing.assert_allclose(float(dnf.parallel.sum(m.grad.sum())), 2.0, rtol=1e-12)


def test_a_scalar_constant_given_as_shape_one_on_one_rank_only(poisson):
    """Shape (1,) is a batch of one; ranks that disagree on it are refused, not left to hang."""
    msh, V, u, v, f, bc = poisson
    c = fem.Constant(msh, 1.0)
    op = dnf.fem_operator(c * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx - v * ufl.dx, u,
                          controls=[c], bcs=[bc])
    batched = op(torch.tensor([2.0], dtype=torch.float64))
    assert batched.shape == (1, V.dofmap.index_map.size_local)
    if COMM.size > 1:
        value = torch.tensor([2.0] if COMM.rank == LAST else 2.0, dtype=torch.float64)
        with pytest.raises(dnf.ShapeError, match="disagree on the batch size"):
            op(value)
    op.destroy()
