"""Learned preconditioners against classical ones on operators they were not trained on.

Run: ``mpirun -n N python bench/precond.py [--quick] [--repeats R]``. CG to a 1e-8 relative
residual (random right-hand side, zero initial guess) with:

* ``none``, ``jacobi``, ``icc0`` (ICC(0); block-Jacobi + ICC(0) on several ranks), ``gamg``
  (PETSc's algebraic multigrid, default options);
* ``learned-fsai``: the stand-alone learned FSAI (pattern of ``Â²``, the bundled model);
* ``two-level``: plain-aggregation coarse space + the learned FSAI smoother (pattern of ``Â``,
  the bundled model trained for that role), and the same cycle with PETSc's damped Jacobi
  (``two-level-jacobi``) and SOR (``two-level-sor``) smoothers, to show what the learned
  smoother contributes.

Setup (everything ``KSPSetUp`` does: factorisations, aggregation, the network's evaluation)
and solve times are listed separately, medians of ``--repeats`` runs, slowest rank. The
training family is unit squares and cubes with isotropic random coefficients; the operators
here are physical and unseen: cardiac diffusion on the bundled left ventricle (rule-based
fibre anisotropy 4:1 and a scar with 10x lower conductivity, u = 0 on the base) and the
bay's depth-weighted Laplacian (``-div(H grad η)``, H 3-40 m, η = 0 on the open sea), on
uniformly refined copies of the bundled meshes; and the cardiac model's own step matrix
``K + M/dt`` (mass-dominated, so easy for every method), the solve it repeats every step.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import log
from mpi4py import MPI
from petsc4py import PETSc

import dolfinx
import dolfinx.fem
import dolfinx.mesh
import numpy as np
import torch
import ufl

import deepnum_fem as dnf
from deepnum_fem.bathymetry import bathymetry_function, shelf_bathymetry
from deepnum_fem.geometry import BAY_COASTLINE, BAY_OPEN_SEA, LV_DIMENSIONS, LV_TAGS
from deepnum_fem.io import load_coast, load_left_ventricle
from deepnum_fem.models.fibres import rule_based_fibres
from deepnum_fem.precond import LearnedFSAI, TwoLevel, block_icc, solve
from deepnum_fem.precond.family import assemble_diffusion, refine

COMM = MPI.COMM_WORLD
METHODS = ("none", "jacobi", "icc0", "gamg", "learned-fsai", "two-level", "two-level-jacobi", "two-level-sor")


def heart_operator(refinements: int = 0, comm: MPI.Comm = MPI.COMM_WORLD, *, scar_factor: float = 0.1,
                   reaction: float = 0.0) -> tuple[PETSc.Mat, dolfinx.fem.FunctionSpace]:
    """Cardiac diffusion on the bundled left ventricle refined ``refinements`` times (P1):
    ``-div(D grad u) + reaction u`` with the rule-based fibre tensor ``D = 0.6 I + 1.8 f⊗f``
    (mm²/ms), ``scar_factor`` times smaller in an ellipsoidal scar in the lateral wall,
    ``u = 0`` on the base. A geometry, anisotropy and coefficient jump unlike the training
    family's. The fibres are computed on the bundled mesh and inherited by the refined cells
    from their parents; the base is the plane ``z = 5`` (see
    :func:`~deepnum_fem.precond.family.refine`). Returns the matrix and its space: keep
    the space while the matrix is in use (the matrix's communicator is the refined mesh's)."""
    data = load_left_ventricle(comm)
    msh = data.mesh
    coarse = rule_based_fibres(msh, data.facet_tags, LV_TAGS["ENDO"], LV_TAGS["EPI"])
    owned_cells = msh.topology.index_map(3).size_local
    values = coarse.x.array.reshape(-1, 3)[coarse.function_space.dofmap.list[:owned_cells, 0]]
    msh, values = refine(msh, refinements, values)
    fibres = dolfinx.fem.Function(dolfinx.fem.functionspace(msh, ("DG", 0, (3,))))
    fibres.x.array.reshape(-1, 3)[fibres.function_space.dofmap.list[: len(values), 0]] = values
    fibres.x.scatter_forward()
    x = ufl.SpatialCoordinate(msh)
    scar = ufl.conditional(ufl.lt(((x[0] - 12.0) / 6.0) ** 2 + (x[1] / 6.0) ** 2 + ((x[2] + 6.0) / 8.0) ** 2, 1.0),
                           scar_factor, 1.0)
    D = scar * (0.6 * ufl.Identity(3) + 1.8 * ufl.outer(fibres, fibres))
    V = dolfinx.fem.functionspace(msh, ("Lagrange", 1))
    base = dolfinx.mesh.locate_entities_boundary(msh, 2, lambda p: np.isclose(p[2], LV_DIMENSIONS["z_base"]))
    return assemble_diffusion(V, D, reaction=reaction, dirichlet_facets=base), V


def coast_operator(refinements: int = 0,
                   comm: MPI.Comm = MPI.COMM_WORLD) -> tuple[PETSc.Mat, dolfinx.fem.FunctionSpace]:
    """The shallow-water wave operator's diffusion part on the bundled bay refined
    ``refinements`` times (P1): ``-div(H grad η)`` with the coastal demo's shelf bathymetry
    ``H`` (3 m at the coast to 40 m offshore, a shelf break), ``η = 0`` on the open sea.
    Returns the matrix and its space, as :func:`heart_operator` does."""
    data = load_coast(comm)
    msh, _ = refine(data.mesh, refinements)
    V = dolfinx.fem.functionspace(msh, ("Lagrange", 1))
    depth = bathymetry_function(V, lambda x: shelf_bathymetry(x, depth_coast=3.0, depth_shelf=12.0,
                                                              depth_ocean=40.0))
    x_sea = BAY_COASTLINE[BAY_OPEN_SEA[0]][0]   # the open sea: the bay's straight eastern edge
    sea = dolfinx.mesh.locate_entities_boundary(msh, 1, lambda p: np.isclose(p[0], x_sea))
    return assemble_diffusion(V, depth, dirichlet_facets=sea), V


def make_ksp(A: PETSc.Mat, name: str, device: str = "cpu"):
    ksp = PETSc.KSP().create(COMM)
    ksp.setOperators(A)
    ksp.setType("cg")
    ksp.setTolerances(rtol=1e-8, atol=1e-50, max_it=50000)
    pc = ksp.getPC()
    ctx = None
    if name == "learned-fsai":
        ctx = LearnedFSAI(device=device)
    elif name.startswith("two-level"):
        ctx = TwoLevel(smoother=name.removeprefix("two-level-") if name != "two-level" else "learned",
                       device=device)
    if ctx is not None:
        pc.setType("python")
        pc.setPythonContext(ctx)
    elif name == "icc0":
        block_icc(ksp)
    else:
        pc.setType(name)
    return ksp, ctx


def run_once(A: PETSc.Mat, b: PETSc.Vec, name: str, device: str) -> dict:
    x = A.createVecRight()
    COMM.Barrier()
    t0 = time.perf_counter()
    ksp, ctx = make_ksp(A, name, device)
    ksp.setUp()
    t_setup = COMM.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    COMM.Barrier()
    t0 = time.perf_counter()
    its = solve(ksp, b, x)
    t_solve = COMM.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    row = {"iterations": its, "setup": t_setup, "solve": t_solve, "apply_ms": None, "coarse": None}
    fsai = ctx if isinstance(ctx, LearnedFSAI) else getattr(ctx, "fsai", None)
    if isinstance(ctx, TwoLevel):
        row["coarse"] = ctx.coarse_size
        row["apply_ms"] = 1e3 * COMM.allreduce(ctx.apply_seconds / max(ctx.applications, 1), op=MPI.MAX)
    elif fsai is not None:
        row["apply_ms"] = 1e3 * COMM.allreduce(fsai.apply_seconds / max(fsai.applications, 1), op=MPI.MAX)
    ksp.destroy()
    x.destroy()
    return row


def bench(A: PETSc.Mat, label: str, repeats: int, methods, device: str) -> list[dict]:
    b = A.createVecLeft()
    b.getArray()[:] = np.random.default_rng(1234 + COMM.rank).normal(size=b.getLocalSize())
    log(f"\n## {label}: {A.getSize()[0]:,} dofs, {COMM.size} rank(s), CG to rtol 1e-8, medians of {repeats}")
    log("| preconditioner | its | setup s | solve s | total s | per apply ms | coarse dofs |\n"
        "|---|---|---|---|---|---|---|")
    rows = []
    for name in methods:
        runs = [run_once(A, b, name, device) for _ in range(repeats)]
        row = {k: (statistics.median(r[k] for r in runs) if runs[0][k] is not None else None) for k in runs[0]}
        row["iterations"] = runs[0]["iterations"]
        row["total"] = row["setup"] + row["solve"]
        row["pc"] = name
        rows.append(row)
        apply = f"{row['apply_ms']:.2f}" if row["apply_ms"] is not None else ""
        coarse = f"{row['coarse']:,}" if row["coarse"] is not None else ""
        log(f"| {name} | {row['iterations']} | {row['setup']:.3f} | {row['solve']:.3f} | {row['total']:.3f} "
            f"| {apply} | {coarse} |")
    icc = next((r for r in rows if r["pc"] == "icc0"), None)
    two = next((r for r in rows if r["pc"] == "two-level"), None)
    if icc is not None and two is not None:
        log(f"two-level vs ICC(0): {icc['iterations'] / two['iterations']:.1f}x fewer iterations, total time "
            f"ratio {two['total'] / icc['total']:.2f}, solve-only ratio {two['solve'] / icc['solve']:.2f}")
    b.destroy()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller meshes, one repeat (well under 5 minutes)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--device", default="cpu", help="where the networks run at setup (cpu, cuda)")
    parser.add_argument("--kinds", nargs="+", default=["heart", "coast", "step"], choices=["heart", "coast", "step"],
                        help="which operators")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    log(f"# deepnum-fem {dnf.__version__}, DOLFINx {dolfinx.__version__}, PETSc "
        f"{'.'.join(map(str, PETSc.Sys.getVersion()))}, torch {torch.__version__} "
        f"({torch.get_num_threads()} thread(s)/rank), network inference on {args.device}")
    cases = ([("heart", 0), ("heart", 1), ("coast", 1), ("coast", 2), ("step", 1)] if args.quick
             else [("heart", 1), ("coast", 2), ("heart", 2), ("coast", 3), ("step", 2)])
    for kind, refinements in (case for case in cases if case[0] in args.kinds):
        t0 = time.perf_counter()
        if kind == "coast":
            A, V = coast_operator(refinements, COMM)
            what = "bay, depth-weighted Laplacian"
        else:   # the monodomain step's matrix K + M/dt, dt = 0.5 ms: what the cardiac model solves
            A, V = heart_operator(refinements, COMM, reaction=0.0 if kind == "heart" else 2.0)
            what = ("left ventricle, fibre-anisotropic diffusion with a scar" if kind == "heart"
                    else "left ventricle, monodomain step matrix (K + M/dt, dt = 0.5 ms)")
        log(f"(assembled in {time.perf_counter() - t0:.1f} s)")
        bench(A, f"{what}, bundled mesh refined {refinements}x", repeats, args.methods, args.device)
        A.destroy()
        del V


if __name__ == "__main__":
    main()
