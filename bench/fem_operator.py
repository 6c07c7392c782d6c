"""Cost of gradients through fem_operator: (forward + gradient) / forward, batching, memory.

Run: ``mpirun -n N python bench/fem_operator.py [--quick]``. Prints one line per case with
medians of ``--repeats`` runs and the conditions (dofs, ranks, solver). Cases:

* linear-mumps-k  ``-div((1+k^2) grad u) = f``, control k: every forward assembles and
  factorises; the adjoint reuses that factorisation (solveTranspose or the same solve).
* linear-mumps-f  same operator with f the only control: factorised once for all calls.
* linear-gamg-k   the k problem with CG + GAMG; the adjoint reuses the preconditioner.
* newton          ``-div((1+u^2) grad u) = f`` with SNES Newton + MUMPS, control f.
* batch16         16 sources as one batched call vs 16 single calls (fixed operator).
* rollout-memory  peak traced host memory over forward + backward of a 200-step heat
                  rollout, with and without checkpoints.
"""

from __future__ import annotations

import argparse
import json
import tracemalloc
from pathlib import Path

from _common import COMM, log, timed  # bench/ is on sys.path when a script there runs
from mpi4py import MPI

import dolfinx
import dolfinx.fem as fem
import dolfinx.mesh
import numpy as np
import torch
import ufl

import deepnum_fem as dnf
from deepnum_fem.geometry import box_with_cavity


def make_mesh(h: float, refine: bool):
    msh = box_with_cavity(h, COMM).mesh
    if refine:
        msh.topology.create_entities(1)
        msh = dolfinx.mesh.refine(msh)[0]
    return msh


def problem(msh, *, newton: bool, controls: str, petsc_options: dict | None = None):
    V = fem.functionspace(msh, ("Lagrange", 1))
    u, v = fem.Function(V), ufl.TestFunction(V)
    f, k = fem.Function(V), fem.Function(V)
    coeff = (1 + u**2) if newton else (1 + k**2)
    F = coeff * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx - f * v * ufl.dx
    if newton:
        F += k * u * v * ufl.dx
    tdim = msh.topology.dim
    msh.topology.create_connectivity(tdim - 1, tdim)
    facets = dolfinx.mesh.exterior_facet_indices(msh.topology)
    bc = fem.dirichletbc(0.0, fem.locate_dofs_topological(V, tdim - 1, facets), V)
    ctrl = {"k": [k], "f": [f]}[controls]
    op = dnf.fem_operator(F, u, controls=ctrl, bcs=[bc], petsc_options=petsc_options,
                          initial_guess="zero")   # a Newton forward is a full solve, not a warm restart
    x = V.tabulate_dof_coordinates()[: V.dofmap.index_map.size_local]
    m0 = torch.tensor(1 + x[:, 0] * x[:, 1]) if controls == "k" else torch.tensor(10 * np.sin(4 * x[:, 0]) + 5)
    return V, op, m0


def ratio_case(name: str, V, op, m0, repeats: int, solver: str) -> dict:
    w = torch.rand(m0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(COMM.rank))
    op(m0)  # warm up: JIT, symbolic factorisation, operator cache

    def forward():
        with torch.no_grad():
            op(m0)

    def forward_and_gradient():
        m = m0.clone().requires_grad_()
        dnf.parallel.sum((op(m) * w).sum()).backward()

    t_fwd = timed(forward, repeats)
    t_both = timed(forward_and_gradient, repeats)
    row = {"case": name, "dofs": V.dofmap.index_map.size_global, "ranks": COMM.size, "solver": solver,
           "forward_s": t_fwd, "forward_plus_gradient_s": t_both, "ratio": t_both / t_fwd}
    log(f"{name:15s} dofs={row['dofs']:8d} ranks={COMM.size} {solver:22s} forward {t_fwd:8.3f} s  "
        f"forward+gradient {t_both:8.3f} s  ratio {row['ratio']:.2f}")
    return row


def batch_case(V, op, m0, repeats: int) -> dict:
    fb = torch.stack([m0 * (1 + 0.1 * i) for i in range(16)])
    op(m0)

    def batched():
        with torch.no_grad():
            op(fb)

    def loop():
        with torch.no_grad():
            for i in range(16):
                op(fb[i])

    t_b, t_l = timed(batched, repeats), timed(loop, repeats)
    log(f"{'batch16':15s} dofs={V.dofmap.index_map.size_global:8d} ranks={COMM.size} one batched call "
        f"{t_b:.3f} s vs 16 single calls {t_l:.3f} s  ratio {t_l / t_b:.2f}")
    return {"case": "batch16", "batched_s": t_b, "loop_s": t_l, "speedup": t_l / t_b}


