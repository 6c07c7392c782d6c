"""fem_operator and functional: adjoint gradients (Taylor, gradcheck), 1 vs 2 ranks, batching."""

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


def _boundary_bc(V, value=0.0):
    msh = V.mesh
    tdim = msh.topology.dim
    msh.topology.create_connectivity(tdim - 1, tdim)
    facets = dolfinx.mesh.exterior_facet_indices(msh.topology)
    dofs = fem.locate_dofs_topological(V, tdim - 1, facets)
    if V.dofmap.index_map_bs > 1:
        zero = np.zeros(V.dofmap.index_map_bs)
        return fem.dirichletbc(zero, dofs, V)
    return fem.dirichletbc(value, dofs, V)


def _owned_coords(V):
    return V.tabulate_dof_coordinates()[: V.dofmap.index_map.size_local]


def _rand_like(t: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * seed + COMM.rank)
    return torch.rand(t.shape, generator=g, dtype=torch.float64)


class Poisson:
    """-div((1 + k^2) grad u) + c u = f on the unit square, u = 0 on the boundary."""

    def __init__(self, comm=COMM, n=10, degree=1, newton=False):
        self.msh = dolfinx.mesh.create_unit_square(comm, n, n)
        self.V = V = fem.functionspace(self.msh, ("Lagrange", degree))
        self.u, v = fem.Function(V), ufl.TestFunction(V)
        self.f, self.k = fem.Function(V, name="f"), fem.Function(V, name="k")
        self.c = fem.Constant(self.msh, 1.0)
        u, f, k, c = self.u, self.f, self.k, self.c
        coeff = (1 + u**2) if newton else (1 + k**2)
        F = coeff * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx + c * u * v * ufl.dx - f * v * ufl.dx
        if newton:
            F += k * u * v * ufl.dx
        self.op = dnf.fem_operator(F, u, controls=[self.f, self.k, self.c], bcs=[_boundary_bc(V)])
        self.d = fem.Function(V)
        self.d.interpolate(lambda x: x[0] * x[1])
        self.J = dnf.functional((u - self.d) ** 2 * ufl.dx + 1e-2 * k**2 * ufl.dx, inputs=[u, self.k])
        x = _owned_coords(V)
        self.f0 = torch.tensor(10 * np.sin(3 * x[:, 0]) * x[:, 1] + 5)
        self.k0 = torch.tensor(0.5 + x[:, 0])
        self.c0 = torch.tensor(1.5, dtype=torch.float64)

    def loss(self, f, k, c):
        return self.J(self.op(f, k, c), k)


@pytest.fixture(scope="module")
def poisson():
    return Poisson()


def test_linear_detection_and_fixed_operator(poisson):
    assert poisson.op.linear
    p = poisson.op.problem
    assert not p.shares_factorisation   # the operator depends on the control k
    V = poisson.V
    u, v, f = fem.Function(V), ufl.TestFunction(V), fem.Function(V)
    op = dnf.fem_operator(ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx - f * v * ufl.dx, u,
                          controls=[f], bcs=[_boundary_bc(V)])
    assert op.linear and op.problem.shares_factorisation and op.problem.symmetric is None
    op(poisson.f0)
    assert op.problem.symmetric is True


@pytest.mark.parametrize("which", ["f", "k", "c"])
def test_taylor_linear_poisson(poisson, which):
    p = poisson
    m0 = {"f": p.f0, "k": p.k0, "c": p.c0}[which]
    dm = torch.tensor(1.0, dtype=torch.float64) if which == "c" else _rand_like(m0)

    def fn(m):
        args = {"f": p.f0, "k": p.k0, "c": p.c0, which: m}
        return p.loss(args["f"], args["k"], args["c"])

    rates = dnf.taylor_test(fn, m0, dm)
    assert min(rates) > 1.9, (rates, rates.remainders)


