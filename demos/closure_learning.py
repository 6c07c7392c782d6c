# %% [markdown]
# # Learning a reaction closure inside a Newton solve
#
# The state obeys $-\varepsilon\Delta u + N(u) = f_i$ on the unit square, $u = 0$ on the
# boundary, for a few known sources $f_i$. The reaction law $N$ is unknown; we observe the
# states $u_i$ (generated here with the hidden truth $N^\star(u) = u^3 + u$).
#
# A small MLP $N_\theta$ sits *inside the weak form* through `dnf.ml_operator`: each Newton
# iteration evaluates it and its derivative $\partial N_\theta/\partial u$ at all quadrature
# points in one batched call (`torch.func`), so Newton converges quadratically; the backward
# pass is one adjoint solve and one vector-Jacobian product for $\theta$. L-BFGS fits
# $\theta$ to the states. The demo checks itself: the misfit falls by `--target` and the
# learned law matches $N^\star$ over the observed states to 5 %.
#
# Run: `python demos/closure_learning.py` or `mpirun -n 2 python demos/closure_learning.py`.

# %%
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mpi4py import MPI

import dolfinx
import dolfinx.fem as fem
import numpy as np
import torch
import ufl

import deepnum_fem as dnf

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--n", type=int, default=24, help="cells per side")
parser.add_argument("--steps", type=int, default=10, help="L-BFGS outer steps (20 inner each)")
parser.add_argument("--target", type=float, default=1e3)
parser.add_argument("--out", type=Path, default=Path("out/closure_learning"))
args = parser.parse_args()
comm = MPI.COMM_WORLD

# %% [markdown]
# ## The residual, with the closure as a network node

# %%
msh = dolfinx.mesh.create_unit_square(comm, args.n, args.n)
V = fem.functionspace(msh, ("Lagrange", 1))
u, v, f = fem.Function(V, name="u"), ufl.TestFunction(V), fem.Function(V, name="f")
msh.topology.create_connectivity(1, 2)
bc = fem.dirichletbc(0.0, fem.locate_dofs_topological(
    V, 1, dolfinx.mesh.exterior_facet_indices(msh.topology)), V)


def residual(N):
    return (0.05 * ufl.inner(ufl.grad(u), ufl.grad(v)) + N * v - f * v) * ufl.dx


class Truth(torch.nn.Module):
    def forward(self, x):
        return x[:, 0] ** 3 + x[:, 0]


xy = V.tabulate_dof_coordinates()[: V.dofmap.index_map.size_local]
sources = torch.stack([torch.tensor(a * np.sin(np.pi * xy[:, 0]) * np.sin(np.pi * xy[:, 1]) + b)
                       for a, b in [(8, 0), (-6, 3), (10, -4)]])
with torch.no_grad():   # the observations: a batch of three Newton solves with the hidden law
    observed = dnf.fem_operator(residual(dnf.ml_operator(Truth(), operands=(u,), quadrature_degree=2)),
                                u, controls=[f], bcs=[bc])(sources)

torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
                          torch.nn.Linear(16, 1)).double()
solve = dnf.fem_operator(residual(dnf.ml_operator(net, operands=(u,), quadrature_degree=2)),
                         u, controls=[f], bcs=[bc])
count = comm.allreduce(observed.numel())

# %% [markdown]
# ## Training

# %%
opt = torch.optim.LBFGS(net.parameters(), lr=1, max_iter=20, history_size=20, line_search_fn="strong_wolfe")
history: list[float] = []


def closure():
    opt.zero_grad()
    loss = dnf.parallel.sum(((solve(sources) - observed) ** 2).sum()) / count
    loss.backward()
    dnf.parallel.allreduce_gradients(net)
    history.append(loss.item())
    return loss


for step in range(args.steps):
    opt.step(closure)
    if comm.rank == 0:
        print(f"step {step:3d}  evaluations {len(history):4d}  misfit {min(history):.3e}", flush=True)

# %% [markdown]
# ## Results

# %%
with torch.no_grad():
    x = observed.reshape(-1, 1)
    true = x[:, 0] ** 3 + x[:, 0]
    err = (dnf.parallel.sum(((net(x)[:, 0] - true) ** 2).sum()) / dnf.parallel.sum((true**2).sum())).sqrt()
    lo = comm.allreduce(float(observed.min()), op=MPI.MIN)
    hi = comm.allreduce(float(observed.max()), op=MPI.MAX)
    grid = torch.linspace(lo, hi, 200, dtype=torch.float64)[:, None]
    learned = net(grid)[:, 0]
reduction = history[0] / min(history)
metrics = {"ranks": comm.size, "dofs": V.dofmap.index_map.size_global, "loss_evaluations": len(history),
           "misfit_initial": history[0], "misfit_final": min(history), "misfit_reduction": reduction,
           "closure_relative_l2_error_on_observed_states": float(err), "observed_range": [lo, hi]}
if comm.rank == 0:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        g = grid[:, 0].numpy()
        ax[0].plot(g, g**3 + g, "k-", label="truth $u^3+u$")
        ax[0].plot(g, learned.numpy(), "r--", label=r"learned $N_\theta$")
        ax[0].set_xlabel("u")
        ax[0].legend()
        ax[1].semilogy(history)
        ax[1].set_xlabel("loss evaluation")
        ax[1].set_ylabel("misfit")
        fig.tight_layout()
        fig.savefig(args.out / "closure.png", dpi=120)
    except ImportError:
        print("matplotlib not installed: no figure (pip install 'deepnum-fem[viz]')")
assert reduction >= args.target, f"misfit fell only {reduction:.1f}x, expected >= {args.target}x"
assert err < 5e-2, f"learned closure is {float(err):.3f} away from the truth (relative L2), expected < 0.05"
