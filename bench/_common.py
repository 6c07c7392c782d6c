"""Helpers shared by the benchmark scripts: rank-0 printing and collective median timing."""

from __future__ import annotations

import statistics
import time

from mpi4py import MPI

COMM = MPI.COMM_WORLD


def log(msg: str) -> None:
    if COMM.rank == 0:
        print(msg, flush=True)


def timed(fn, repeats: int) -> float:
    """Median over ``repeats`` of the slowest rank's wall time of ``fn()``."""
    times = []
    for _ in range(repeats):
        COMM.Barrier()
        t0 = time.perf_counter()
        fn()
        COMM.Barrier()
        times.append(COMM.allreduce(time.perf_counter() - t0, op=MPI.MAX))
    return statistics.median(times)
