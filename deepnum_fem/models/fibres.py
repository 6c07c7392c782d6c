"""Rule-based myocardial fibres: a transmural Laplace coordinate and helix angles per cell (and
the checked Laplace solve that :mod:`~deepnum_fem.models.ldrb` shares)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from mpi4py import MPI
from petsc4py import PETSc

import dolfinx.fem
import dolfinx.fem.petsc
import dolfinx.mesh
import numpy as np
import ufl

from deepnum_fem.errors import SolverError
from deepnum_fem.fem.checks import reason_name
from deepnum_fem.fem.options import solver_options

__all__ = ["rule_based_fibres", "solve_laplace", "tagged_dofs", "transmural_coordinate"]

_prefix_counter = itertools.count()
#: CG with PETSc's own algebraic multigrid (hypre is not in every PETSc build).
_DEFAULT_OPTIONS = {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-12, "ksp_atol": 1e-14,
                    "ksp_max_it": 500}


def transmural_coordinate(mesh: dolfinx.mesh.Mesh, facet_tags: dolfinx.mesh.MeshTags,
                          endo: int | Sequence[int], epi: int | Sequence[int], *,
                          petsc_options: dict | None = None) -> dolfinx.fem.Function:
    """The P1 solution of ``-Δφ = 0`` with ``φ = 0`` on ``endo`` facets and ``φ = 1`` on ``epi``.

    Other boundaries (the base) carry the natural condition ``∂φ/∂n = 0``. ``endo`` and ``epi``
    are facet tag values (one or several each). The linear system is solved by CG with
    PETSc's GAMG unless ``petsc_options`` says otherwise.

    Raises:
        ValueError: on every rank, when ``endo`` or ``epi`` tags no facet of the mesh.
        SolverError: when the linear solve does not converge.
    """
    V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
    bcs = [dolfinx.fem.dirichletbc(PETSc.ScalarType(value), tagged_dofs(V, facet_tags, tags, name), V)
           for name, tags, value in (("endo", endo, 0.0), ("epi", epi, 1.0))]
    return solve_laplace(V, bcs, "transmural", petsc_options)


def tagged_dofs(V: dolfinx.fem.FunctionSpace, facet_tags: dolfinx.mesh.MeshTags, tags: int | Sequence[int],
                role: str) -> np.ndarray:
    """The dofs of ``V`` on the facets carrying any of ``tags`` (an int or several).

    Raises:
        ValueError: on every rank, when ``facet_tags`` are not facet tags or no facet of the
            mesh carries ``tags`` (the message names the ``role`` of those tags).
    """
    mesh = V.mesh
    tdim = mesh.topology.dim
    if facet_tags.dim != tdim - 1:
        raise ValueError(f"expected facet tags (dimension {tdim - 1}), got tags of dimension {facet_tags.dim}")
    mesh.topology.create_connectivity(tdim - 1, tdim)
    tags = [tags] if isinstance(tags, int | np.integer) else list(tags)
    facets = np.unique(np.concatenate([facet_tags.find(t) for t in tags] or [np.empty(0, np.int32)]))
    if mesh.comm.allreduce(facets.size, op=MPI.SUM) == 0:
        found = np.unique(np.concatenate(mesh.comm.allgather(facet_tags.values))).tolist()
        raise ValueError(f"no facet carries the {role} tags {tags}; the facet tags are {found}")
    return dolfinx.fem.locate_dofs_topological(V, tdim - 1, facets.astype(np.int32))


def solve_laplace(V: dolfinx.fem.FunctionSpace, bcs: list, name: str,
                  petsc_options: dict | None = None) -> dolfinx.fem.Function:
    """The solution in ``V`` of ``-Δφ = 0`` with the Dirichlet conditions ``bcs`` and
    ``∂φ/∂n = 0`` elsewhere; CG with GAMG unless ``petsc_options`` say otherwise.

    Raises:
        SolverError: when the linear solve does not converge.
    """
    mesh = V.mesh
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    a = ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx
    L = ufl.inner(dolfinx.fem.Constant(mesh, PETSc.ScalarType(0.0)), v) * ufl.dx
    prefix = f"dnf_{name}{next(_prefix_counter)}_"
    options = solver_options(petsc_options, _DEFAULT_OPTIONS)
    problem = dolfinx.fem.petsc.LinearProblem(a, L, bcs=bcs, petsc_options=options,
                                              petsc_options_prefix=prefix)
    phi = problem.solve().copy()
    reason = problem.solver.getConvergedReason()
    problem.__del__()   # now, on every rank together, not when garbage collection gets to it
    if reason <= 0:
        raise SolverError(f"{name} Laplace solve ({prefix}) did not converge: KSP reason {reason_name(reason)}; "
                          "try petsc_options={'ksp_type': 'preonly', 'pc_type': 'lu'}")
    for bc in bcs:   # exactly the boundary values there (an iterative solve leaves ~1e-14)
        bc.set(phi.x.array)
    phi.name = name
    return phi


def rule_based_fibres(mesh: dolfinx.mesh.Mesh, facet_tags: dolfinx.mesh.MeshTags,
                      endo: int | Sequence[int], epi: int | Sequence[int], *,
                      alpha_endo: float = 60.0, alpha_epi: float = -60.0,
                      long_axis: Sequence[float] = (0.0, 0.0, 1.0),
                      transmural: dolfinx.fem.Function | None = None) -> dolfinx.fem.Function:
    """Unit fibre directions, one per cell (a DG0 vector Function), from helix-angle rules.

    In each cell, with ``φ`` the :func:`transmural_coordinate` (or ``transmural`` if given):
    ``e_t = ∇φ/|∇φ|`` (endocardium to epicardium); ``e_l`` the ``long_axis`` made orthogonal to
    ``e_t`` and normalised (the coordinate axis least aligned with ``e_t`` where the long axis is
    parallel to it, e.g. at the apex); ``e_c = e_l × e_t``; the helix angle
    ``α = alpha_endo + (alpha_epi - alpha_endo) φ`` (degrees, ``φ`` at the cell midpoint); the
    fibre ``f = cos α e_c + sin α e_l``.
    """
    if mesh.geometry.dim != 3:
        raise ValueError(f"rule_based_fibres needs a 3D mesh, got geometric dimension {mesh.geometry.dim}")
    k = np.asarray(long_axis, dtype=np.float64)
    if k.shape != (3,) or not np.linalg.norm(k) > 0:
        raise ValueError(f"expected a nonzero long_axis of 3 components, got {long_axis}")
    phi = transmural if transmural is not None else transmural_coordinate(mesh, facet_tags, endo, epi)

    W = dolfinx.fem.functionspace(mesh, ("DG", 0, (3,)))
    Q = dolfinx.fem.functionspace(mesh, ("DG", 0))
    grad_phi, phi_cell = dolfinx.fem.Function(W), dolfinx.fem.Function(Q)
    grad_phi.interpolate(dolfinx.fem.Expression(ufl.grad(phi), W.element.interpolation_points))
    phi_cell.interpolate(dolfinx.fem.Expression(phi, Q.element.interpolation_points))

    n_cells = mesh.topology.index_map(mesh.topology.dim).size_local
    w_dofs, q_dofs = W.dofmap.list[:n_cells, 0], Q.dofmap.list[:n_cells, 0]
    e_t, e_l = _transmural_and_longitudinal(grad_phi.x.array.reshape(-1, 3)[w_dofs], k / np.linalg.norm(k))
    e_c = np.cross(e_l, e_t)
    alpha = np.deg2rad(alpha_endo + (alpha_epi - alpha_endo) * phi_cell.x.array[q_dofs])

    fibres = dolfinx.fem.Function(W, name="fibres")
    fibres.x.array.reshape(-1, 3)[w_dofs] = np.cos(alpha)[:, None] * e_c + np.sin(alpha)[:, None] * e_l
    fibres.x.scatter_forward()
    return fibres


def _transmural_and_longitudinal(grad: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit ``e_t`` along ``grad`` (rows) and unit ``e_l``: ``k`` with its ``e_t`` part removed."""
    norm = np.linalg.norm(grad, axis=1, keepdims=True)
    e_t = np.where(norm > 0, grad / np.where(norm > 0, norm, 1.0), k)   # no gradient at all: use k
    e_l = k - (e_t @ k)[:, None] * e_t
    parallel = np.linalg.norm(e_l, axis=1) < 1e-8
    if parallel.any():   # k ∥ e_t: use the coordinate axis least aligned with e_t instead
        axes = np.eye(3)[np.argmin(np.abs(e_t[parallel]), axis=1)]
        e_l[parallel] = axes - np.sum(axes * e_t[parallel], axis=1)[:, None] * e_t[parallel]
    return e_t, e_l / np.linalg.norm(e_l, axis=1, keepdims=True)