def test_wrong_gradient_is_caught_by_taylor_test(poisson):
    """The Taylor test can fail: a loss whose gradient is scaled by 1.1 gives rate ~1."""
    p = poisson

    class Scaled(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return 1.1 * g

    rates = dnf.taylor_test(lambda f: p.loss(Scaled.apply(f), p.k0, p.c0), p.f0, _rand_like(p.f0))
    assert max(rates) < 1.2


def test_newton_taylor_and_adjoint_options():
    p = Poisson(newton=True)
    assert not p.op.linear
    rates = dnf.taylor_test(lambda k: p.loss(p.f0, k, p.c0), p.k0, _rand_like(p.k0))
    assert min(rates) > 1.9, rates
    rates = dnf.taylor_test(lambda f: p.loss(f, p.k0, p.c0), p.f0, _rand_like(p.f0, 1))
    assert min(rates) > 1.9, rates


def test_newton_converges_quadratically():
    p = Poisson(newton=True)
    p.op(p.f0, p.k0, p.c0)
    snes = p.op.problem.solver
    assert snes.getConvergedReason() > 0
    assert snes.getIterationNumber() <= 6


def test_elasticity_vector_p2_body_force():
    msh = dolfinx.mesh.create_unit_square(COMM, 6, 6)
    V = fem.functionspace(msh, ("Lagrange", 2, (2,)))
    u, v, b = fem.Function(V), ufl.TestFunction(V), fem.Function(V, name="body force")
    lmbda, mu = 1.0, 0.7

    def sigma(w):
        eps = ufl.sym(ufl.grad(w))
        return 2 * mu * eps + lmbda * ufl.tr(eps) * ufl.Identity(2)

    F = ufl.inner(sigma(u), ufl.grad(v)) * ufl.dx - ufl.inner(b, v) * ufl.dx
    op = dnf.fem_operator(F, u, controls=[b], bcs=[_boundary_bc(V)])
    J = dnf.functional(ufl.inner(u, u) * ufl.dx + ufl.inner(ufl.grad(u), ufl.grad(u)) ** 2 * ufl.dx,
                       inputs=[u])
    b0 = torch.ones(dnf.to_torch(b).shape, dtype=torch.float64)
    rates = dnf.taylor_test(lambda m: J(op(m)), 10 * b0, _rand_like(b0))
    assert min(rates) > 1.9, rates


def test_vector_constant_and_dg0_controls():
    msh = dolfinx.mesh.create_unit_square(COMM, 8, 8)
    V = fem.functionspace(msh, ("Lagrange", 1))
    Q = fem.functionspace(msh, ("DG", 0))
    u, v = fem.Function(V), ufl.TestFunction(V)
    wind = fem.Constant(msh, np.array([1.0, 0.5]))
    s = fem.Function(Q)
    F = (ufl.inner(ufl.grad(u), ufl.grad(v)) + ufl.dot(wind, ufl.grad(u)) * v - s * v) * ufl.dx
    op = dnf.fem_operator(F, u, controls=[wind, s], bcs=[_boundary_bc(V)])
    J = dnf.functional(u**2 * ufl.dx, inputs=[u])
    s0 = torch.ones(dnf.to_torch(s).shape, dtype=torch.float64) * 10
    w0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    # a first call where the operator happens to be symmetric (no wind) must not make later,
    # non-symmetric calls use a plain solve in their adjoint
    J(op(torch.zeros(2, dtype=torch.float64), s0))
    rates = dnf.taylor_test(lambda w: J(op(w, s0)), w0, torch.tensor([0.3, -1.0], dtype=torch.float64))
    assert min(rates) > 1.9, rates
    assert op.problem.symmetric is None   # the operator depends on a control: transposed solves
    rates = dnf.taylor_test(lambda m: J(op(w0, m)), s0, _rand_like(s0))
    assert min(rates) > 1.9, rates


def test_gradcheck_small():
    """gradcheck perturbs entries one by one, so each rank checks a serial copy (COMM_SELF)."""
    p = Poisson(comm=MPI.COMM_SELF, n=3)
    f0 = p.f0.clone().requires_grad_()
    k0 = p.k0.clone().requires_grad_()
    c0 = p.c0.clone().requires_grad_()
    assert torch.autograd.gradcheck(p.loss, (f0, k0, c0), eps=1e-6, atol=1e-7, rtol=1e-5)
    assert torch.autograd.gradcheck(lambda f, c: p.op(f, p.k0, c), (f0, c0), eps=1e-6, atol=1e-8)
    pn = Poisson(comm=MPI.COMM_SELF, n=3, newton=True)
    assert torch.autograd.gradcheck(lambda k: pn.op(pn.f0, k, pn.c0), (k0,), eps=1e-6, atol=1e-7)


def _gather_sorted(V, values: np.ndarray, comm=COMM) -> np.ndarray:
    """Values at owned P1 dofs of a distributed space, gathered and sorted by coordinates."""
    x = _owned_coords(V)
    xs = np.round(np.concatenate(comm.allgather(x)), 10)
    vs = np.concatenate(comm.allgather(values))
    order = np.lexsort((xs[:, 1], xs[:, 0]))
    return vs[order]


def test_one_rank_equals_all_ranks():
    results = {}
    for name, comm in (("self", MPI.COMM_SELF), ("world", COMM)):
        p = Poisson(comm=comm, n=9)
        f = p.f0.clone().requires_grad_()
        k = p.k0.clone().requires_grad_()
        c = p.c0.clone().requires_grad_()
        loss = p.loss(f, k, c)
        loss.backward()
        gathered = comm if name == "world" else MPI.COMM_SELF
        results[name] = (loss.item(), _gather_sorted(p.V, f.grad.numpy(), gathered),
                         _gather_sorted(p.V, k.grad.numpy(), gathered),
                         gathered.allreduce(c.grad.item()))
    (l1, gf1, gk1, gc1), (l2, gf2, gk2, gc2) = results["self"], results["world"]
    assert l2 == pytest.approx(l1, rel=1e-10)
    np.testing.assert_allclose(gf2, gf1, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(gk2, gk1, rtol=1e-8, atol=1e-14)
    assert gc2 == pytest.approx(gc1, rel=1e-8)


def test_loss_on_rank0_dofs_only_has_no_deadlock(poisson):
    p = poisson
    n = p.f0.numel()
    idx = torch.arange(min(5, n)) if COMM.rank == 0 else torch.arange(0)

    def fn(f):
        u = p.op(f, p.k0, p.c0)
        return dnf.parallel.sum((u[idx] ** 2).sum())

    rates = dnf.taylor_test(fn, p.f0, _rand_like(p.f0))
    assert min(rates) > 1.9, rates


def test_batch_equals_loop(poisson):
    p = poisson
    fb = torch.stack([p.f0, 2 * p.f0 + 1, -p.f0]).requires_grad_()
    kb = p.k0.clone().requires_grad_()
    ub = p.op(fb, kb, p.c0)
    assert ub.shape == (3, p.f0.numel())
    w = _rand_like(ub)
    dnf.parallel.sum((ub * w).sum()).backward()
    gk_loop = torch.zeros_like(p.k0)
    for b in range(3):
        f = fb[b].detach().clone().requires_grad_()
        k = p.k0.clone().requires_grad_()
        u = p.op(f, k, p.c0)
        torch.testing.assert_close(u, ub[b].detach(), rtol=1e-12, atol=1e-12)
        dnf.parallel.sum((u * w[b]).sum()).backward()
        torch.testing.assert_close(f.grad, fb.grad[b], rtol=1e-10, atol=1e-12)
        gk_loop += k.grad
    torch.testing.assert_close(kb.grad, gk_loop, rtol=1e-10, atol=1e-12)


def test_functional_batched_and_constant_share():
    msh = dolfinx.mesh.create_unit_square(COMM, 4, 4)
    V = fem.functionspace(msh, ("Lagrange", 1))
    g = fem.Function(V)
    c = fem.Constant(msh, 2.0)
    J = dnf.functional(c**2 * g * ufl.dx, inputs=[g, c])
    g0 = torch.ones(dnf.to_torch(g).shape, dtype=torch.float64)
    c0 = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    val = J(torch.stack([g0, 3 * g0]), c0)
    assert val.shape == (2,)
    torch.testing.assert_close(val, torch.tensor([4.0, 12.0], dtype=torch.float64))
    val.sum().backward()
    # d/dc of c^2 * (1 + 3) * |Omega| = 2c * 4 = 16, summed over the ranks' shares
    assert COMM.allreduce(c0.grad.item()) == pytest.approx(16.0)


@pytest.mark.parametrize("advection", [0.0, 3.0], ids=["symmetric", "nonsymmetric"])
def test_batch_multi_rhs_equals_loop(advection):
    """A fixed operator: the batch runs as one KSPMatSolve forward and one backward."""
    msh = dolfinx.mesh.create_unit_square(COMM, 10, 10)
    V = fem.functionspace(msh, ("Lagrange", 1))
    u, v, f = fem.Function(V), ufl.TestFunction(V), fem.Function(V)
    c = fem.Constant(msh, 2.0)
    w = ufl.as_vector([advection, 0.5 * advection])
    F = (ufl.inner(ufl.grad(u), ufl.grad(v)) + ufl.dot(w, ufl.grad(u)) * v - c * f * v) * ufl.dx
    op = dnf.fem_operator(F, u, controls=[f, c], bcs=[_boundary_bc(V)])
    assert op.problem.shares_factorisation
    x = _owned_coords(V)
    fb = torch.stack([torch.tensor(np.sin((i + 1) * x[:, 0]) + x[:, 1]) for i in range(4)]).requires_grad_()
    c0 = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    weights = _rand_like(torch.zeros(4, fb.shape[1]))
    ub = op(fb, c0)
    dnf.parallel.sum((ub * weights).sum()).backward()
    assert op.problem.symmetric is (advection == 0.0)
    gc = 0.0
    for b in range(4):
        f1 = fb[b].detach().clone().requires_grad_()
        c1 = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
        u1 = op(f1, c1)
        torch.testing.assert_close(u1, ub[b].detach(), rtol=1e-10, atol=1e-13)
        dnf.parallel.sum((u1 * weights[b]).sum()).backward()
        torch.testing.assert_close(f1.grad, fb.grad[b], rtol=1e-10, atol=1e-13)
        gc += c1.grad.item()
    assert c0.grad.item() == pytest.approx(gc, rel=1e-10)


def test_a_factorised_operator_follows_changes_of_coefficients_that_are_not_controls():
    """The operator is kept while what it depends on is unchanged, and rebuilt when a user
    edits a coefficient Function in place between calls (on any rank)."""
    msh = dolfinx.mesh.create_unit_square(COMM, 8, 8)
    V = fem.functionspace(msh, ("Lagrange", 1))
    u, v, f = fem.Function(V), ufl.TestFunction(V), fem.Function(V)
    kappa = fem.Function(fem.functionspace(msh, ("DG", 0)))
    kappa.x.array[:] = 1.0
    F = (kappa * ufl.inner(ufl.grad(u), ufl.grad(v)) - f * v) * ufl.dx
    op = dnf.fem_operator(F, u, controls=[f], bcs=[_boundary_bc(V)])
    ones = torch.ones(V.dofmap.index_map.size_local, dtype=torch.float64)
    u1 = op(ones).clone()
    u1_again = op(ones).clone()
    if COMM.rank == 0:   # one rank's cells only: the decision to rebuild must be collective
        kappa.x.array[:] = 2.0
    kappa.x.scatter_forward()
    u2 = op(ones)
    torch.testing.assert_close(u1_again, u1, rtol=0, atol=0)
    if COMM.size == 1:
        torch.testing.assert_close(u2, u1 / 2.0, rtol=1e-10, atol=1e-12)
    else:
        assert dnf.parallel.sum((u2 - u1).abs().sum(), COMM) > 1e-6


def test_fixed_adjoint_actions_are_matrices_that_follow_their_coefficients():
    """``(dF/df)^T λ`` of a control entering F affinely, with a coefficient free of u and f,
    is a matrix assembled once; editing that coefficient (not a control) rebuilds it."""
    msh = dolfinx.mesh.create_unit_square(COMM, 6, 6)
    V = fem.functionspace(msh, ("Lagrange", 1))
    u, v, f = fem.Function(V), ufl.TestFunction(V), fem.Function(V)
    k = fem.Function(fem.functionspace(msh, ("DG", 0)))
    k.x.array[:] = 1.0
    F = (u * v + ufl.inner(ufl.grad(u), ufl.grad(v)) - k * f * v) * ufl.dx
    op = dnf.fem_operator(F, u, controls=[f])
    assert op.problem.controls[0]._matrix_form is not None      # the matrix path is taken
    n = V.dofmap.index_map.size_local
    weights = torch.linspace(0.5, 1.5, n, dtype=torch.float64)

    def gradient() -> torch.Tensor:
        f_t = torch.ones(n, dtype=torch.float64, requires_grad=True)
        dnf.parallel.sum((weights * op(f_t)).sum(), COMM).backward()
        return f_t.grad

    g1 = gradient()
    torch.testing.assert_close(gradient(), g1, rtol=0, atol=0)
    k.x.array[:] = 3.0              # F is linear in k f: the gradient triples
    torch.testing.assert_close(gradient(), 3.0 * g1, rtol=1e-10, atol=1e-14)
    # and it is the right gradient: a Taylor test through the matrix path
    rates = dnf.taylor_test(lambda f_t: dnf.parallel.sum((weights * op(f_t)).sum() ** 2, COMM),
                            torch.ones(n, dtype=torch.float64, requires_grad=True),
                            torch.rand(n, dtype=torch.float64))
    assert min(rates) >= 1.9, rates


def test_affine_right_hand_side_matches_assembly_and_follows_its_inputs():
    """F affine in its controls: the right-hand side is F(0; 0) + Σ B_i m_i by mat-vecs. It must
    equal the assembled one, with non-zero Dirichlet values, and follow edits of a Constant and
    of a Function that are not controls (on one rank only)."""
    msh = dolfinx.mesh.create_unit_square(COMM, 7, 5)
    V = fem.functionspace(msh, ("Lagrange", 1))
    u, v = fem.Function(V), ufl.TestFunction(V)
    f, c_old = fem.Function(V), fem.Function(V)
    k = fem.Function(fem.functionspace(msh, ("DG", 0)))
    k.x.array[:] = 1.0
    t = fem.Constant(msh, 0.5)
    x = ufl.SpatialCoordinate(msh)
    F = ((u - c_old) * v + 0.1 * ufl.inner(ufl.grad(u), ufl.grad(v)) - k * f * v - t * x[0] * v) * ufl.dx
    g = fem.Function(V)
    g.interpolate(lambda p: 1.0 + p[0] * p[1])
    left = dolfinx.mesh.locate_entities_boundary(msh, 1, lambda p: np.isclose(p[0], 0.0))
    bc = fem.dirichletbc(g, fem.locate_dofs_topological(V, 1, left))
    affine = dnf.fem_operator(F, u, controls=[c_old, f], bcs=[bc])
    general = dnf.fem_operator(F, u, controls=[c_old, f], bcs=[bc])
    general.problem._affine = None                      # the assembled right-hand side
    assert affine.problem._affine is not None
    n = V.dofmap.index_map.size_local
    f_t = torch.linspace(-1.0, 2.0, n, dtype=torch.float64)
    c_t = torch.cos(torch.arange(n, dtype=torch.float64))

    def agree():
        torch.testing.assert_close(affine(c_t, f_t), general(c_t, f_t), rtol=1e-12, atol=1e-12)

    agree()
    agree()                                             # cached F(0; 0)
    t.value = 2.0                                       # a Constant in F(0; 0)
    agree()
    if COMM.rank == 0:                                  # a non-control Function, on one rank only
        k.x.array[:] = 3.0
    k.x.scatter_forward()
    agree()
    g.x.array[:] *= 2.0                                 # the boundary values
    agree()


def test_solver_options_one_object_or_keywords():
    """``solver=SolverOptions(...)`` and the same names as keywords build the same solver;
    keywords lie over the object; an unknown name says which are known."""
    p = Poisson(n=6)
    u, v = p.u, ufl.TestFunction(p.V)
    gmres = {"ksp_type": "gmres", "pc_type": "jacobi", "ksp_rtol": 1e-12}
    F = ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx - p.f * v * ufl.dx
    by_object = dnf.fem_operator(F, u, controls=[p.f], bcs=[_boundary_bc(p.V)],
                                 solver=dnf.SolverOptions(petsc_options=gmres, direct_rtol=1e-8))
    by_keywords = dnf.fem_operator(F, u, controls=[p.f], bcs=[_boundary_bc(p.V)], petsc_options=gmres)
    over = dnf.fem_operator(F, u, controls=[p.f], bcs=[_boundary_bc(p.V)],
                            solver=dnf.SolverOptions(petsc_options=gmres), petsc_options=None)
    assert by_object.solver.getType() == by_keywords.solver.getType() == "gmres"
    assert by_object.problem.solver_options.direct_rtol == 1e-8
    assert over.solver.getType() == "preonly"          # petsc_options=None: the default again
    a, b = by_object(p.f0), by_keywords(p.f0)
    assert float((a - b).norm()) <= 1e-9 * float(b.norm())
    with pytest.raises(TypeError, match="unknown solver option.*'petsc_option'.*expected some of"):
        dnf.fem_operator(F, u, controls=[p.f], petsc_option=gmres)
    with pytest.raises(ValueError, match="initial_guess"):
        dnf.SolverOptions(initial_guess="last")
    for op in (by_object, by_keywords, over, p.op):
        op.destroy()


def test_counts_say_what_the_operator_did(poisson):
    """A fixed operator: one assembly for all forward and adjoint solves, batched ones counted
    one per right-hand side."""
    V = poisson.V
    u, v, f = fem.Function(V), ufl.TestFunction(V), fem.Function(V)
    op = dnf.fem_operator(ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx - f * v * ufl.dx, u,
                          controls=[f], bcs=[_boundary_bc(V)])
    f0 = poisson.f0.clone().requires_grad_(True)
    op(f0).sum().backward()
    op(torch.stack([f0, 2 * f0])).sum().backward()
    c = op.counts
    assert (c.assemblies, c.forward_solves, c.adjoint_solves, c.newton_iterations) == (1, 3, 3, 0), c
    with pytest.raises(AttributeError):
        c.assemblies = 0                                  # read-only
    op.problem.forget_operator()
    op(f0)
    assert op.counts.assemblies == 2
    op.destroy()


def test_a_failed_solve_is_not_counted():
    msh = dolfinx.mesh.create_unit_square(COMM, 6, 6)
    V = fem.functionspace(msh, ("Lagrange", 1))
    u, v, f = fem.Function(V), ufl.TestFunction(V), fem.Function(V)
    op = dnf.fem_operator(ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx - f * v * ufl.dx, u, controls=[f])
    with pytest.raises(dnf.SolverError):          # no boundary condition: singular
        op(torch.ones(V.dofmap.index_map.size_local, dtype=torch.float64))
    assert op.counts.forward_solves == 0 and op.counts.assemblies == 1, op.counts
    op.destroy()
