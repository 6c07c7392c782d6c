"""Operator families for training and testing preconditioners: variable-coefficient diffusion."""

from __future__ import annotations

from mpi4py import MPI
from petsc4py import PETSc

import dolfinx
import dolfinx.fem
import dolfinx.fem.petsc
import dolfinx.mesh
import numpy as np
import ufl

__all__ = ["assemble_diffusion", "diffusion_operator", "random_log_coefficient", "refine"]


def random_log_coefficient(seed: int, *, modes: int = 4, contrast: float = 2.0):
    """A smooth random field ``x -> exp(contrast * Σ a_k cos(...))`` of O(1) correlation length."""
    rng = np.random.default_rng(seed)
    amp = rng.normal(size=(modes, modes)) / np.arange(1, modes + 1)[:, None] / np.arange(1, modes + 1)[None, :]
    phase = rng.uniform(0, 2 * np.pi, size=(modes, modes, 2))

    def kappa(x: np.ndarray) -> np.ndarray:
        s = np.zeros(x.shape[1])
        for i in range(modes):
            for j in range(modes):
                s += amp[i, j] * np.cos(np.pi * (i + 1) * x[0] + phase[i, j, 0]) * np.cos(
                    np.pi * (j + 1) * x[1] + phase[i, j, 1])
        return np.exp(contrast * s / max(np.abs(amp).sum() ** 0.5, 1e-12))

    return kappa


def diffusion_operator(msh: dolfinx.mesh.Mesh, seed: int, *, degree: int = 1, reaction: float = 0.0,
                       dirichlet: bool = True) -> PETSc.Mat:
    """Assembled ``-div(κ grad u) + reaction u`` with a random ``κ`` (seeded), Dirichlet rows = I."""
    V = dolfinx.fem.functionspace(msh, ("Lagrange", degree))
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    kappa = dolfinx.fem.Function(dolfinx.fem.functionspace(msh, ("Lagrange", 1)))
    kappa.interpolate(random_log_coefficient(seed))
    a = kappa * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx
    if reaction:
        a += reaction * u * v * ufl.dx
    bcs = []
    if dirichlet:
        tdim = msh.topology.dim
        msh.topology.create_connectivity(tdim - 1, tdim)
        facets = dolfinx.mesh.exterior_facet_indices(msh.topology)
        bcs = [dolfinx.fem.dirichletbc(0.0, dolfinx.fem.locate_dofs_topological(V, tdim - 1, facets), V)]
    A = dolfinx.fem.petsc.assemble_matrix(dolfinx.fem.form(a), bcs=bcs)
    A.assemble()
    return A


def assemble_diffusion(V: dolfinx.fem.FunctionSpace, coefficient, *, reaction: float = 0.0,
                       dirichlet_facets: np.ndarray | None = None) -> PETSc.Mat:
    """``-div(coefficient grad u) + reaction u`` on ``V`` (scalar or tensor coefficient),
    Dirichlet rows = I on ``dirichlet_facets`` (indices of ``tdim - 1`` entities)."""
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    a = ufl.inner(coefficient * ufl.grad(u), ufl.grad(v)) * ufl.dx
    if reaction:
        a += reaction * u * v * ufl.dx
    bcs = []
    if dirichlet_facets is not None:
        fdim = V.mesh.topology.dim - 1
        V.mesh.topology.create_connectivity(fdim, fdim + 1)
        bcs = [dolfinx.fem.dirichletbc(0.0, dolfinx.fem.locate_dofs_topological(V, fdim, dirichlet_facets), V)]
    A = dolfinx.fem.petsc.assemble_matrix(dolfinx.fem.form(a), bcs=bcs)
    A.assemble()
    return A


def refine(msh: dolfinx.mesh.Mesh, times: int, cell_values: np.ndarray | None = None):
    """``msh`` refined uniformly ``times`` times, and ``cell_values`` (one row per owned cell)
    inherited by the new cells from their parents.

    Facet tags are not carried over: DOLFINx 0.11's refinement with facet parents fails in
    parallel (a double free in 3D, ``bad_alloc`` on a refined 2D mesh), so callers find their
    boundaries geometrically."""
    comm = msh.comm
    for _ in range(times):
        msh.topology.create_entities(1)
        msh, parent, _ = dolfinx.mesh.refine(msh, option=dolfinx.mesh.RefinementOption.parent_cell)
        if cell_values is not None:
            # parent[k]: the (owned) parent of the k-th cell this rank created; the refined mesh
            # reorders its cells, and original_cell_index counts the created cells over all ranks
            first = comm.exscan(len(parent)) or 0
            created = np.asarray(msh.topology.original_cell_index[: _owned_cells(msh)]) - first
            cell_values = cell_values[parent[created]]
    return msh, cell_values


def _owned_cells(msh: dolfinx.mesh.Mesh) -> int:
    return msh.topology.index_map(msh.topology.dim).size_local


def jiggled_unit_cube(n: int, *, amplitude: float = 0.3, seed: int = 0,
                      comm: MPI.Comm = MPI.COMM_SELF) -> dolfinx.mesh.Mesh:
    """A unit cube of tetrahedra whose interior vertices are moved at random by up to
    ``amplitude`` cell sizes: irregular tetrahedra like an unstructured mesh's (serial only)."""
    msh = dolfinx.mesh.create_unit_cube(comm, n, n, n)
    x = msh.geometry.x
    interior = np.all((x > 1e-9) & (x < 1 - 1e-9), axis=1)
    rng = np.random.default_rng(seed)
    x[interior] += rng.uniform(-amplitude, amplitude, size=(int(interior.sum()), 3)) / n
    return msh


def training_family(sizes=(8, 12, 16, 20), sizes_3d=(4, 6, 8), sizes_jiggled=(5, 7, 9), seeds=range(6),
                    comm: MPI.Comm = MPI.COMM_SELF, pattern: str = "A2", coarse: bool = False):
    """Serial training matrices: unit squares (crossed diagonals), unit cubes and jiggled unit
    cubes of several sizes, each with several seeded coefficient fields (``pattern`` and
    ``coarse`` as in :class:`~deepnum_fem.precond.fsai.TrainingMatrix`)."""
    from deepnum_fem.precond.fsai import TrainingMatrix

    meshes = [dolfinx.mesh.create_unit_square(comm, n, n, diagonal=dolfinx.mesh.DiagonalType.crossed)
              for n in sizes]
    meshes += [dolfinx.mesh.create_unit_cube(comm, n, n, n) for n in sizes_3d]
    meshes += [jiggled_unit_cube(n, seed=n, comm=comm) for n in sizes_jiggled]
    mats = []
    for k, msh in enumerate(meshes):
        for s in seeds:
            A = diffusion_operator(msh, seed=1000 * (k + 1) + s)
            mats.append(TrainingMatrix(A, pattern, coarse))
            A.destroy()
    return mats
