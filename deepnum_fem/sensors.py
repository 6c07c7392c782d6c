"""Point sensors: values of a distributed Lagrange field at given points, differentiable and parallel.

A point's value is ``Σ_j φ_j(p) u_j`` over the basis functions of the cell holding it. The cell
lives on one rank (the lowest that holds a containing cell takes the point), but its dofs may be
owned by other ranks (ghosts). The weights ``φ_j(p)`` are therefore moved to the dofs' owners,
so that each rank holds a sparse ``(n_points, n_owned)`` matrix ``W_rank`` acting on its owned dofs
and ``u(p) = Σ_ranks W_rank u_owned``: one gather per evaluation, one allreduce for the sum.
In a time loop, evaluate :meth:`PointSensors.local` per step and sum the stacked series once.
"""

from __future__ import annotations

from mpi4py import MPI

import dolfinx.fem
import dolfinx.geometry
import dolfinx.la
import numpy as np
import torch

from deepnum_fem import parallel
from deepnum_fem.convert import n_owned
from deepnum_fem.errors import ShapeError

__all__ = ["PointSensors", "point_weights"]


class PointSensors:
    """Evaluation of a scalar Lagrange space ``V`` at fixed ``points`` (collective to build).

    Args:
        V: A scalar Lagrange space (any degree whose dofs need no permutation, e.g. P1, P2).
        points: ``(n_points, gdim)`` coordinates; each must lie in the mesh.

    ``sensors(u)`` maps owned dofs ``(..., n_owned)`` to the global point values
    ``(..., n_points)``, the same on every rank; ``sensors.local(u)`` is this rank's share.
    Both are differentiable in ``u``.
    """

    def __init__(self, V: dolfinx.fem.FunctionSpace, points: np.ndarray):
        mesh = V.mesh
        if V.dofmap.index_map_bs != 1 or len(V.element.value_shape) != 0:
            raise ShapeError(f"PointSensors: a scalar space expected, got value shape "
                             f"{tuple(V.element.value_shape)} and block size {V.dofmap.index_map_bs}")
        if V.element.needs_dof_transformations:
            raise ValueError("PointSensors: elements whose dofs need transformations (e.g. P3 and up) "
                             "are not supported; use P1 or P2")
        gdim = mesh.geometry.dim
        points = np.asarray(points, dtype=np.float64)
        self.comm, self.points = mesh.comm, points
        _check_replicated_points(points, gdim, self.comm)
        self.n_points, self.n_owned = len(points), n_owned(dolfinx.fem.Function(V))
        self.rows, self.cols, self.values = _local_weights(V, points)

    def local(self, u: torch.Tensor) -> torch.Tensor:
        """This rank's share of the values at the points: ``(..., n_owned) -> (..., n_points)``."""
        if u.shape[-1] != self.n_owned:
            raise ShapeError(f"PointSensors: tensors of shape (..., {self.n_owned}) (owned dofs) expected, "
                             f"got {tuple(u.shape)}")
        rows, cols = self.rows.to(u.device), self.cols.to(u.device)
        contributions = u[..., cols] * self.values.to(device=u.device, dtype=u.dtype)
        out = u.new_zeros(*u.shape[:-1], self.n_points)
        return out.index_add(-1, rows, contributions)

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        """Values at the points, summed over ranks (collective; same on every rank)."""
        return parallel.sum(self.local(u), self.comm)

    def dense(self) -> torch.Tensor:
        """This rank's weights as a dense ``(n_points, n_owned)`` float64 matrix."""
        W = torch.zeros(self.n_points, self.n_owned, dtype=torch.float64)
        W.index_put_((self.rows, self.cols), self.values, accumulate=True)
        return W

    def __repr__(self) -> str:
        return f"PointSensors({self.n_points} points, {self.rows.numel()} local weights)"


