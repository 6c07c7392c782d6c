"""Bad input to fem_operator / functional: clear deepnum_fem errors, raised on every rank."""

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

COMM = MPI.COMM_WORLD
LAST = COMM.size - 1


@pytest.fixture(scope="module")
def setup():
    msh = dolfinx.mesh.create_unit_square(COMM, 6, 6)
    V = fem.functionspace(msh, ("Lagrange", 1))
    u, v, f = fem.Function(V), ufl.TestFunction(V), fem.Function(V)
    c = fem.Constant(msh, 1.0)
    tdim = msh.topology.dim
    msh.topology.create_connectivity(tdim - 1, tdim)
    bc = fem.dirichletbc(0.0, fem.locate_dofs_topological(
        V, tdim - 1, dolfinx.mesh.exterior_facet_indices(msh.topology)), V)
    F = c * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx - f * v * ufl.dx
    op = dnf.fem_operator(F, u, controls=[f, c], bcs=[bc])
    n = dnf.to_torch(f).numel()
    return dict(msh=msh, V=V, u=u, v=v, f=f, c=c, bc=bc, F=F, op=op, n=n,
                c0=torch.tensor(1.0, dtype=torch.float64))


def _only_last_rank(good, bad):
    return bad if COMM.rank == LAST else good


def test_wrong_shape_on_one_rank(setup):
    s = setup
    f = torch.ones(_only_last_rank(s["n"], s["n"] + 2), dtype=torch.float64)
    with pytest.raises(dnf.ShapeError, match=r"must have shape|\[rank"):
        s["op"](f, s["c0"])
    with pytest.raises(dnf.ShapeError, match=rf"must have shape \({s['n']},\) or \(batch"):
        s["op"](torch.ones(s["n"], 3, dtype=torch.float64), s["c0"])


def test_wrong_dtype(setup):
    s = setup
    with pytest.raises(dnf.DTypeError, match="got dtype torch.int64"):
        s["op"](torch.ones(s["n"], dtype=torch.int64), s["c0"])


def test_mixed_devices(setup):
    s = setup
    with pytest.raises(dnf.DeviceError, match="'meta' device"):
        s["op"](torch.ones(s["n"], dtype=torch.float64), s["c0"].to("meta"))
    if torch.cuda.is_available():
        with pytest.raises(dnf.DeviceError, match="one device"):
            s["op"](torch.ones(s["n"], dtype=torch.float64), s["c0"].to("cuda"))


def test_wrong_number_of_tensors(setup):
    with pytest.raises(TypeError, match=r"takes 2 tensor\(s\)"):
        setup["op"](torch.ones(setup["n"], dtype=torch.float64))


def test_nan_in_a_control_on_one_rank(setup):
    s = setup
    f = torch.ones(s["n"], dtype=torch.float64)
    if COMM.rank == LAST:
        f[0] = float("nan")
    with pytest.raises(dnf.NonFiniteError, match=r"NaN/Inf"):
        s["op"](f, s["c0"])


def test_constant_differing_between_ranks(setup):
    s = setup
    c = torch.tensor(1.0 + COMM.rank, dtype=torch.float64)
    if COMM.size == 1:
        pytest.skip("needs two ranks")  # covered under mpirun -n 2 by ./dnf test
    with pytest.raises(ValueError, match="differs between ranks"):
        s["op"](torch.ones(s["n"], dtype=torch.float64), c)


def test_control_not_in_form(setup):
    s = setup
    other = fem.Function(s["V"])
    with pytest.raises(dnf.DeepnumFemError, match="does not appear in the residual"):
        dnf.fem_operator(s["F"], s["u"], controls=[other], bcs=[s["bc"]])
    with pytest.raises(ValueError, match="does not appear in the form"):
        dnf.functional(s["u"] ** 2 * ufl.dx, inputs=[other])
    with pytest.raises(ValueError, match="scalar form"):
        dnf.functional(s["u"] * s["v"] * ufl.dx, inputs=[s["u"]])


def test_boundary_value_control_is_refused(setup):
    s = setup
    g = fem.Function(s["V"])
    bc = fem.dirichletbc(g, s["bc"].dof_indices()[0][: s["bc"].dof_indices()[1]])
    with pytest.raises(dnf.DeepnumFemError, match="value of a Dirichlet condition"):
        dnf.fem_operator(s["F"], s["u"], controls=[g], bcs=[bc])


