# %% [markdown]
# # Quick start: learning a source term with a network inside a Poisson solve
#
# On a perforated plate $\Omega$ (unstructured gmsh mesh) we observe the solution of
#
# $$ -\nabla\cdot(\kappa \nabla u) = f \ \text{in}\ \Omega, \qquad u = 0 \ \text{on}\ \partial\Omega, $$
#
# for an unknown source $f^\star$. A small network $f_\theta(x)$ proposes the source at the
# P1 dofs; `dnf.fem_operator` makes the solve a torch operation whose backward pass is one
# adjoint solve (reusing the forward LU factorisation); `dnf.functional` turns the misfit
# $J = \int_\Omega (u - u_{obs})^2\,dx$ into a torch scalar. Adam trains $\theta$ on every
# rank; gradients are summed across ranks like DDP.
#
# Run: `python demos/quickstart.py` or `mpirun -n 2 python demos/quickstart.py`.
# The demo checks its own result: the misfit must fall by the factor `--target`.

# %%
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mpi4py import MPI

import dolfinx
import dolfinx.fem as fem
import dolfinx.io
import torch
import ufl

import deepnum_fem as dnf
from deepnum_fem.geometry import plate_with_holes

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--h", type=float, default=0.03, help="mesh size")
parser.add_argument("--iterations", type=int, default=1000)
parser.add_argument("--lr", type=float, default=1e-2)
parser.add_argument("--target", type=float, default=100.0, help="required misfit reduction factor")
parser.add_argument("--out", type=Path, default=Path("out/quickstart"))
args = parser.parse_args()
comm = MPI.COMM_WORLD

# %% [markdown]
# ## Mesh, space and the residual $F(u; f) = 0$

# %%
msh = plate_with_holes(h=args.h, comm=comm).mesh
V = fem.functionspace(msh, ("Lagrange", 1))
u, v = fem.Function(V, name="u"), ufl.TestFunction(V)
f = fem.Function(V, name="f")
x = ufl.SpatialCoordinate(msh)
kappa = 1 + 0.5 * x[0]
F = kappa * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx - f * v * ufl.dx

tdim = msh.topology.dim
msh.topology.create_connectivity(tdim - 1, tdim)
boundary = dolfinx.mesh.exterior_facet_indices(msh.topology)
bc = fem.dirichletbc(0.0, fem.locate_dofs_topological(V, tdim - 1, boundary), V)
solve = dnf.fem_operator(F, u, controls=[f], bcs=[bc])

# %% [markdown]
# ## Synthetic observations from a hidden source $f^\star$

# %%
n_owned = V.dofmap.index_map.size_local
xy = torch.tensor(V.tabulate_dof_coordinates()[:n_owned, :2])


def true_source(p: torch.Tensor) -> torch.Tensor:
    return 20 * torch.exp(-20 * ((p[:, 0] - 0.75) ** 2 + (p[:, 1] - 0.25) ** 2)) + 5 * p[:, 1]


with torch.no_grad():
    u_obs_t = solve(true_source(xy))
u_obs = fem.Function(V, name="u_obs")
dnf.from_torch(u_obs_t, u_obs)
misfit = dnf.functional((u - u_obs) ** 2 * ufl.dx, inputs=[u])

# %% [markdown]
# ## The network and the training loop

# %%
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32),
                          torch.nn.Tanh(), torch.nn.Linear(32, 1)).double()
dnf.parallel.broadcast_parameters(net)
opt = torch.optim.Adam(net.parameters(), lr=float(args.lr))
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.iterations)

history = []
t0 = time.perf_counter()
for it in range(args.iterations):
    opt.zero_grad()
    loss = misfit(solve(10 * net(xy).squeeze(-1)))
    loss.backward()
    dnf.parallel.allreduce_gradients(net)
    opt.step()
    sched.step()
    history.append(loss.item())
    if comm.rank == 0 and (it % 100 == 0 or it == args.iterations - 1):
        print(f"iteration {it:4d}  misfit {history[-1]:.3e}", flush=True)
elapsed = time.perf_counter() - t0

# %% [markdown]
# ## Results: misfit reduction, source error, files

# %%
with torch.no_grad():
    f_learned = 10 * net(xy).squeeze(-1)
    err = dnf.parallel.sum(((f_learned - true_source(xy)) ** 2).sum()).sqrt()
    ref = dnf.parallel.sum((true_source(xy) ** 2).sum()).sqrt()
reduction = history[0] / history[-1]
metrics = {
    "ranks": comm.size, "dofs": V.dofmap.index_map.size_global, "iterations": args.iterations,
    "misfit_initial": history[0], "misfit_final": history[-1], "misfit_reduction": reduction,
    "source_relative_l2_error_at_dofs": float(err / ref), "seconds": elapsed,
}
if comm.rank == 0:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
dnf.from_torch(f_learned, f)
with dolfinx.io.XDMFFile(comm, args.out / "source.xdmf", "w") as xdmf:
    xdmf.write_mesh(msh)
    xdmf.write_function(f)
assert reduction >= args.target, f"misfit fell only {reduction:.1f}x, expected >= {args.target}x"
