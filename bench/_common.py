"""Helpers shared by the benchmark scripts: rank-0 printing, collective timing, peak memory."""

from __future__ import annotations

import ctypes
import gc
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


def timed_rounds(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Slowest rank's wall and CPU (process) time of each of ``fns`` in each of ``repeats`` rounds.

    A round runs every function once, so a change of load on the machine (another job) hits
    all of them alike, and ratios are taken within a round.
    """
    wall, cpu = {name: [] for name in fns}, {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            COMM.Barrier()
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            COMM.Barrier()
            wall[name].append(COMM.allreduce(time.perf_counter() - t0, op=MPI.MAX))
            cpu[name].append(COMM.allreduce(time.process_time() - c0, op=MPI.MAX))
    return wall, cpu


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_rss_mib(fn) -> float | None:
    """Largest rank's peak resident memory growth (MiB) while ``fn()`` runs (Linux: VmHWM reset
    through /proc/self/clear_refs; None elsewhere). Freed heap is handed back first
    (``malloc_trim``), so that the start is not padded by earlier runs' free blocks."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _status_kib("VmRSS")
    except OSError:
        base = None
    fn()
    grown = 0 if base is None else _status_kib("VmHWM") - base
    if COMM.allreduce(base is None, op=MPI.LOR):
        return None
    return COMM.allreduce(grown, op=MPI.MAX) / 1024
