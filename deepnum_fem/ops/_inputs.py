"""Collective validation of the tensors handed to a torch operation over FEM data."""

from __future__ import annotations

from collections.abc import Sequence

from mpi4py import MPI

import numpy as np
import torch

from deepnum_fem.errors import DeepnumFemError, DeviceError, DTypeError, NonFiniteError, ShapeError
from deepnum_fem.fem.controls import Control
from deepnum_fem.parallel import check_collective_call, raise_on_any_rank, spread_between_ranks

_REAL = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def check_inputs(name: str, tensors: Sequence, controls: Sequence[Control],
                 comm: MPI.Comm, parameters: Sequence[torch.Tensor] = (), call: str | None = None) -> int | None:
    """Check count, type, dtype, device, shape and finiteness on every rank together, and that
    every rank has the same batch size and the same inputs (and network ``parameters``)
    requiring grad: a rank whose graph lacks the op would leave the others waiting in its
    collective backward.

    A tensor has the control's shape, or a leading batch dimension in front of it; all
    batched tensors share the batch size. ``call`` names the op for the collective-call check
    (:func:`deepnum_fem.parallel.check_collective_call`). Returns the batch size, or None when
    unbatched.
    """
    grads = tuple(bool(getattr(t, "requires_grad", False)) for t in tensors)
    grads_params = any(p.requires_grad for p in parameters)
    check_collective_call(f"{call or name} forward", comm, (grads, grads_params))
    error: Exception | None = None
    batch: int | None = None
    try:
        if len(tensors) != len(controls):
            raise TypeError(f"{name} takes {len(controls)} tensor(s), one per control "
                            f"({', '.join(c.describe() for c in controls)}), got {len(tensors)}")
        devices = set()
        for i, (t, c) in enumerate(zip(tensors, controls, strict=True)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name}: input {i} must be a torch.Tensor, got {type(t).__name__}")
            if t.dtype not in _REAL:
                raise DTypeError(f"{name}: input {i} ({c.describe()}) must be a real floating tensor "
                                 f"(float64 preferred), got dtype {t.dtype}")
            devices.add(t.device)
            shape = tuple(t.shape)
            if shape == c.shape:
                pass
            elif len(shape) == len(c.shape) + 1 and shape[1:] == c.shape:
                if batch is not None and shape[0] != batch:
                    raise ShapeError(f"{name}: batched inputs disagree on the batch size: "
                                     f"{batch} and {shape[0]} (input {i})")
                batch = shape[0]
                if batch == 0:
                    raise ShapeError(f"{name}: input {i} ({c.describe()}) is a batch of size 0 (shape "
                                     f"{shape}); give at least one sample, or shape {c.shape} for one")
            else:
                raise ShapeError(f"{name}: input {i} ({c.describe()}) must have shape {c.shape} "
                                 f"or (batch, *{c.shape}), got {shape}")
            if t.device.type == "meta":
                raise DeviceError(f"{name}: input {i} is on the 'meta' device, which holds no data; "
                                  "expected a cpu or cuda tensor")
            if not bool(torch.isfinite(t.detach()).all()):
                bad = int((~torch.isfinite(t.detach())).sum())
                raise NonFiniteError(f"{name}: input {i} ({c.describe()}) holds {bad} NaN/Inf "
                                     "value(s) on this rank")
        if len(devices) > 1:
            raise DeviceError(f"{name}: all inputs must be on one device, got {sorted(map(str, devices))}")
    except Exception as e:  # noqa: BLE001  (reported collectively below)
        error = e
    raise_on_any_rank(error, comm)
    if comm.size > 1:
        seen = comm.allgather((batch, grads, grads_params))
        batches = [s[0] for s in seen]
        if any(b != batches[0] for b in batches):
            raise ShapeError(f"{name}: ranks disagree on the batch size: {batches}")
        if any(s[1:] != seen[0][1:] for s in seen):
            listing = "; ".join(f"rank {r}: inputs {list(g)}" + (", network weights" if p else "")
                                for r, (_, g, p) in enumerate(seen))
            raise DeepnumFemError(
                f"{name}: the inputs that require grad differ between ranks ({listing}); the op's "
                "backward is collective, so every rank must record it the same way: set "
                "requires_grad on the same inputs on every rank")
    _check_replicated(name, tensors, controls, comm)
    return batch


def _check_replicated(name, tensors, controls, comm) -> None:
    """Constants are replicated: their tensors must hold the same values on every rank."""
    if comm.size == 1:
        return
    error = None
    for i, (t, c) in enumerate(zip(tensors, controls, strict=True)):
        if not c.is_constant:
            continue
        if spread_between_ranks(t, comm) != 0 and error is None:   # NaN counts as differing
            error = ValueError(f"{name}: input {i} ({c.describe()}) differs between ranks; a "
                               "Constant's tensor must be identical on every rank")
    raise_on_any_rank(error, comm)


def is_batched(t: torch.Tensor, c: Control) -> bool:
    return t.dim() == len(c.shape) + 1


def host_values(tensors: Sequence[torch.Tensor], controls: Sequence[Control],
                batch: int | None) -> list[list[np.ndarray]]:
    """Per-sample float64 host copies: ``values[b][i]`` for sample ``b``, input ``i``."""
    arrays = [t.detach().to("cpu", torch.float64).numpy() for t in tensors]
    if batch is None:
        return [arrays]
    flags = [is_batched(t, c) for t, c in zip(tensors, controls, strict=True)]
    return [[a[b] if f else a for a, f in zip(arrays, flags, strict=True)] for b in range(batch)]


def gather_gradients(tensors: Sequence[torch.Tensor], controls: Sequence[Control],
                     per_sample: Sequence[Sequence[np.ndarray | None]], needed: Sequence[bool],
                     batch: int | None) -> list[torch.Tensor | None]:
    """Per-input gradients from per-sample host arrays: stacked for a batched input, summed
    over samples for a shared one, on the input's device and dtype."""
    grads: list[torch.Tensor | None] = []
    for i, (t, c) in enumerate(zip(tensors, controls, strict=True)):
        if not needed[i]:
            grads.append(None)
            continue
        parts = [sample[i] for sample in per_sample]
        g = np.stack(parts) if batch is not None and is_batched(t, c) else np.sum(parts, axis=0)
        grads.append(torch.from_numpy(np.asarray(g)).to(device=t.device, dtype=t.dtype))
    return grads
