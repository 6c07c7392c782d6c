"""Autograd-aware MPI reductions and the data-parallel helpers for torch modules.

Conventions (the documentation's concepts page, "Ownership" and "Collective operations"):

* A *distributed* tensor holds this rank's owned dofs; a *replicated* tensor (a network
  parameter, a Constant's value) is identical on every rank.
* :func:`sum` turns per-rank partial values into the global value on every rank. Its
  backward hands each rank the cotangent of the global value unchanged, so after
  ``loss.backward()`` a replicated leaf's ``.grad`` holds this rank's *share*;
  :func:`allreduce_gradients` adds the shares, as DDP does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

from mpi4py import MPI

import numpy as np
import torch

from deepnum_fem.errors import DeepnumFemError, NetworkError, ShapeError

__all__ = [
    "allreduce_gradients",
    "broadcast_parameters",
    "check_collective_call",
    "check_parameters_identical",
    "spread_between_ranks",
    "mean",
    "raise_on_any_rank",
    "sum",
    "user_code",
]


def raise_on_any_rank(error: BaseException | None, comm: MPI.Comm = MPI.COMM_WORLD) -> None:
    """Raise on every rank if ``error`` is set on any rank (a collective call).

    Each rank passes the exception it would raise, or ``None``. When at least one rank has
    one, all ranks raise: the rank that found the problem raises its own exception, the
    others raise one of the same type that names the failing rank and repeats its message.
    One small allreduce when nothing failed.
    """
    if comm.size == 1:
        if error is not None:
            raise error
        return
    failed = comm.allreduce(int(error is not None), op=MPI.MAX)
    if not failed:
        return
    reports = comm.allgather(None if error is None else (type(error), str(error)))
    if error is not None:
        raise error
    rank, (kind, message) = next((r, rep) for r, rep in enumerate(reports) if rep is not None)
    try:
        remote = kind(f"[rank {rank}] {message}")
    except Exception:  # an exception type whose constructor takes other arguments
        remote = DeepnumFemError(f"[rank {rank}] {kind.__name__}: {message}")
    raise remote


_CHECK_VARIABLE = "DNF_CHECK_COLLECTIVES"
_calls: dict[int, int] = {}   # per communicator handle: the collective calls checked so far


def collective_checks_enabled() -> bool:
    """Whether ``DNF_CHECK_COLLECTIVES`` asks for the per-call check of :func:`check_collective_call`."""
    return os.environ.get(_CHECK_VARIABLE, "0").strip().lower() not in ("", "0", "false", "no", "off")


def check_collective_call(what: str, comm: MPI.Comm = MPI.COMM_WORLD, pattern: tuple = ()) -> None:
    """With ``DNF_CHECK_COLLECTIVES=1`` in the environment: check that every rank is at the same
    call of the same operation with the same ``pattern`` (e.g. which inputs require grad), and
    raise on every rank, naming each rank's call, instead of hanging when they are not.

    Every deepnum-fem operation calls it first, forward and backward; it costs one small
    allgather per call when enabled and nothing otherwise. The rule it checks is the one that
    always holds: every op is collective, called by all ranks in the same order.
    """
    if comm.size == 1 or not collective_checks_enabled():
        return
    key = comm.py2f()
    number = _calls.get(key, 0) + 1
    _calls[key] = number
    mine = (number, what, tuple(pattern))
    calls = comm.allgather(mine)
    if any(c != calls[0] for c in calls):
        listing = "; ".join(f"rank {r}: call #{n} {w}" + (f" {p}" if p else "")
                            for r, (n, w, p) in enumerate(calls))
        raise DeepnumFemError(
            "ranks are not at the same collective call (every deepnum-fem operation must be called "
            f"by all ranks, in the same order, with the same inputs requiring grad): {listing}")


@contextlib.contextmanager
def user_code(what: str, comm: MPI.Comm = MPI.COMM_WORLD) -> Iterator[None]:
    """Run user code (a network's forward or backward, a preconditioner model) collectively.

    Every rank enters the block; at its end the ranks decide together whether any of them
    failed, and if so all raise (a collective call, on success too). A
    :class:`~deepnum_fem.errors.DeepnumFemError` passes through as it is; any other exception
    becomes a :class:`~deepnum_fem.errors.NetworkError` whose message says ``what`` was running
    and gives the original type and message (chained as ``__cause__`` where it happened)::

        with dnf.parallel.user_code("network 'drag' (ml_operator) forward", comm):
            y = net(x)
    """
    error: BaseException | None = None
    try:
        yield
    except DeepnumFemError as e:
        error = e
    except Exception as e:  # noqa: BLE001  (user code may raise anything; reported on all ranks)
        error = NetworkError(f"{what} raised {type(e).__name__}: {e}")
        error.__cause__ = e
    raise_on_any_rank(error, comm)


def network_name(net: object) -> str:
    """How error messages name a network: its ``name`` attribute if it has one, else its class."""
    name = getattr(net, "name", None)
    return f"{type(net).__name__} {name!r}" if isinstance(name, str) else type(net).__name__


class _AllreduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, comm: MPI.Comm) -> torch.Tensor:
        local = x.detach().to("cpu", torch.float64).contiguous().numpy()
        total = np.empty_like(local)
        comm.Allreduce(local, total, op=MPI.SUM)
        return torch.from_numpy(total).to(device=x.device, dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # The global value is one quantity seen identically by every rank: its cotangent is
        # the same everywhere, and d(sum)/d(x_r) is the identity.
        return grad, None


def sum(x: torch.Tensor, comm: MPI.Comm = MPI.COMM_WORLD) -> torch.Tensor:  # noqa: A001
    """Global sum over ranks of ``x`` (any shape), differentiable, identical on every rank.

    Every rank must call it (it is collective) with a tensor of the same shape. Call it on
    a local loss built from an op's output even when this rank holds no data for the loss
    (``u_t[empty_index].sum()``): then this rank's graph still reaches the FEM op, whose
    backward is collective too.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"dnf.parallel.sum expects a torch.Tensor, got {type(x).__name__}")
    check_collective_call("dnf.parallel.sum", comm, (tuple(x.shape), x.requires_grad))
    seen = comm.allgather((tuple(x.shape), x.requires_grad))
    if any(s[0] != seen[0][0] for s in seen):
        raise DeepnumFemError(f"dnf.parallel.sum needs the same shape on every rank, got {[s[0] for s in seen]}")
    if any(s[1] != seen[0][1] for s in seen):
        raise DeepnumFemError(
            "dnf.parallel.sum: the tensor requires grad on rank(s) "
            f"{[r for r, s in enumerate(seen) if s[1]]} but not on {[r for r, s in enumerate(seen) if not s[1]]}; "
            "every rank's graph must reach the FEM ops (their backward is collective): build the "
            "local value from the ops' outputs even where it is empty, e.g. u_t[empty_index].sum()")
    if comm.size == 1:
        return x.clone() if x.requires_grad else x.detach().clone()
    return _AllreduceSum.apply(x, comm)


