"""Plain aggregation on a matrix graph: the coarse space of :class:`~deepnum_fem.precond.TwoLevel`.

Aggregates are made on each rank's owned rows alone (decoupled aggregation: none crosses a
rank boundary, so no communication is needed). Roots are a maximal independent set of the
strong-connection graph at distance two (Luby's method, vectorised with numpy: a few rounds
of neighbourhood maxima over the CSR arrays); each root's aggregate is the root and its strong
neighbours, and the nodes left over join a neighbouring aggregate. Nodes with no strong
neighbour (Dirichlet rows, for instance) belong to no aggregate: the smoother alone treats
them.
"""

from __future__ import annotations

from mpi4py import MPI
from petsc4py import PETSc

import numpy as np

__all__ = ["aggregates", "tentative_prolongator"]


def _local_block(A: PETSc.Mat) -> PETSc.Mat:
    return A.getDiagonalBlock() if A.getComm().getSize() > 1 else A


def _neighbour_max(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per row, the largest ``values`` over its (closed, never empty) neighbourhood."""
    return np.maximum.reduceat(values[indices], indptr[:-1])


def aggregates(A: PETSc.Mat, *, theta: float = 0.08, seed: int = 0) -> tuple[np.ndarray, int]:
    """Aggregate index of each owned row (``-1``: in none) and the number of aggregates on this rank.

    A connection ``i–j`` is strong when ``|a_ij| ≥ theta √(a_ii a_jj)``. Local, no communication.
    """
    indptr, indices, data = _local_block(A).getValuesCSR()
    n = len(indptr) - 1
    diag = np.abs(A.getDiagonal().getArray(readonly=True))
    rows = np.repeat(np.arange(n), np.diff(indptr))
    strong = (np.abs(data) >= theta * np.sqrt(diag[rows] * diag[indices])) | (rows == indices)
    degree = np.bincount(rows[strong], minlength=n)
    sp = np.concatenate([[0], np.cumsum(degree)])
    si = indices[strong]
    isolated = degree <= 1            # only the diagonal

    priority = np.random.default_rng(seed).random(n, dtype=np.float32)   # float32, int8, int32: the
    # rounds are memory-bound gathers
    undecided = ~isolated
    root = np.zeros(n, bool)
    while undecided.any():
        m1 = _neighbour_max(sp, si, np.where(undecided, priority, np.float32(-1)))
        new = undecided & (priority >= _neighbour_max(sp, si, m1))
        root |= new
        near = _neighbour_max(sp, si, new.view(np.int8))
        undecided &= _neighbour_max(sp, si, near) == 0

    agg = np.full(n, -1, dtype=np.int32)
    count = int(root.sum())
    agg[root] = np.arange(count)
    for _ in range(2):                # strong neighbours of a root, then their neighbours
        free = (agg < 0) & ~isolated
        join = _neighbour_max(sp, si, agg)
        agg[free] = join[free]
    left = (agg < 0) & ~isolated      # rare: no aggregate within distance two
    agg[left] = count + np.arange(int(left.sum()))
    return agg, count + int(left.sum())


def tentative_prolongator(A: PETSc.Mat, *, theta: float = 0.08, seed: int = 0) -> PETSc.Mat:
    """The piecewise-constant ``P`` (rows of ``A`` × aggregates of all ranks), distributed like ``A``."""
    comm = A.getComm().tompi4py()
    agg, count = aggregates(A, theta=theta, seed=seed)
    offset = comm.exscan(count) or 0
    total = comm.allreduce(count, op=MPI.SUM)
    member = agg >= 0
    indptr = np.concatenate([[0], np.cumsum(member)]).astype(PETSc.IntType)
    P = PETSc.Mat().createAIJ(((len(agg), A.getSize()[0]), (count, total)), comm=A.getComm())
    P.setPreallocationCSR((indptr, (agg[member] + offset).astype(PETSc.IntType), np.ones(int(member.sum()))))
    P.assemble()
    return P
