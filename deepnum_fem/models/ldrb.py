"""Laplace–Dirichlet rule-based (LDRB) fibres, sheets and sheet normals for biventricular (or
left-ventricular) meshes, after Bayer, Blake, Plank and Trayanova (2012)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from mpi4py import MPI
from petsc4py import PETSc

import dolfinx.fem
import dolfinx.la
import dolfinx.mesh
import numpy as np
import ufl

from deepnum_fem.models.fibres import solve_laplace, tagged_dofs

__all__ = ["LDRBFibres", "ldrb_coordinates", "ldrb_fibres"]

#: Output spaces of :func:`ldrb_fibres`: one frame per cell, or per vertex.
SPACES = {"DG0": ("DG", 0, (3,)), "P1": ("Lagrange", 1, (3,))}


class LDRBFibres(NamedTuple):
    """The orthonormal, right-handed frame of :func:`ldrb_fibres`: three vector Functions in
    one space (DG0 or P1). Each is a direction: its sign carries no meaning."""

    fibre: dolfinx.fem.Function
    sheet: dolfinx.fem.Function
    normal: dolfinx.fem.Function   # the sheet normal, fibre × sheet


def ldrb_coordinates(mesh: dolfinx.mesh.Mesh, facet_tags: dolfinx.mesh.MeshTags, *,
                     lv_endo: int | Sequence[int], rv_endo: int | Sequence[int] | None,
                     epi: int | Sequence[int], base: int | Sequence[int],
                     apex: Sequence[float] | None = None,
                     petsc_options: dict | None = None) -> dict[str, dolfinx.fem.Function]:
    """The four Laplace solutions of the LDRB method, P1 Functions with ``∂u/∂n = 0`` on the
    boundaries that carry no condition:

    * ``"epi"``: 1 on ``epi``, 0 on both endocardia;
    * ``"lv"``: 1 on ``lv_endo``, 0 on ``rv_endo`` and ``epi``;
    * ``"rv"``: 1 on ``rv_endo``, 0 on ``lv_endo`` and ``epi`` (absent when ``rv_endo`` is None:
      a left ventricle alone);
    * ``"apex_base"``: 1 on ``base``, 0 at the apex: the vertex nearest ``apex`` or, by
      default, the ``epi`` vertex farthest from the plane fitted to the ``base`` vertices.

    The tags are facet tag values, one or several for each surface. CG with GAMG unless
    ``petsc_options`` say otherwise.

    Raises:
        ValueError: on every rank, when a surface's tags tag no facet, or one tag is given
            to two surfaces.
        SolverError: when a Laplace solve does not converge.
    """
    surfaces = {"lv_endo": lv_endo, "rv_endo": rv_endo, "epi": epi, "base": base}
    tags = {name: _as_tags(value) for name, value in surfaces.items() if value is not None}
    names = list(tags)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if shared := sorted(set(tags[a]) & set(tags[b])):
                raise ValueError(f"the {a} and {b} surfaces share the facet tags {shared}; give each surface "
                                 "its own tags")
    V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
    dofs = {name: tagged_dofs(V, facet_tags, t, name) for name, t in tags.items()}

    def laplace(name: str, one: Sequence[str], zero: Sequence[str]) -> dolfinx.fem.Function:
        bcs = [dolfinx.fem.dirichletbc(PETSc.ScalarType(value), np.unique(np.concatenate([dofs[s] for s in group])),
                                       V)
               for group, value in ((one, 1.0), (zero, 0.0))]
        return solve_laplace(V, bcs, name, petsc_options)

    endo = [s for s in ("lv_endo", "rv_endo") if s in dofs]
    out = {"epi": laplace("epi", ["epi"], endo),
           "lv": laplace("lv", ["lv_endo"], [s for s in ("rv_endo", "epi") if s in dofs])}
    if "rv_endo" in dofs:
        out["rv"] = laplace("rv", ["rv_endo"], ["lv_endo", "epi"])
    apex_dofs = _apex_dofs(V, dofs["base"], dofs["epi"], apex)
    bcs = [dolfinx.fem.dirichletbc(PETSc.ScalarType(1.0), dofs["base"], V),
           dolfinx.fem.dirichletbc(PETSc.ScalarType(0.0), apex_dofs, V)]
    out["apex_base"] = solve_laplace(V, bcs, "apex_base", petsc_options)
    return out


def ldrb_fibres(mesh: dolfinx.mesh.Mesh, facet_tags: dolfinx.mesh.MeshTags, *,
                lv_endo: int | Sequence[int], rv_endo: int | Sequence[int] | None,
                epi: int | Sequence[int], base: int | Sequence[int],
                alpha_endo: float = 40.0, alpha_epi: float = -50.0,
                beta_endo: float = -65.0, beta_epi: float = 25.0,
                alpha_endo_rv: float | None = None, beta_endo_rv: float | None = None,
                space: str = "DG0", apex: Sequence[float] | None = None,
                coordinates: dict[str, dolfinx.fem.Function] | None = None,
                petsc_options: dict | None = None) -> LDRBFibres:
    """Fibre, sheet and sheet-normal fields by the Laplace–Dirichlet rule-based method.

    From the :func:`ldrb_coordinates` (or ``coordinates``, if given) ``φ_epi``, ``φ_lv``,
    ``φ_rv`` and ``ψ``, at each cell midpoint (``space="DG0"``, the default, which is what
    :class:`~deepnum_fem.models.Monodomain` takes) or vertex (``"P1"``; the gradients are
    then averaged over the cells round each vertex, weighted by volume):

    1. a frame per surface: ``e_l = ∇ψ/|∇ψ|`` (apex to base), ``e_t`` the transmural direction
       made orthogonal to ``e_l`` (``-∇φ_lv``, ``∇φ_rv``, ``∇φ_epi``: from the left cavity
       outwards, towards the right cavity, towards the epicardium), ``e_c = e_l × e_t``;
    2. each frame turned by the helix angle ``α`` about ``e_t`` (the fibre ``cos α e_c +
       sin α e_l``), then by the sheet angle ``β`` about the fibre (the sheet ``cos β
       (e_t × f) - sin β e_t``);
    3. with the septal depth ``d = φ_rv/(φ_lv + φ_rv)`` (0 at the left endocardium, 1 at the
       right): the left and right frames turned by ``α_s = alpha_endo (1 - d) -
       alpha_endo_rv d`` (and ``β_s`` alike), so that the helix angle is ``alpha_endo`` at the
       left endocardium and ``alpha_endo_rv`` at the right (against the frame pointing away
       from each cavity), and blended into ``Q_endo`` by quaternion interpolation (bislerp)
       at ``d``; the epicardial frame turned by ``α_w = α_endo(d) (1 - φ_epi) +
       alpha_epi φ_epi`` (``α_endo(d) = alpha_endo (1 - d) + alpha_endo_rv d``; ``β_w``
       alike);
    4. the result: the bislerp of ``Q_endo`` and the epicardial frame at ``φ_epi``.

    With ``alpha_endo_rv = alpha_endo`` and ``beta_endo_rv = beta_endo`` (the defaults) this
    is Bayer et al.'s algorithm; its default angles (degrees) are the paper's. With
    ``rv_endo=None`` (a left ventricle) ``Q_endo`` is the left frame.

    Where a frame is undefined (``∇ψ`` parallel to the transmural gradient, as at the apex
    vertex, or a zero gradient) the coordinate axis least aligned with the known direction
    completes it, so the result is orthonormal everywhere, but arbitrary at those points.

    Raises:
        ValueError: on every rank, for an angle outside [-90, 90] degrees, an unknown
            ``space``, or a surface's tags as :func:`ldrb_coordinates` says.
        SolverError: when a Laplace solve does not converge.

    Reference: J. D. Bayer, R. C. Blake, G. Plank, N. A. Trayanova, "A novel rule-based
    algorithm for assigning myocardial fiber orientation to computational heart models",
    Ann. Biomed. Eng. 40: 2243–2254 (2012).
    """
    alpha_endo_rv = alpha_endo if alpha_endo_rv is None else alpha_endo_rv
    beta_endo_rv = beta_endo if beta_endo_rv is None else beta_endo_rv
    angles = {"alpha_endo": alpha_endo, "alpha_epi": alpha_epi, "beta_endo": beta_endo, "beta_epi": beta_epi,
              "alpha_endo_rv": alpha_endo_rv, "beta_endo_rv": beta_endo_rv}
    for name, value in angles.items():
        if not (isinstance(value, int | float | np.floating | np.integer) and -90.0 <= value <= 90.0):
            raise ValueError(f"{name} must be an angle in [-90, 90] degrees, got {value!r}")
    if space not in SPACES:
        raise ValueError(f"space must be one of {list(SPACES)}, got {space!r}")
    if mesh.geometry.dim != 3:
        raise ValueError(f"ldrb_fibres needs a 3D mesh, got geometric dimension {mesh.geometry.dim}")
    if coordinates is None:
        coordinates = ldrb_coordinates(mesh, facet_tags, lv_endo=lv_endo, rv_endo=rv_endo, epi=epi, base=base,
                                       apex=apex, petsc_options=petsc_options)
    W = dolfinx.fem.functionspace(mesh, SPACES[space])
    value, grad = (_cell_values, _cell_gradients) if space == "DG0" else (_vertex_values, _vertex_gradients)
    phi = {name: value(W, u) for name, u in coordinates.items()}
    g = {name: grad(W, u) for name, u in coordinates.items()}

    deg = {name: math.radians(v) for name, v in angles.items()}
    if "rv" in phi:
        total = phi["lv"] + phi["rv"]
        d = np.where(total > 1e-12, phi["rv"] / np.where(total > 1e-12, total, 1.0), 0.0)
    else:
        d = np.zeros_like(phi["lv"])
    e = phi["epi"]
    alpha_s = deg["alpha_endo"] * (1 - d) - deg["alpha_endo_rv"] * d
    beta_s = deg["beta_endo"] * (1 - d) - deg["beta_endo_rv"] * d
    alpha_w = (deg["alpha_endo"] * (1 - d) + deg["alpha_endo_rv"] * d) * (1 - e) + deg["alpha_epi"] * e
    beta_w = (deg["beta_endo"] * (1 - d) + deg["beta_endo_rv"] * d) * (1 - e) + deg["beta_epi"] * e

    q_endo = _orient(_axis(g["apex_base"], -g["lv"]), alpha_s, beta_s)
    if "rv" in phi:
        q_endo = _bislerp(q_endo, _orient(_axis(g["apex_base"], g["rv"]), alpha_s, beta_s), d)
    frame = _bislerp(q_endo, _orient(_axis(g["apex_base"], g["epi"]), alpha_w, beta_w), e)

    out = []
    for column, name in enumerate(LDRBFibres._fields):
        f = dolfinx.fem.Function(W, name=name)
        f.x.array[:] = frame[:, :, column].reshape(-1)
        f.x.scatter_forward()
        out.append(f)
    return LDRBFibres(*out)


def _as_tags(value: int | Sequence[int]) -> list[int]:
    return [int(value)] if isinstance(value, int | np.integer) else [int(t) for t in value]


def _apex_dofs(V: dolfinx.fem.FunctionSpace, base: np.ndarray, epi: np.ndarray,
               apex: Sequence[float] | None) -> np.ndarray:
    """The dofs at the apex vertex (see :func:`ldrb_coordinates`), on every rank that has it."""
    comm = V.mesh.comm
    x = V.tabulate_dof_coordinates()
    n_owned = V.dofmap.index_map.size_local
    scale = float(comm.allreduce(np.ptp(x, axis=0).max(initial=0.0), op=MPI.MAX))
    if apex is None:
        owned = base[base < n_owned]
        centre = comm.allreduce(x[owned].sum(axis=0), op=MPI.SUM) / comm.allreduce(owned.size, op=MPI.SUM)
        spread = comm.allreduce((x[owned] - centre).T @ (x[owned] - centre), op=MPI.SUM)
        normal = np.linalg.eigh(spread)[1][:, 0]   # of the smallest eigenvalue
        candidates = epi[epi < n_owned]
        distance = np.abs((x[candidates] - centre) @ normal)
        best = [(float(distance.max()), tuple(x[candidates[np.argmax(distance)]]))] if candidates.size else []
        offers = [o for rank in comm.allgather(best) for o in rank]
        far = max(o[0] for o in offers)
        # the farthest, ties (within rounding) broken by the coordinates: the same on any partition
        apex = min(o[1] for o in offers if o[0] >= far - 1e-9 * scale)
    point = np.asarray(apex, dtype=np.float64)
    if point.shape != (3,) or not np.all(np.isfinite(point)):
        raise ValueError(f"expected the apex as a point (x, y, z), got {apex!r}")
    distance = np.linalg.norm(x[:n_owned] - point, axis=1)
    near = (float(distance.min()), tuple(x[np.argmin(distance)])) if n_owned else (math.inf, ())
    vertex = np.array(min(comm.allgather(near))[1])   # the mesh vertex nearest to the point
    return np.flatnonzero(np.linalg.norm(x - vertex, axis=1) <= 1e-12 * scale).astype(np.int32)


def _block_map(W: dolfinx.fem.FunctionSpace, V: dolfinx.fem.FunctionSpace) -> np.ndarray:
    """For each block (vector dof) of ``W``, the dof of the scalar space ``V`` at the same place."""
    blocks = np.empty(W.dofmap.index_map.size_local + W.dofmap.index_map.num_ghosts, dtype=np.int32)
    blocks[W.dofmap.list.reshape(-1)] = V.dofmap.list.reshape(-1)
    return blocks


def _cell_values(W: dolfinx.fem.FunctionSpace, u: dolfinx.fem.Function) -> np.ndarray:
    """``u`` at the midpoint of each cell, in the order of the DG0 space ``W``'s blocks."""
    Q = dolfinx.fem.functionspace(W.mesh, ("DG", 0))
    q = dolfinx.fem.Function(Q)
    q.interpolate(dolfinx.fem.Expression(u, Q.element.interpolation_points))
    return q.x.array[_block_map(W, Q)]


