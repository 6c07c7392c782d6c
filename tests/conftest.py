"""MPI-safe pytest set-up: the same tests run on 1 rank and under ``mpirun -n 2``."""

from __future__ import annotations

import gc
import random
import shutil
import tempfile
from pathlib import Path

from mpi4py import MPI

import numpy as np
import pytest
import torch

import deepnum_fem  # noqa: F401  (dolfinx_solver before dolfinx/petsc4py)
from deepnum_fem.fem.problem import destroy_live_problems

COMM = MPI.COMM_WORLD


def pytest_configure(config: pytest.Config) -> None:
    """Under mpirun each rank gets its own base for ``tmp_path``: two pytest processes cleaning
    one ``/tmp/pytest-of-USER`` at the same time race (a PytestWarning, or a removed directory)."""
    if COMM.size > 1 and not config.option.basetemp:
        config.option.basetemp = config._dnf_basetemp = tempfile.mkdtemp(prefix=f"dnf-pytest-rank{COMM.rank}-")


def pytest_unconfigure(config: pytest.Config) -> None:
    made = getattr(config, "_dnf_basetemp", None)
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if COMM.size > 1 and item.get_closest_marker("skip_in_parallel"):
        pytest.skip("runs on one rank only (skip_in_parallel)")


@pytest.fixture(autouse=True)
def _seed_and_synchronise():
    """Seed every RNG identically on every rank; after the test collect garbage and barrier.

    Collecting garbage on all ranks together destroys PETSc objects collectively.
    """
    random.seed(1234)
    np.random.seed(1234)
    torch.manual_seed(1234)
    yield
    gc.collect()
    COMM.Barrier()


@pytest.fixture(autouse=True, scope="module")
def _release_problems_after_each_module():
    """Problems live until destroyed or exit; release each module's, on all ranks together.

    Kept to the end, the whole suite's problems (with their meshes' communicators) exhausted
    MPICH's 2,046 communicators per process under ``mpirun -n 2``, which killed both ranks.
    """
    yield
    destroy_live_problems()
    gc.collect()
    COMM.Barrier()


@pytest.fixture
def comm() -> MPI.Comm:
    return COMM


@pytest.fixture
def mpi_tmp_path():
    """A temporary directory shared by all ranks (made by rank 0), removed afterwards."""
    path = tempfile.mkdtemp(prefix="dnf-test-") if COMM.rank == 0 else None
    path = Path(COMM.bcast(path, root=0))
    yield path
    COMM.Barrier()
    if COMM.rank == 0:
        shutil.rmtree(path, ignore_errors=True)
