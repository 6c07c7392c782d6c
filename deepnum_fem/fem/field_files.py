"""Finite-element fields in a file that any number of ranks can read back: each dof's value
stored with its node's coordinates, matched by position on loading.

A field solved once and reused (a steady wind per direction) is saved on one partition and
loaded on another: DOLFINx numbers dofs per partition, positions do not change. The file is a
NumPy ``.npz`` (no pickles), written by rank 0, with a JSON ``metadata`` entry that the
loader compares with what it expects, so that a field of other parameters is not taken for
this one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from mpi4py import MPI

import dolfinx.fem
import numpy as np

__all__ = ["load_functions", "save_functions"]

#: Positions match when they agree to this fraction of the mesh's extent.
POSITION_TOLERANCE = 1e-9


def save_functions(path: str | Path, functions: Mapping[str, dolfinx.fem.Function], metadata: Mapping) -> None:
    """Write ``functions`` (by name; each on a non-mixed space) and ``metadata`` (JSON-able) to
    ``path`` (collective; rank 0 writes). An error writing is raised on every rank."""
    comm = _comm(functions)
    arrays: dict[str, np.ndarray] = {}
    for name, u in functions.items():
        points, values = _owned_nodes(u)
        gathered = comm.gather((points, values), root=0)
        if comm.rank == 0:
            arrays[f"{name}.points"] = np.concatenate([p for p, _ in gathered])
            arrays[f"{name}.values"] = np.concatenate([v for _, v in gathered])
    error = None
    if comm.rank == 0:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                np.savez(f, metadata=np.array(json.dumps(dict(metadata), sort_keys=True)), **arrays)
        except OSError as e:
            error = f"{type(e).__name__}: {e}"
    error = comm.bcast(error, root=0)
    if error is not None:
        raise OSError(f"save_functions: could not write {path}: {error}")


def load_functions(path: str | Path, functions: Mapping[str, dolfinx.fem.Function], metadata: Mapping) -> bool:
    """Fill ``functions`` (by name) from ``path`` if it exists and was saved with equal
    ``metadata``; return whether it did (collective: the same answer on every rank).

    Raises:
        ValueError: on every rank, when the file's metadata match but its nodes do not (a
            different mesh under the same description).
    """
    comm = _comm(functions)
    path = Path(path)
    wanted = json.dumps(dict(metadata), sort_keys=True)
    found = False
    if comm.rank == 0 and path.is_file():
        with np.load(path, allow_pickle=False) as f:
            found = str(f["metadata"]) == wanted
    if not comm.bcast(found, root=0):
        return False
    problem = None
    with np.load(path, allow_pickle=False) as f:
        for name, u in functions.items():
            if f"{name}.points" not in f.files:
                problem = f"it holds no field {name!r}"
                break
            problem = _fill(u, f[f"{name}.points"], f[f"{name}.values"])
            if problem:
                problem = f"field {name!r}: {problem}"
                break
    problems = comm.allgather(problem)
    failed = [(rank, p) for rank, p in enumerate(problems) if p]
    if failed:
        rank, what = failed[0]
        raise ValueError(f"load_functions: {path} matches the metadata but not the mesh (rank {rank}: {what}); "
                         "delete it or give other metadata")
    return True


def _comm(functions: Mapping[str, dolfinx.fem.Function]) -> MPI.Comm:
    if not functions:
        raise ValueError("no functions given")
    return next(iter(functions.values())).function_space.mesh.comm


def _owned_nodes(u: dolfinx.fem.Function) -> tuple[np.ndarray, np.ndarray]:
    V = u.function_space
    n, bs = V.dofmap.index_map.size_local, V.dofmap.index_map_bs
    return V.tabulate_dof_coordinates()[:n].copy(), u.x.array[: n * bs].reshape(n, bs).copy()


def _keys(points: np.ndarray, scale: float) -> np.ndarray:
    """Rounded positions as one sortable row each."""
    rounded = np.round(points / (scale * POSITION_TOLERANCE)).astype(np.int64)
    return np.ascontiguousarray(rounded).view([("", np.int64)] * points.shape[1]).reshape(-1)


def _fill(u: dolfinx.fem.Function, points: np.ndarray, values: np.ndarray) -> str | None:
    """Write the stored values at this rank's nodes (owned and ghosts); a problem or None."""
    V = u.function_space
    bs = V.dofmap.index_map_bs
    if values.ndim != 2 or values.shape[1] != bs:
        return f"{values.shape[1] if values.ndim == 2 else values.shape} components stored, {bs} expected"
    scale = max(float(np.abs(points).max(initial=0.0)), 1e-300)
    mine = V.tabulate_dof_coordinates()
    stored, local = _keys(points, scale), _keys(mine, scale)
    order = np.argsort(stored)
    hit = order[np.minimum(np.searchsorted(stored[order], local), max(len(order) - 1, 0))] if len(order) else None
    if len(local) and hit is None:
        return "the file holds no nodes"
    # a node whose two copies round apart (last bits across a rounding edge): the nearest one
    for i in np.flatnonzero(stored[hit] != local) if len(local) else ():
        distance = np.abs(points - mine[i]).max(axis=1)
        nearest = int(np.argmin(distance))
        if distance[nearest] > scale * POSITION_TOLERANCE:
            missing = int(np.count_nonzero(np.abs(points[hit] - mine).max(axis=1) > scale * POSITION_TOLERANCE))
            return f"{missing} of its {len(local)} nodes are not in the file"
        hit[i] = nearest
    u.x.array[:] = values[hit].reshape(-1)
    return None