def _cell_gradients(W: dolfinx.fem.FunctionSpace, u: dolfinx.fem.Function) -> np.ndarray:
    """``∇u`` on each cell, ``(blocks, 3)``."""
    g = dolfinx.fem.Function(W)
    g.interpolate(dolfinx.fem.Expression(ufl.grad(u), W.element.interpolation_points))
    return g.x.array.reshape(-1, 3).copy()


def _vertex_values(W: dolfinx.fem.FunctionSpace, u: dolfinx.fem.Function) -> np.ndarray:
    return u.x.array[_block_map(W, u.function_space)]


def _vertex_gradients(W: dolfinx.fem.FunctionSpace, u: dolfinx.fem.Function) -> np.ndarray:
    """``∇u`` at each vertex: the volume-weighted mean of the cells' (a lumped L² projection)."""
    v = ufl.TestFunction(W)
    one = dolfinx.fem.Constant(W.mesh, np.ones(3, dtype=PETSc.ScalarType))
    b, m = (dolfinx.fem.assemble_vector(dolfinx.fem.form(ufl.inner(f, v) * ufl.dx)) for f in (ufl.grad(u), one))
    for vec in (b, m):
        vec.scatter_reverse(dolfinx.la.InsertMode.add)
        vec.scatter_forward()
    return (b.array / m.array).reshape(-1, 3)