def _check_replicated_points(points: np.ndarray, gdim: int, comm: MPI.Comm) -> None:
    """The points are replicated data: the same array on every rank (checked on all ranks together)."""
    error = None
    if points.ndim != 2 or points.shape[1] != gdim:
        error = ShapeError(f"PointSensors: points of shape (n_points, {gdim}) expected, got {points.shape}")
    parallel.raise_on_any_rank(error, comm)
    shapes = comm.allgather(points.shape)
    if any(shape != shapes[0] for shape in shapes):
        raise ShapeError(f"PointSensors: every rank must give the same points (all of them, not its own); "
                         f"got shapes {shapes} on ranks 0..{comm.size - 1}")
    spread = parallel.spread_between_ranks(torch.from_numpy(points), comm)
    if spread != 0:   # NaN counts as differing
        raise ValueError(f"PointSensors: the points differ between ranks (by up to {spread:.3e}); every rank "
                         "must give the same points, e.g. from rank 0 by comm.bcast")


def point_weights(V: dolfinx.fem.FunctionSpace, points: np.ndarray) -> torch.Tensor:
    """Dense weights ``W`` (``(n_points, n_owned)``) with ``parallel.sum(W @ u_owned)`` = ``u(points)``."""
    gdim = V.mesh.geometry.dim
    return PointSensors(V, np.asarray(points, dtype=np.float64).reshape(-1, gdim)).dense()


def _owning_cells(mesh, pts3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point: the rank that takes it (lowest holding a cell) and the local cell (-1 if not here)."""
    tdim = mesh.topology.dim
    n_local_cells = mesh.topology.index_map(tdim).size_local
    tree = dolfinx.geometry.bb_tree(mesh, tdim, entities=np.arange(n_local_cells, dtype=np.int32))
    candidates = dolfinx.geometry.compute_collisions_points(tree, pts3)
    colliding = dolfinx.geometry.compute_colliding_cells(mesh, candidates, pts3)
    cells = np.array([colliding.links(i)[0] if len(colliding.links(i)) else -1 for i in range(len(pts3))],
                     dtype=np.int64)
    local = np.where(cells >= 0, mesh.comm.rank, mesh.comm.size).astype(np.int64)
    owner = np.empty_like(local)
    mesh.comm.Allreduce(local, owner, op=MPI.MIN)
    missing = np.flatnonzero(owner == mesh.comm.size)
    parallel.raise_on_any_rank(
        ValueError(f"PointSensors: points {pts3[missing].tolist()} lie outside the mesh") if missing.size
        else None, mesh.comm)
    return owner, np.where(owner == mesh.comm.rank, cells, -1)


def _local_weights(V, points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """COO weights (rows, owned columns, values) of this rank, after moving ghost weights to owners."""
    mesh = V.mesh
    gdim = mesh.geometry.dim
    pts3 = np.zeros((len(points), 3))
    pts3[:, :gdim] = points
    _, cells = _owning_cells(mesh, pts3)
    x_geom, geom_dofs = mesh.geometry.x, mesh.geometry.dofmaps[0]
    basix_element = V.element.basix_element

    # Every rank assembles one Function per point (weights at its cell's dofs), then a reverse
    # scatter adds ghost entries into their owners. Few sensors: the loop is over points.
    work = dolfinx.fem.Function(V)
    n = n_owned(work)
    rows, cols, values = [], [], []
    for i in range(len(points)):
        work.x.array[:] = 0.0
        if cells[i] >= 0:
            cell = int(cells[i])
            X = mesh.geometry.cmaps[0].pull_back(pts3[i:i + 1, :gdim], x_geom[geom_dofs[cell], :gdim])
            phi = basix_element.tabulate(0, X)[0, 0, :, 0]
            work.x.array[V.dofmap.cell_dofs(cell)] = phi
        work.x.scatter_reverse(dolfinx.la.InsertMode.add)
        nz = np.flatnonzero(work.x.array[:n])
        rows.append(np.full(nz.size, i))
        cols.append(nz)
        values.append(work.x.array[nz].copy())
    if not rows:
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), torch.zeros(0)
    return (torch.from_numpy(np.concatenate(rows).astype(np.int64)),
            torch.from_numpy(np.concatenate(cols).astype(np.int64)),
            torch.from_numpy(np.concatenate(values)))