def mean(x: torch.Tensor, comm: MPI.Comm = MPI.COMM_WORLD) -> torch.Tensor:
    """Mean over all entries of the distributed tensor ``x`` (rank-local pieces of any length)."""
    count = comm.allreduce(x.numel(), op=MPI.SUM)
    if count == 0:
        raise DeepnumFemError("dnf.parallel.mean of a tensor that is empty on every rank")
    return sum(x.sum(), comm) / count


def broadcast_parameters(module: torch.nn.Module, root: int = 0,
                         comm: MPI.Comm = MPI.COMM_WORLD) -> None:
    """Overwrite the parameters and buffers of ``module`` with those of rank ``root``.

    Raises on every rank when the ranks' modules do not have the same tensors (names and
    shapes): rank-local data (node coordinates, per-rank fields) belongs in plain attributes,
    not in buffers.
    """
    tensors = _state_tensors(module)
    shapes = [tuple(t.shape) for t in tensors]
    reference = comm.bcast(shapes if comm.rank == root else None, root=root)
    error = None
    if shapes != reference:
        diff = next((i for i, (a, b) in enumerate(zip(shapes, reference, strict=False)) if a != b),
                    min(len(shapes), len(reference)))
        error = ShapeError(f"broadcast_parameters: rank {comm.rank}'s module differs from rank {root}'s at "
                           f"tensor {diff}: shapes {shapes[diff:diff + 1]} against {reference[diff:diff + 1]} "
                           f"({len(shapes)} against {len(reference)} tensors); rank-local data must not "
                           "be a parameter or buffer")
    raise_on_any_rank(error, comm)
    with torch.no_grad():
        for t in tensors:
            data = comm.bcast(t.detach().cpu().numpy() if comm.rank == root else None, root=root)
            t.copy_(torch.from_numpy(data))


def spread_between_ranks(t: torch.Tensor, comm: MPI.Comm = MPI.COMM_WORLD) -> float:
    """Largest difference between ranks of a tensor that should be replicated (collective;
    0.0 when identical everywhere)."""
    local = np.ascontiguousarray(t.detach().cpu().to(torch.float64).numpy()).reshape(-1)
    hi, lo = np.empty_like(local), np.empty_like(local)
    comm.Allreduce(local, hi, op=MPI.MAX)
    comm.Allreduce(local, lo, op=MPI.MIN)
    return float(np.max(hi - lo)) if local.size else 0.0


def check_parameters_identical(module: torch.nn.Module, comm: MPI.Comm = MPI.COMM_WORLD) -> None:
    """Raise on every rank if the parameters of ``module`` differ between ranks."""
    error = None
    for name, t in module.state_dict().items():
        spread = spread_between_ranks(t, comm)
        if error is None and spread != 0:   # NaN counts as differing
            error = DeepnumFemError(
                f"parameter {name!r} differs between ranks (max spread "
                f"{spread:.3e}); call dnf.parallel.broadcast_parameters(model) first")
    raise_on_any_rank(error, comm)


def allreduce_gradients(module_or_params: torch.nn.Module | Iterable[torch.Tensor],
                        comm: MPI.Comm = MPI.COMM_WORLD) -> None:
    """Sum the ranks' shares of ``.grad`` in place, before ``optimizer.step()``.

    A parameter with no gradient on some rank counts as zero there; all ranks end with the
    same ``.grad`` for every parameter that has one on any rank.
    """
    params = (list(module_or_params.parameters()) if isinstance(module_or_params, torch.nn.Module)
              else list(module_or_params))
    if comm.size == 1:
        return
    has = np.array([p.grad is not None for p in params], dtype=np.int32)
    any_has = np.empty_like(has)
    comm.Allreduce(has, any_has, op=MPI.MAX)
    flat = [p for p, h in zip(params, any_has, strict=True) if h]
    if not flat:
        return
    local = np.concatenate([
        (p.grad.detach().cpu().to(torch.float64).reshape(-1).numpy() if p.grad is not None
         else np.zeros(p.numel())) for p in flat])
    total = np.empty_like(local)
    comm.Allreduce(local, total, op=MPI.SUM)
    offset = 0
    for p in flat:
        n = p.numel()
        g = torch.from_numpy(total[offset:offset + n].copy()).reshape(p.shape)
        p.grad = g.to(device=p.device, dtype=p.dtype)
        offset += n


def _state_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]
