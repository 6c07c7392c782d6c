"""Torch thread policy under MPI: one thread per rank unless the user says otherwise."""

from __future__ import annotations

import os

from mpi4py import MPI

import torch


def limit_torch_threads_under_mpi() -> None:
    """Use one intra-op torch thread per rank when running on several ranks.

    Ranks already occupy the cores; torch's own thread pool on top of them oversubscribes
    the machine. ``OMP_NUM_THREADS`` or ``DNF_TORCH_THREADS``, when set, win.
    """
    if MPI.COMM_WORLD.size == 1 or "OMP_NUM_THREADS" in os.environ:
        return
    torch.set_num_threads(int(os.environ.get("DNF_TORCH_THREADS", "1")))
