"""Cost of networks inside UFL forms (ml_operator).

Run: ``mpirun -n N python bench/ml_operator.py [--quick] [--device cuda]``. Prints medians of
``--repeats`` runs with the conditions. Cases, on a unit-square mesh of 2 n^2 triangles, P1,
``-Δu + N(u) = f`` with N at degree-2 quadrature points (3 per cell):

* newton-ufl / newton-ml   one Newton solve (from zero) with N(u) = u^3 + u written in UFL,
                           and the same closure as a torch module through ml_operator.
* throughput               network value + Jacobian (torch.func vmap/jacrev) per second, for an
                           MLP 1-32-32-1 on all points of the rank; bytes kept per point.
* train-step               forward + backward of a loss through the Newton solve with the MLP
                           closure, relative to the forward alone.
"""

from __future__ import annotations

import argparse

from _common import COMM, log, timed  # bench/ is on sys.path when a script there runs

import dolfinx
import dolfinx.fem as fem
import dolfinx.mesh
import numpy as np
import torch
import ufl

import deepnum_fem as dnf


class Cubic(torch.nn.Module):
    def forward(self, x):
        return x[:, 0] ** 3 + x[:, 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=None, help="cells per side (2 n^2 triangles)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    n = args.n or (80 if args.quick else 250)
    repeats = args.repeats or (2 if args.quick else 3)
    torch.set_num_threads(1)

    msh = dolfinx.mesh.create_unit_square(COMM, n, n)
    V = fem.functionspace(msh, ("Lagrange", 1))
    u, v, f = fem.Function(V), ufl.TestFunction(V), fem.Function(V)
    msh.topology.create_connectivity(1, 2)
    bc = fem.dirichletbc(0.0, fem.locate_dofs_topological(
        V, 1, dolfinx.mesh.exterior_facet_indices(msh.topology)), V)
    xy = V.tabulate_dof_coordinates()[: V.dofmap.index_map.size_local]
    f0 = torch.tensor(50 * np.sin(np.pi * xy[:, 0]) * np.sin(np.pi * xy[:, 1]))
    cells = msh.topology.index_map(2).size_global
    log(f"# deepnum-fem {dnf.__version__}, {COMM.size} rank(s), unit square {cells} triangles, "
        f"{V.dofmap.index_map.size_global} P1 dofs, degree-2 quadrature ({3 * cells} points), "
        f"Newton + MUMPS, device {args.device}, median of {repeats}")

    def newton_op(N):
        F = (ufl.inner(ufl.grad(u), ufl.grad(v)) + N * v - f * v) * ufl.dx(metadata={"quadrature_degree": 2})
        return dnf.fem_operator(F, u, controls=[f], bcs=[bc], initial_guess="zero")

    op_ufl = newton_op(u**3 + u)
    op_ml = newton_op(dnf.ml_operator(Cubic(), operands=(u,), quadrature_degree=2, device=args.device))
    for op in (op_ufl, op_ml):
        op(f0)
    t_ufl = timed(lambda: op_ufl(f0), repeats)
    its = op_ufl.problem.solver.getIterationNumber()
    t_ml = timed(lambda: op_ml(f0), repeats)
    its_ml = op_ml.problem.solver.getIterationNumber()
    log(f"newton-ufl     {t_ufl:8.3f} s ({its} iterations)")
    log(f"newton-ml      {t_ml:8.3f} s ({its_ml} iterations)  ratio ml/ufl {t_ml / t_ufl:.2f}")

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
                              torch.nn.Linear(32, 1)).double()
    M = dnf.ml_operator(net, operands=(u,), quadrature_degree=2, device=args.device)
    model = M.model
    model.update()
    t_eval = timed(lambda: model.update(force=True), repeats)
    points = COMM.allreduce(model.n_points)
    per_point = 8 * (model.n_in + model.n_out + model.n_out * model.n_in)
    log(f"throughput     {points / t_eval:,.0f} points/s (value + Jacobian, incl. operand evaluation), "
        f"{points} points; {per_point} bytes/point kept (operands, values, Jacobian; float64)")

    op_net = newton_op(M)
    J = dnf.functional(u**2 * ufl.dx, inputs=[u])
    op_net(f0)

    def forward():
        with torch.no_grad():
            J(op_net(f0))

    def train_step():
        net.zero_grad()
        J(op_net(f0)).backward()
        dnf.parallel.allreduce_gradients(net)

    t_f = timed(forward, repeats)
    t_t = timed(train_step, repeats)
    log(f"train-step     forward {t_f:.3f} s, forward + backward {t_t:.3f} s, ratio {t_t / t_f:.2f}")


if __name__ == "__main__":
    main()