def _unit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``v`` normalised (zero rows stay zero) and their norms."""
    norm = np.linalg.norm(v, axis=1)
    return v / np.where(norm > 0, norm, 1.0)[:, None], norm


def _least_aligned_axis(e: np.ndarray) -> np.ndarray:
    """For each unit row of ``e``, the coordinate axis least aligned with it, minus its ``e`` part, normalised."""
    axes = np.eye(3)[np.argmin(np.abs(e), axis=1)]
    return _unit(axes - np.sum(axes * e, axis=1)[:, None] * e)[0]


def _axis(g_long: np.ndarray, g_trans: np.ndarray) -> np.ndarray:
    """Frames ``[e_c, e_l, e_t]`` (columns; shape ``(n, 3, 3)``) from the apex-base and
    transmural gradients (rows): ``e_l`` along ``g_long``, ``e_t`` along ``g_trans`` made
    orthogonal to it, ``e_c = e_l × e_t``."""
    e_l, norm_l = _unit(g_long)
    e_t_raw = g_trans - np.sum(g_trans * e_l, axis=1)[:, None] * e_l
    e_t, norm_t = _unit(e_t_raw)
    no_long = norm_l == 0
    if no_long.any():   # no apex-base direction: complete the transmural one
        e_t[no_long] = _unit(g_trans[no_long])[0]
        e_t[no_long & (np.linalg.norm(e_t, axis=1) == 0)] = (0.0, 0.0, 1.0)
        e_l[no_long] = _least_aligned_axis(e_t[no_long])
    degenerate = ~no_long & (norm_t <= 1e-10 * np.linalg.norm(g_trans, axis=1))
    if degenerate.any():   # the transmural gradient along e_l, or zero
        e_t[degenerate] = _least_aligned_axis(e_l[degenerate])
    return np.stack([np.cross(e_l, e_t), e_l, e_t], axis=2)


def _orient(frame: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``frame`` turned by ``alpha`` about its third column, then by ``beta`` about the new first."""
    n = frame.shape[0]
    ca, sa, cb, sb = np.cos(alpha), np.sin(alpha), np.cos(beta), np.sin(beta)
    turn = np.zeros((n, 3, 3))
    # Rz(α) Rx(-β): columns f = (cα, sα, 0), s = (-sα cβ, cα cβ, -sβ), n = (-sα sβ, cα sβ, cβ)
    turn[:, 0, 0], turn[:, 1, 0] = ca, sa
    turn[:, 0, 1], turn[:, 1, 1], turn[:, 2, 1] = -sa * cb, ca * cb, -sb
    turn[:, 0, 2], turn[:, 1, 2], turn[:, 2, 2] = -sa * sb, ca * sb, cb
    return frame @ turn


