"""Learned FSAI against classical preconditioners on operators it was not trained on.

Run: ``mpirun -n N python bench/precond.py [--quick]``. CG to a 1e-8 relative residual for
none, Jacobi, ICC(0) (block-Jacobi + ICC(0) on several ranks), GAMG and the learned FSAI
(the bundled model, trained on unit squares up to 20x20 and regular and jiggled unit cubes up to 9x9x9). Setup and solve
times are listed separately; for the learned preconditioner also the time per application.
Operators: ``-div(κ grad u)`` with an unseen random κ on a 2D unit square and on the 3D gmsh
box-with-cavity (a geometry the model never saw).
"""

from __future__ import annotations

import argparse
import time

from mpi4py import MPI
from petsc4py import PETSc

import dolfinx
import dolfinx.mesh
import numpy as np
from _common import log

import deepnum_fem as dnf
from deepnum_fem.geometry import box_with_cavity
from deepnum_fem.precond import LearnedFSAI, solve
from deepnum_fem.precond.family import diffusion_operator

COMM = MPI.COMM_WORLD
SEED = 424242


def run_case(A: PETSc.Mat, b: PETSc.Vec, name: str) -> dict:
    ksp = PETSc.KSP().create(COMM)
    ksp.setOperators(A)
    ksp.setType("cg")
    ksp.setTolerances(rtol=1e-8, atol=1e-50, max_it=20000)
    pc = ksp.getPC()
    ctx = None
    if name == "learned-fsai":
        ctx = LearnedFSAI()
        pc.setType("python")
        pc.setPythonContext(ctx)
    elif name == "icc0":
        if COMM.size == 1:
            pc.setType("icc")
        else:
            pc.setType("bjacobi")
            ksp.setUp()
            for sub in pc.getBJacobiSubKSP():
                sub.getPC().setType("icc")
    else:
        pc.setType(name)
    x = A.createVecRight()
    COMM.Barrier()
    t0 = time.perf_counter()
    ksp.setUp()
    t_setup = COMM.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    t0 = time.perf_counter()
    its = solve(ksp, b, x)
    t_solve = COMM.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    row = {"pc": name, "iterations": its, "setup_s": t_setup, "solve_s": t_solve, "total_s": t_setup + t_solve}
    if ctx is not None:
        row["per_apply_ms"] = 1e3 * COMM.allreduce(ctx.apply_seconds / max(ctx.applications, 1), op=MPI.MAX)
    ksp.destroy()
    x.destroy()
    return row


def bench(A: PETSc.Mat, label: str) -> None:
    b = A.createVecLeft()
    b.getArray()[:] = np.random.default_rng(COMM.rank).normal(size=b.getLocalSize())
    log(f"\n## {label}: {A.getSize()[0]} dofs, {COMM.size} rank(s), CG to rtol 1e-8")
    log(f"{'preconditioner':14s} {'its':>6s} {'setup s':>9s} {'solve s':>9s} {'total s':>9s}  per apply")
    for name in ("none", "jacobi", "icc0", "gamg", "learned-fsai"):
        r = run_case(A, b, name)
        extra = f"  {r['per_apply_ms']:.2f} ms" if "per_apply_ms" in r else ""
        log(f"{name:14s} {r['iterations']:6d} {r['setup_s']:9.3f} {r['solve_s']:9.3f} {r['total_s']:9.3f}{extra}")
    b.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small meshes (well under 5 minutes)")
    args = parser.parse_args()
    log(f"# deepnum-fem {dnf.__version__}, DOLFINx {dolfinx.__version__}, learned model: bundled FSAI")
    n = 100 if args.quick else 300
    msh = dolfinx.mesh.create_unit_square(COMM, n, n, diagonal=dolfinx.mesh.DiagonalType.crossed)
    A = diffusion_operator(msh, seed=SEED)
    bench(A, f"2D unit square {n}x{n} (crossed), unseen κ")
    A.destroy()
    msh3 = box_with_cavity(0.1 if args.quick else 0.03, COMM).mesh
    msh3.topology.create_entities(1)
    msh3 = dolfinx.mesh.refine(msh3)[0]
    A = diffusion_operator(msh3, seed=SEED)
    bench(A, "3D box with cavity (gmsh, refined once), unseen κ and geometry "
             "(trained on regular and jiggled unit cubes)")
    A.destroy()


if __name__ == "__main__":
    main()
