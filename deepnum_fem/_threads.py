"""Torch's thread policy: one intra-op thread per process unless the user says otherwise."""

from __future__ import annotations

import os

import torch

#: Environment variable that sets torch's intra-op threads per process.
THREADS_VARIABLE = "DNF_TORCH_THREADS"


def limit_torch_threads() -> None:
    """Use one intra-op torch thread per process (per MPI rank), serially too.

    deepnum-fem's networks act on points or small vectors between PETSc solves, which run
    on one thread per rank: torch's default pool (a thread per core) only spins against that
    work and against other ranks, and on a loaded machine it made a serial training epoch
    several times slower (18 s against 2.7 s with one thread, in one measurement on 2 cores).
    ``DNF_TORCH_THREADS=N`` or ``OMP_NUM_THREADS=N`` choose otherwise, and so does
    ``torch.set_num_threads(N)`` after ``import deepnum_fem``.
    """
    if "OMP_NUM_THREADS" in os.environ and THREADS_VARIABLE not in os.environ:
        return
    value = os.environ.get(THREADS_VARIABLE, "1")
    try:
        threads = int(value)
    except ValueError:
        raise ValueError(f"{THREADS_VARIABLE} must be a positive integer, got {value!r}") from None
    if threads < 1:
        raise ValueError(f"{THREADS_VARIABLE} must be a positive integer, got {value!r}")
    torch.set_num_threads(threads)