def _quaternions(Q: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(w, x, y, z)`` of the rotation matrices ``Q`` (Shepperd's method:
    from the largest of the trace and the diagonal, for accuracy)."""
    t = np.stack([Q[:, 0, 0] + Q[:, 1, 1] + Q[:, 2, 2], Q[:, 0, 0], Q[:, 1, 1], Q[:, 2, 2]], axis=1)
    case = np.argmax(t, axis=1)
    q = np.empty((Q.shape[0], 4))
    r32, r23 = Q[:, 2, 1], Q[:, 1, 2]
    r13, r31 = Q[:, 0, 2], Q[:, 2, 0]
    r21, r12 = Q[:, 1, 0], Q[:, 0, 1]
    for k in range(4):
        i = case == k
        if not i.any():
            continue
        if k == 0:
            r = np.sqrt(1.0 + t[i, 0])
            q[i] = np.column_stack([r / 2, (r32[i] - r23[i]) / (2 * r), (r13[i] - r31[i]) / (2 * r),
                                    (r21[i] - r12[i]) / (2 * r)])
        else:
            r = np.sqrt(1.0 + 2 * t[i, k] - t[i, 0])   # 1 + Q_kk - (the other two)
            s = 2 * r
            if k == 1:
                q[i] = np.column_stack([(r32[i] - r23[i]) / s, r / 2, (r12[i] + r21[i]) / s, (r13[i] + r31[i]) / s])
            elif k == 2:
                q[i] = np.column_stack([(r13[i] - r31[i]) / s, (r12[i] + r21[i]) / s, r / 2, (r23[i] + r32[i]) / s])
            else:
                q[i] = np.column_stack([(r21[i] - r12[i]) / s, (r13[i] + r31[i]) / s, (r23[i] + r32[i]) / s, r / 2])
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _rotations(q: np.ndarray) -> np.ndarray:
    """Rotation matrices of the unit quaternions ``q`` (rows ``(w, x, y, z)``)."""
    w, x, y, z = q.T
    return np.stack([np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=1),
                     np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=1),
                     np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1)],
                    axis=1)


def _bislerp(Qa: np.ndarray, Qb: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Frames between ``Qa`` (t = 0) and ``Qb`` (t = 1), by spherical interpolation of quaternions.

    A frame and the frame with two of its axes reversed (turned by π about the third) stand
    for the same fibre, sheet and normal lines, so ``Qa`` is first replaced by whichever of
    its four such versions is nearest ``Qb``.
    """
    qa, qb = _quaternions(Qa), _quaternions(Qb)
    w, x, y, z = qa.T
    # qa times the quaternions i, j, k: qa turned by π about its own first, second, third axis
    versions = np.stack([qa, np.column_stack([-x, w, z, -y]), np.column_stack([-y, -z, w, x]),
                         np.column_stack([-z, y, -x, w])], axis=1)
    dots = np.einsum("nvk,nk->nv", versions, qb)
    best = np.argmax(np.abs(dots), axis=1)
    qm = versions[np.arange(len(qa)), best]
    dot = dots[np.arange(len(qa)), best]
    qb = np.where(dot[:, None] < 0, -qb, qb)   # the shorter way round
    theta = np.arccos(np.clip(np.abs(dot), 0.0, 1.0))
    sin = np.sin(theta)
    small = sin < 1e-9
    safe = np.where(small, 1.0, sin)
    a = np.where(small, 1 - t, np.sin((1 - t) * theta) / safe)
    b = np.where(small, t, np.sin(t * theta) / safe)
    q = a[:, None] * qm + b[:, None] * qb
    return _rotations(q / np.linalg.norm(q, axis=1, keepdims=True))
