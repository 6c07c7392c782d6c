"""Cost of checking every direct solve (true residual, null pivots, constant probe) on a
transport step: the same rollout with the checks and with only the KSP's own convergence test.

    python bench/solve_checks.py [--n 200] [--steps 40] [--rounds 5]
    mpirun -n 2 python bench/solve_checks.py

The model: ``Transport`` on a ``2n x n`` P1 rectangle [0, 2] x [0, 1] (SUPG, Crank–Nicolson,
dt = 0.01, K = 0.001, wind (1, 0), a Gaussian source; MUMPS LU, factorised once). The variants
run in interleaved rounds (each round times each once), and the ratio is the median of the
per-round ratios, so that other jobs on the machine hit both alike.
"""

from __future__ import annotations

import argparse
import statistics

from _common import COMM, log, timed  # bench/ is on sys.path when a script there runs
from mpi4py import MPI  # noqa: F401  (MPI before dolfinx)

import dolfinx.mesh
import torch

from deepnum_fem.fem.checks import SolveChecks
from deepnum_fem.models import Transport, gaussian_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    msh = dolfinx.mesh.create_rectangle(COMM, [[0.0, 0.0], [2.0, 1.0]], [2 * args.n, args.n])
    model = Transport(msh, (1.0, 0.0), dt=0.01, diffusivity=0.001)
    source = gaussian_source(model.coordinates, (0.5, 0.5), 1.0, 0.1)
    n_dofs = COMM.allreduce(model.n)

    def rollout():
        c = model.zeros()
        with torch.no_grad():
            for _ in range(args.steps):
                c = model.step(c, source=source)

    checked = SolveChecks.solution

    def unchecked(self, ksp, what, b, x, *, transpose=False):
        self.converged(ksp, what)

    rollout()   # factorise once, outside the timings
    with_checks, without = [], []
    for _ in range(args.rounds):
        SolveChecks.solution = checked
        with_checks.append(timed(rollout, 1) / args.steps)
        SolveChecks.solution = unchecked
        without.append(timed(rollout, 1) / args.steps)
    SolveChecks.solution = checked
    ratios = [a / b for a, b in zip(with_checks, without, strict=True)]
    log(f"Transport step, {n_dofs} P1 dofs, {COMM.size} rank(s), MUMPS LU (factorised once), {args.steps} steps, "
        f"{args.rounds} interleaved rounds")
    log(f"  with checks     {1e3 * statistics.median(with_checks):7.2f} ms/step (median)")
    log(f"  without checks  {1e3 * statistics.median(without):7.2f} ms/step (median)")
    log(f"  ratio           {statistics.median(ratios):7.3f} (median of per-round ratios)")
    model.destroy()


if __name__ == "__main__":
    main()
