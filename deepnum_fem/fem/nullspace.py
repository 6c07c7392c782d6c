"""The null space of a singular operator, given by the user: an orthonormal basis and projections."""

from __future__ import annotations

from collections.abc import Sequence

from mpi4py import MPI
from petsc4py import PETSc

import dolfinx.fem
import numpy as np

from deepnum_fem.errors import DeepnumFemError
from deepnum_fem.fem.dofs import owned_array

__all__ = ["NullSpace"]


class NullSpace:
    """An orthonormal basis (owned dofs) of the null space of an operator on ``V``.

    ``"constant"`` gives the constant vector of each block component of ``V`` (``bs`` vectors:
    the constants of a scalar space, the translations of a vector one); a sequence of Functions
    on ``V`` (e.g. rigid-body modes) is orthonormalised. Used for the operator and its
    transpose alike, so it must also be the null space of ``Aᵀ`` (true for symmetric operators).
    """

    def __init__(self, V: dolfinx.fem.FunctionSpace, spec: str | Sequence[dolfinx.fem.Function]):
        self.comm = V.mesh.comm
        bs = V.dofmap.index_map_bs
        n = V.dofmap.index_map.size_local * bs
        if isinstance(spec, str):
            if spec not in ("constant", "constants"):
                raise ValueError(f"nullspace must be 'constant' or a sequence of Functions on u's space, got {spec!r}")
            vectors = []
            for c in range(bs):
                z = np.zeros(n)
                z[c::bs] = 1.0
                vectors.append(z)
        else:
            vectors = []
            for i, f in enumerate(spec):
                if not isinstance(f, dolfinx.fem.Function) or f.function_space != V:
                    raise TypeError(f"nullspace vector {i} must be a dolfinx.fem.Function on u's space, got "
                                    f"{type(f).__name__}")
                vectors.append(owned_array(f).astype(np.float64, copy=True))
            if not vectors:
                raise ValueError("nullspace needs at least one vector")
        self.basis = self._orthonormal(vectors, n)

    def _orthonormal(self, vectors: list[np.ndarray], n: int) -> np.ndarray:
        basis: list[np.ndarray] = []
        for i, z in enumerate(vectors):
            z = z.copy()
            for _ in range(2):   # Gram-Schmidt, twice for stability
                for q in basis:
                    z -= self._dot(q, z) * q
            norm = np.sqrt(self._dot(z, z))
            if not norm > 1e-10 * np.sqrt(self.comm.allreduce(float(vectors[i] @ vectors[i]), op=MPI.SUM)):
                raise DeepnumFemError(f"nullspace vector {i} is zero or a combination of the earlier ones")
            basis.append(z / norm)
        return np.array(basis).reshape(len(basis), n)

    def _dot(self, a: np.ndarray, b: np.ndarray) -> float:
        return self.comm.allreduce(float(a @ b), op=MPI.SUM)

    @property
    def dim(self) -> int:
        return self.basis.shape[0]

    def project(self, values: np.ndarray) -> None:
        """Remove the null-space components of owned ``values`` in place (collective)."""
        local = self.basis @ values
        coefficients = np.empty_like(local)
        self.comm.Allreduce(local, coefficients, op=MPI.SUM)
        values -= coefficients @ self.basis

    def petsc(self, u: dolfinx.fem.Function) -> PETSc.NullSpace:
        """The same basis as a PETSc null space (for Krylov solvers)."""
        vecs = []
        for z in self.basis:
            v = u.x.petsc_vec.duplicate()
            v.getArray()[:] = z
            vecs.append(v)
        return PETSc.NullSpace().create(vectors=vecs, comm=self.comm)
