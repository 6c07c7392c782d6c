"""Copies between DOLFINx Functions and torch tensors: owned dofs, block size, ghosts."""

from __future__ import annotations

import dolfinx.fem
import numpy as np
import torch

from deepnum_fem.errors import DeviceError, DTypeError, ShapeError
from deepnum_fem.fem.dofs import n_owned, owned_array
from deepnum_fem.parallel import raise_on_any_rank

__all__ = ["from_torch", "n_owned", "owned_array", "to_torch"]

_FLOAT_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def to_torch(u: dolfinx.fem.Function, *, dtype: torch.dtype = torch.float64,
             device: torch.device | str = "cpu") -> torch.Tensor:
    """Copy the owned degrees of freedom of ``u`` into a new 1D tensor.

    Args:
        u: The function to read.
        dtype: A floating dtype for the tensor (float64 by default, as DOLFINx computes).
        device: Where the tensor lives (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).

    Returns:
        Tensor of shape ``(n_owned * bs,)`` in DOLFINx's dof order (blocked entries
        interleaved, as in ``u.x.array``); it does not share memory with ``u``.
    """
    if dtype not in _FLOAT_DTYPES:
        raise DTypeError(f"to_torch needs a real floating dtype, one of {_FLOAT_DTYPES}, got {dtype}")
    if np.iscomplexobj(u.x.array):
        raise DTypeError("to_torch supports real-valued DOLFINx builds only, got a complex Function")
    try:
        device = torch.device(device)
    except RuntimeError as e:
        raise DeviceError(f"to_torch got an unknown device {device!r}: {e}") from None
    return torch.tensor(owned_array(u), dtype=dtype, device=device)


def from_torch(t: torch.Tensor, u: dolfinx.fem.Function) -> dolfinx.fem.Function:
    """Write the tensor ``t`` into the owned dofs of ``u``, then refresh the ghosts.

    Collective: every rank of ``u``'s mesh must call it. A bad tensor on any rank raises
    on every rank. ``t`` may be any real floating dtype on any device; it is copied to the
    host and cast to ``u``'s dtype. Autograd history on ``t`` is ignored.

    Args:
        t: Tensor of shape ``(n_owned * bs,)`` (``n_owned`` of ``u``'s index map).
        u: The function to write.

    Returns:
        ``u``, for chaining.
    """
    comm = u.function_space.mesh.comm
    expected = (n_owned(u),)
    error: Exception | None = None
    if not isinstance(t, torch.Tensor):
        error = TypeError(f"from_torch expects a torch.Tensor, got {type(t).__name__}")
    elif tuple(t.shape) != expected:
        bs = u.function_space.dofmap.index_map_bs
        error = ShapeError(
            f"from_torch expected a tensor of shape {expected} for {_describe(u)} "
            f"({expected[0] // bs} owned dofs x block size {bs}), got {tuple(t.shape)}")
    elif t.dtype not in _FLOAT_DTYPES:
        error = DTypeError(f"from_torch expected a real floating tensor (float64 preferred), "
                           f"got dtype {t.dtype}")
    elif t.device.type == "meta":
        error = DeviceError("from_torch got a tensor on the 'meta' device, which holds no data; "
                            "expected a cpu or cuda tensor")
    raise_on_any_rank(error, comm)
    owned_array(u)[:] = t.detach().to("cpu", torch.float64).numpy()
    u.x.scatter_forward()
    return u


def _describe(u: dolfinx.fem.Function) -> str:
    e = u.function_space.ufl_element()
    return f"Function {u.name!r} in {e}"