def rollout_memory(msh, steps: int, every: int | None) -> dict:
    """Peak growth of traced host memory over forward + backward of a heat rollout.

    tracemalloc sees the numpy-backed state tensors that each step keeps for its backward
    (what checkpointing saves), not PETSc's or MUMPS's own workspaces, which do not depend
    on the horizon.
    """
    V = fem.functionspace(msh, ("Lagrange", 1))
    u, v, u_prev, s = fem.Function(V), ufl.TestFunction(V), fem.Function(V), fem.Function(V)
    F = ((u - u_prev) / 0.01 * v + ufl.inner(ufl.grad(u), ufl.grad(v)) - s * v) * ufl.dx
    op = dnf.fem_operator(F, u, controls=[u_prev, s])
    n = V.dofmap.index_map.size_local
    s0 = torch.ones(n, dtype=torch.float64, requires_grad=True)
    op(torch.zeros(n, dtype=torch.float64), s0)   # factorise before measuring
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    uT, _ = dnf.rollout(lambda u_, k: op(u_, s0), torch.zeros(n, dtype=torch.float64), steps,
                        checkpoint_every=every)
    (uT**2).sum().backward()
    del uT
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {"dofs": V.dofmap.index_map.size_global, "peak_mib": COMM.allreduce(peak, op=MPI.MAX) / 2**20,
            "state_mib": COMM.allreduce(n, op=MPI.MAX) * 8 / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small mesh, 2 repeats (about a minute)")
    parser.add_argument("--h", type=float, default=None, help="gmsh size before one uniform refinement")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    parser.add_argument("--cases", default="mumps-k,mumps-f,batch16,gamg-k,newton,rollout",
                        help="comma-separated subset of: %(default)s")
    args = parser.parse_args()
    h = args.h or (0.06 if args.quick else 0.03)
    repeats = args.repeats or (2 if args.quick else 3)
    refine = True
    torch.set_num_threads(1)
    msh = make_mesh(h, refine)
    log(f"# deepnum-fem {dnf.__version__}, DOLFINx {dolfinx.__version__}, {COMM.size} rank(s), "
        f"mesh: gmsh box-with-cavity h={h} refined once, {msh.topology.index_map(3).size_global} tets, "
        f"median of {repeats}")
    rows = []
    cases = set(args.cases.split(","))
    if "mumps-k" in cases:
        V, op, m0 = problem(msh, newton=False, controls="k")
        rows.append(ratio_case("linear-mumps-k", V, op, m0, repeats, "LU (MUMPS)"))
    if cases & {"mumps-f", "batch16"}:
        V, op, m0 = problem(msh, newton=False, controls="f")
        if "mumps-f" in cases:
            rows.append(ratio_case("linear-mumps-f", V, op, m0, repeats, "LU (MUMPS), cached"))
        if "batch16" in cases:
            rows.append(batch_case(V, op, m0, repeats))
    if "gamg-k" in cases:
        gamg = {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-10}
        V, op, m0 = problem(msh, newton=False, controls="k", petsc_options=gamg)
        rows.append(ratio_case("linear-gamg-k", V, op, m0, repeats, "CG + GAMG, rtol 1e-10"))
    if "newton" in cases:
        V, op, m0 = problem(msh, newton=True, controls="f")
        rows.append(ratio_case("newton", V, op, m0, repeats, "SNES Newton + MUMPS"))
    steps = 200
    for every in ((None, 20) if "rollout" in cases else ()):
        res = rollout_memory(msh, steps, every)
        label = "no checkpoints" if every is None else f"checkpoint every {every}"
        log(f"{'rollout-memory':15s} dofs={res['dofs']:8d} ranks={COMM.size} {steps} steps, {label:22s} "
            f"peak {res['peak_mib']:8.1f} MiB/rank (one state: {res['state_mib']:.2f} MiB/rank)")
        rows.append({"case": "rollout-memory", "steps": steps, "checkpoint_every": every, **res})
    if args.json and COMM.rank == 0:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
