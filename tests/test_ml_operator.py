"""ml_operator: networks in UFL forms — exact closures, Newton, adjoint gradients, training, bad input."""

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


class Cubic(torch.nn.Module):
    """N(u) = u^3 - u, exactly."""

    def forward(self, x):
        return x[:, 0] ** 3 - x[:, 0]


class Diffusivity(torch.nn.Module):
    """q(u, grad u) = (1 + u^2) grad u, exactly (a vector per point)."""

    def forward(self, x):
        return (1 + x[:, :1] ** 2) * x[:, 1:]


def mlp(n_in=1, width=16, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(n_in, width), torch.nn.Tanh(),
                               torch.nn.Linear(width, 1)).to(dtype)


class Setup:
    def __init__(self, comm=COMM, n=12):
        self.msh = dolfinx.mesh.create_unit_square(comm, n, n)
        self.V = V = fem.functionspace(self.msh, ("Lagrange", 1))
        self.u, self.v, self.f = fem.Function(V), ufl.TestFunction(V), fem.Function(V, name="f")
        tdim = self.msh.topology.dim
        self.msh.topology.create_connectivity(tdim - 1, tdim)
        self.bc = fem.dirichletbc(0.0, fem.locate_dofs_topological(
            V, tdim - 1, dolfinx.mesh.exterior_facet_indices(self.msh.topology)), V)
        xy = V.tabulate_dof_coordinates()[: V.dofmap.index_map.size_local]
        self.xy = xy
        self.f0 = torch.tensor(20 * np.sin(3 * xy[:, 0]) * xy[:, 1] + 10)
        self.J = dnf.functional(self.u**2 * ufl.dx, inputs=[self.u])

    def rand(self, seed=0):
        g = torch.Generator().manual_seed(100 * seed + COMM.rank)
        return torch.rand(self.f0.shape, generator=g, dtype=torch.float64)


@pytest.fixture(scope="module")
def s():
    return Setup()


def test_exact_closures_match_ufl(s):
    u, v, f = s.u, s.v, s.f
    N = dnf.ml_operator(Cubic(), operands=(u,), quadrature_degree=4)
    K = dnf.ml_operator(Diffusivity(), operands=(u, ufl.grad(u)), quadrature_degree=4, value_shape=(2,))
    F_ml = ufl.inner(K, ufl.grad(v)) * ufl.dx + N * v * ufl.dx - f * v * ufl.dx
    F_ufl = (ufl.inner((1 + u**2) * ufl.grad(u), ufl.grad(v)) + (u**3 - u) * v - f * v) * ufl.dx
    op_ml = dnf.fem_operator(F_ml, u, controls=[f], bcs=[s.bc], initial_guess="zero")
    op_ufl = dnf.fem_operator(F_ufl, u, controls=[f], bcs=[s.bc], initial_guess="zero")
    assert not op_ml.linear
    u_ml = op_ml(s.f0)
    its_ml = op_ml.problem.solver.getIterationNumber()
    u_ufl = op_ufl(s.f0)
    assert float(dnf.parallel.sum((u_ml - u_ufl).abs().max())) < 1e-10
    assert float(dnf.parallel.sum(u_ml.abs().max())) > 0.5          # a genuinely nonlinear regime
    assert its_ml == op_ufl.problem.solver.getIterationNumber()
    # two ml_operators in one residual: gradients w.r.t. the source
    rates = dnf.taylor_test(lambda m: s.J(op_ml(m)), s.f0, s.rand())
    assert min(rates) > 1.9, rates


