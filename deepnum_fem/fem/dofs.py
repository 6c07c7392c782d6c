"""Owned degrees of freedom of a DOLFINx Function (the entries a rank owns, block size included)."""

from __future__ import annotations

import dolfinx.fem
import numpy as np

__all__ = ["n_owned", "owned_array"]


def n_owned(u: dolfinx.fem.Function) -> int:
    """Number of owned scalar entries of ``u``: owned dofs times block size."""
    imap = u.function_space.dofmap.index_map
    return imap.size_local * u.function_space.dofmap.index_map_bs


def owned_array(u: dolfinx.fem.Function) -> np.ndarray:
    """View (no copy) of the owned entries of ``u.x.array``."""
    return u.x.array[: n_owned(u)]