def test_ksp_failure_is_reported_everywhere(setup):
    s = setup
    op = dnf.fem_operator(s["F"], s["u"], controls=[s["f"]], bcs=[s["bc"]],
                          petsc_options={"ksp_type": "cg", "pc_type": "none", "ksp_max_it": 2,
                                         "ksp_rtol": 1e-14})
    with pytest.raises(dnf.SolverError, match=r"forward linear solve .* DIVERGED_MAX_IT .* after 2 iterations"):
        op(torch.ones(s["n"], dtype=torch.float64))


def test_newton_divergence_is_reported_everywhere(setup):
    s = setup
    u, v, f = s["u"], s["v"], s["f"]
    F = ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx + ufl.exp(u) * v * ufl.dx - f * v * ufl.dx
    op = dnf.fem_operator(F, u, controls=[f], bcs=[s["bc"]],
                          petsc_options={"snes_max_it": 1, "snes_rtol": 1e-14, "snes_atol": 1e-14})
    assert not op.linear
    with pytest.raises(dnf.SolverError, match=r"Newton solve .* did not converge: SNES reason DIVERGED_MAX_IT"):
        op(-50 * torch.ones(s["n"], dtype=torch.float64))
    # the failure leaves no poisoned state: a reasonable problem then solves
    op_ok = dnf.fem_operator(F, u, controls=[f], bcs=[s["bc"]])
    assert torch.isfinite(op_ok(torch.ones(s["n"], dtype=torch.float64))).all()


def test_nan_cotangent(setup):
    s = setup
    f = torch.ones(s["n"], dtype=torch.float64, requires_grad=True)
    u = s["op"](f, s["c0"])
    w = torch.ones_like(u)
    if COMM.rank == LAST:
        w[0] = float("nan")
    with pytest.raises(dnf.NonFiniteError, match="incoming gradient"):
        dnf.parallel.sum((u * w).sum()).backward()


def test_parallel_sum_shape_mismatch():
    if COMM.size == 1:
        pytest.skip("needs two ranks")  # covered under mpirun -n 2 by ./dnf test
    x = torch.zeros(_only_last_rank(2, 3))
    with pytest.raises(dnf.DeepnumFemError, match="same shape on every rank"):
        dnf.parallel.sum(x)


def test_parallel_helpers_agree_across_ranks():
    net = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(COMM.rank)
    if COMM.size > 1:
        with pytest.raises(dnf.DeepnumFemError, match="differs between ranks"):
            dnf.parallel.check_parameters_identical(net)
    dnf.parallel.broadcast_parameters(net)
    dnf.parallel.check_parameters_identical(net)
    x = torch.ones(4, 3, dtype=torch.float64) * (COMM.rank + 1)
    loss = dnf.parallel.sum(net(x).sum())
    loss.backward()
    dnf.parallel.allreduce_gradients(net)
    # d/dW of sum over ranks r of sum(W x_r + b): every entry of W sees 4 * sum_r (r + 1)
    expected = 4 * sum(r + 1 for r in range(COMM.size))
    torch.testing.assert_close(net.weight.grad, torch.full((2, 3), float(expected), dtype=torch.float64))
    assert loss.item() == pytest.approx(COMM.allreduce(float(net(x).sum().detach())))
    total = dnf.parallel.mean(torch.arange(COMM.rank + 1, dtype=torch.float64))
    values = np.concatenate([np.arange(r + 1) for r in range(COMM.size)])
    assert total.item() == pytest.approx(values.mean())


def test_broadcast_parameters_of_modules_that_differ_between_ranks():
    """A buffer whose size depends on the rank (rank-local data) fails on every rank, not hangs."""
    if COMM.size == 1:
        pytest.skip("needs two ranks")  # covered under mpirun -n 2 by ./dnf test
    net = torch.nn.Linear(3, 2)
    net.register_buffer("local_nodes", torch.zeros(5 + COMM.rank))
    with pytest.raises(dnf.ShapeError, match="rank-local data must not be a parameter or buffer"):
        dnf.parallel.broadcast_parameters(net)