def test_newton_converges_quadratically(s):
    u, v, f = s.u, s.v, s.f
    N = dnf.ml_operator(Cubic(), operands=(u,), quadrature_degree=2)
    op = dnf.fem_operator((ufl.inner(ufl.grad(u), ufl.grad(v)) + N * v - f * v) * ufl.dx, u, controls=[f],
                          bcs=[s.bc], initial_guess="zero",
                          petsc_options={"snes_rtol": 1e-14, "snes_atol": 1e-13})
    snes = op.problem.solver
    snes.setConvergenceHistory()
    op(3 * s.f0)
    r = snes.getConvergenceHistory()[0]
    assert 3 <= len(r) <= 8, r
    # quadratic: once in the asymptotic range, r_{k+1} <= C r_k^2
    ratios = [r[k + 1] / r[k] ** 2 for k in range(len(r) - 1) if r[k] < 1e-1 * r[0] and r[k + 1] > 1e-13]
    assert ratios and max(ratios) < 10 / r[0], (r, ratios)


def test_parameter_and_source_gradients_through_newton(s):
    u, v, f = s.u, s.v, s.f
    net = mlp()
    M = dnf.ml_operator(net, operands=(u,), quadrature_degree=2)
    op = dnf.fem_operator((ufl.inner(ufl.grad(u), ufl.grad(v)) + M * v - f * v) * ufl.dx, u,
                          controls=[f], bcs=[s.bc])
    assert not op.linear
    rates = dnf.taylor_test_parameters(lambda: s.J(op(s.f0)), net)
    assert min(rates) > 1.9, rates
    rates = dnf.taylor_test(lambda m: s.J(op(m)), s.f0, s.rand(1))
    assert min(rates) > 1.9, rates
    # the same network in the residual and in the loss
    loss = dnf.functional(M**2 * ufl.dx + u**2 * ufl.dx, inputs=[u])
    rates = dnf.taylor_test_parameters(lambda: loss(op(s.f0)), net)
    assert min(rates) > 1.9, rates


def test_operand_depending_on_a_control(s):
    """N(u, k) with k a control: the gradient flows to k through dN/dk."""
    u, v, f = s.u, s.v, s.f
    k = fem.Function(s.V, name="k")
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    N = dnf.ml_operator(net, operands=(u, k), quadrature_degree=2)
    op = dnf.fem_operator((ufl.inner(ufl.grad(u), ufl.grad(v)) + N * v - f * v) * ufl.dx, u,
                          controls=[f, k], bcs=[s.bc])
    k0 = torch.tensor(s.xy[:, 0] + 0.5)
    rates = dnf.taylor_test(lambda m: s.J(op(s.f0, m)), k0, s.rand(2))
    assert min(rates) > 1.9, rates


def test_source_network_of_coordinates_keeps_the_problem_linear(s):
    u, v, f = s.u, s.v, s.f
    net = mlp(n_in=2)
    S = dnf.ml_operator(net, operands=(ufl.SpatialCoordinate(s.msh),), quadrature_degree=2)
    op = dnf.fem_operator((ufl.inner(ufl.grad(u), ufl.grad(v)) - 10 * S * v - f * v) * ufl.dx, u,
                          controls=[f], bcs=[s.bc])
    assert op.linear and op.problem.shares_factorisation
    rates = dnf.taylor_test_parameters(lambda: s.J(op(s.f0)), net)
    assert min(rates) > 1.9, rates


def test_float32_network_is_cast_at_the_boundary(s):
    u, v, f = s.u, s.v, s.f
    results = []
    for dtype in (torch.float64, torch.float32):
        net = mlp(dtype=dtype)
        M = dnf.ml_operator(net, operands=(u,), quadrature_degree=2)
        assert M.model.dtype == dtype
        op = dnf.fem_operator((ufl.inner(ufl.grad(u), ufl.grad(v)) + M * v - f * v) * ufl.dx, u,
                              controls=[f], bcs=[s.bc], initial_guess="zero")
        results.append(op(s.f0))
        assert results[-1].dtype == torch.float64
    assert float(dnf.parallel.sum((results[0] - results[1]).abs().max().detach())) < 1e-5


