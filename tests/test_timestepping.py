"""Time stepping by composition: a 50-step implicit heat equation, with and without checkpoints."""

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
N_STEPS = 50


class Heat:
    """(u - u_prev)/dt - div(kappa grad u) = s, homogeneous Neumann; controls u_prev and s."""

    def __init__(self):
        msh = dolfinx.mesh.create_unit_square(COMM, 8, 8)
        V = fem.functionspace(msh, ("Lagrange", 1))
        self.u, v = fem.Function(V), ufl.TestFunction(V)
        self.u_prev, self.s = fem.Function(V), fem.Function(V)
        dt, kappa = 0.01, 0.5
        F = ((self.u - self.u_prev) / dt * v + kappa * ufl.inner(ufl.grad(self.u), ufl.grad(v))
             - self.s * v) * ufl.dx
        self.step_op = dnf.fem_operator(F, self.u, controls=[self.u_prev, self.s])
        self.J = dnf.functional(self.u**2 * ufl.dx, inputs=[self.u])
        x = V.tabulate_dof_coordinates()[: V.dofmap.index_map.size_local]
        self.u0 = torch.tensor(np.exp(-10 * ((x[:, 0] - 0.3) ** 2 + (x[:, 1] - 0.6) ** 2)))
        self.s0 = torch.tensor(np.cos(np.pi * x[:, 0]) * x[:, 1])

    def loss(self, u0, s, checkpoint_every=None):
        # the source ramps up in time: s_k = (k / N) s
        u_final, obs = dnf.rollout(lambda u, k: self.step_op(u, (k + 1) / N_STEPS * s), u0, N_STEPS,
                                   observe=lambda u, k: self.J(u), checkpoint_every=checkpoint_every)
        return obs.sum() * 0.01 + self.J(u_final)


@pytest.fixture(scope="module")
def heat():
    return Heat()


def test_operator_factorised_once(heat):
    assert heat.step_op.linear and heat.step_op.problem.shares_factorisation


@pytest.mark.parametrize("checkpoint_every", [None, 7])
def test_taylor_through_50_steps(heat, checkpoint_every):
    g = torch.Generator().manual_seed(COMM.rank)
    du = torch.rand(heat.u0.shape, generator=g, dtype=torch.float64)
    rates = dnf.taylor_test(lambda m: heat.loss(m, heat.s0, checkpoint_every), heat.u0, du)
    assert min(rates) > 1.9, rates
    rates = dnf.taylor_test(lambda m: heat.loss(heat.u0, m, checkpoint_every), heat.s0, du)
    assert min(rates) > 1.9, rates


def test_checkpointing_gives_identical_gradients(heat):
    grads = []
    for every in (None, 1, 10, 13, N_STEPS):
        u0 = heat.u0.clone().requires_grad_()
        s = heat.s0.clone().requires_grad_()
        heat.loss(u0, s, every).backward()
        grads.append((u0.grad, s.grad))
    for gu, gs in grads[1:]:
        torch.testing.assert_close(gu, grads[0][0], rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(gs, grads[0][1], rtol=1e-12, atol=1e-15)


def test_rollout_rejects_bad_block_size(heat):
    with pytest.raises(ValueError, match="checkpoint_every"):
        dnf.rollout(lambda u, k: u, heat.u0, 3, checkpoint_every=0)