def test_one_rank_equals_all_ranks():
    out = {}
    for name, comm in (("self", MPI.COMM_SELF), ("world", COMM)):
        st = Setup(comm=comm, n=8)
        net = mlp(seed=3)
        M = dnf.ml_operator(net, operands=(st.u,), quadrature_degree=2)
        op = dnf.fem_operator((ufl.inner(ufl.grad(st.u), ufl.grad(st.v)) + M * st.v - st.f * st.v) * ufl.dx,
                              st.u, controls=[st.f], bcs=[st.bc])
        loss = st.J(op(st.f0))
        loss.backward()
        dnf.parallel.allreduce_gradients(net, comm=comm)
        out[name] = (loss.item(), torch.cat([p.grad.reshape(-1) for p in net.parameters()]))
    assert out["world"][0] == pytest.approx(out["self"][0], rel=1e-10)
    torch.testing.assert_close(out["world"][1], out["self"][1], rtol=1e-8, atol=1e-12)


def test_wrong_output_shape_raises_on_all_ranks(s):
    class Wide(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x, x], dim=1)

    N = dnf.ml_operator(Wide(), operands=(s.u,), quadrature_degree=2)
    op = dnf.fem_operator((ufl.inner(ufl.grad(s.u), ufl.grad(s.v)) + N * s.v - s.f * s.v) * ufl.dx, s.u,
                          controls=[s.f], bcs=[s.bc])
    with pytest.raises(dnf.ShapeError, match=r"must return \(n_points, \*\(\)\)"):
        op(s.f0)


def test_nan_from_the_network_raises_on_all_ranks(s):
    class Poisoned(torch.nn.Module):
        def forward(self, x):
            bad = torch.zeros_like(x[:, 0])
            if COMM.rank == COMM.size - 1:
                bad = bad + torch.where(x[:, 0] > 0.1, float("nan"), 0.0)
            return x[:, 0] + bad

    N = dnf.ml_operator(Poisoned(), operands=(s.u,), quadrature_degree=2)
    op = dnf.fem_operator((ufl.inner(ufl.grad(s.u), ufl.grad(s.v)) + N * s.v - s.f * s.v) * ufl.dx, s.u,
                          controls=[s.f], bcs=[s.bc])
    with pytest.raises(dnf.NonFiniteError, match="NaN/Inf"):
        op(s.f0)


def test_bad_operands_and_spaces(s):
    with pytest.raises(dnf.ShapeError, match="rank 3"):
        dnf.ml_operator(Cubic(), operands=(ufl.grad(ufl.grad(ufl.grad(s.u))),), quadrature_degree=2)
    with pytest.raises(ValueError, match="test or trial function"):
        dnf.ml_operator(Cubic(), operands=(s.v,), quadrature_degree=2)
    with pytest.raises(ValueError, match="quadrature space"):
        dnf.ml_operator(Cubic(), operands=(s.u,), function_space=s.V)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        dnf.ml_operator(lambda x: x, operands=(s.u,), quadrature_degree=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_network_matches_cpu(s):
    u, v, f = s.u, s.v, s.f
    res = []
    for device in ("cpu", "cuda"):
        net = mlp()
        M = dnf.ml_operator(net, operands=(u,), quadrature_degree=2, device=device)
        op = dnf.fem_operator((ufl.inner(ufl.grad(u), ufl.grad(v)) + M * v - f * v) * ufl.dx, u,
                              controls=[f], bcs=[s.bc], initial_guess="zero")
        fd = s.f0.clone().requires_grad_()
        s.J(op(fd)).backward()
        res.append((op(s.f0), fd.grad, [p.grad.cpu() for p in net.parameters()]))
    torch.testing.assert_close(res[0][0], res[1][0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(res[0][1], res[1][1], rtol=1e-8, atol=1e-12)


class ClosureLearning:
    """-0.05 Δu + N(u) = f_i for three sources; the truth is N*(u) = u^3 + u."""

    def __init__(self, comm, n=10, seed=0):
        st = Setup(comm=comm, n=n)
        self.st, self.comm = st, comm
        u, v, f = st.u, st.v, st.f
        xy = st.xy
        self.fs = torch.stack([torch.tensor(a * np.sin(np.pi * xy[:, 0]) * np.sin(np.pi * xy[:, 1]) + b)
                               for a, b in [(8, 0), (-6, 3), (10, -4)]])

        class Truth(torch.nn.Module):
            def forward(self, x):
                return x[:, 0] ** 3 + x[:, 0]

        def residual(N):
            return (0.05 * ufl.inner(ufl.grad(u), ufl.grad(v)) + N * v - f * v) * ufl.dx

        truth = dnf.ml_operator(Truth(), operands=(u,), quadrature_degree=2)
        with torch.no_grad():
            self.U = dnf.fem_operator(residual(truth), u, controls=[f], bcs=[st.bc])(self.fs)
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16),
                                       torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
        N = dnf.ml_operator(self.net, operands=(u,), quadrature_degree=2)
        self.op = dnf.fem_operator(residual(N), u, controls=[f], bcs=[st.bc])
        self.count = comm.allreduce(self.U.numel())

    def loss(self):
        return dnf.parallel.sum(((self.op(self.fs) - self.U) ** 2).sum(), self.comm) / self.count

    def closure_error(self) -> float:
        """Relative L2 error of N_theta against N* over the observed states."""
        with torch.no_grad():
            x = self.U.reshape(-1, 1)
            true = x[:, 0] ** 3 + x[:, 0]
            err = dnf.parallel.sum(((self.net(x)[:, 0] - true) ** 2).sum(), self.comm)
            ref = dnf.parallel.sum((true**2).sum(), self.comm)
        return float((err / ref).sqrt())


def test_learning_a_closure_recovers_it():
    case = ClosureLearning(COMM)
    opt = torch.optim.LBFGS(case.net.parameters(), lr=1, max_iter=20, history_size=20,
                            line_search_fn="strong_wolfe")
    history = []

    def closure():
        opt.zero_grad()
        loss = case.loss()
        loss.backward()
        dnf.parallel.allreduce_gradients(case.net)
        history.append(loss.item())
        return loss

    for _ in range(8):
        opt.step(closure)
    assert history[0] / min(history) >= 100, history
    assert case.closure_error() < 5e-2


def test_training_history_on_one_rank_equals_all_ranks():
    histories = {}
    for name, comm in (("self", MPI.COMM_SELF), ("world", COMM)):
        case = ClosureLearning(comm, n=8, seed=1)
        opt = torch.optim.Adam(case.net.parameters(), lr=1e-2)
        histories[name] = []
        for _ in range(5):
            opt.zero_grad()
            loss = case.loss()
            loss.backward()
            dnf.parallel.allreduce_gradients(case.net, comm=comm)
            opt.step()
            histories[name].append(loss.item())
    np.testing.assert_allclose(histories["world"], histories["self"], rtol=1e-6)


def test_coordinates_and_a_time_constant_as_operands(s):
    """A source S_theta(x, t): the Constant t is an operand; its tensor-valued output works too."""
    u, v, f = s.u, s.v, s.f
    t = fem.Constant(s.msh, 0.3)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4)).double()
    S = dnf.ml_operator(net, operands=(ufl.SpatialCoordinate(s.msh), t), quadrature_degree=2, value_shape=(2, 2))
    F = (ufl.inner(ufl.grad(u), ufl.grad(v)) - ufl.inner(S * ufl.grad(u), ufl.grad(v))
         - (ufl.tr(S) + f) * v) * ufl.dx
    op = dnf.fem_operator(F, u, controls=[f, t], bcs=[s.bc])
    assert op.linear
    t0 = torch.tensor(0.3, dtype=torch.float64)
    rates = dnf.taylor_test_parameters(lambda: s.J(op(s.f0, t0)), net, h0=1e-3)
    assert min(rates) > 1.9, rates
    rates = dnf.taylor_test(lambda m: s.J(op(s.f0, m)), t0, torch.tensor(1.0, dtype=torch.float64))
    assert min(rates) > 1.9, rates
