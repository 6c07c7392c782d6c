"""Gradient verification: Taylor remainder tests, collective-safe."""

from __future__ import annotations

from collections.abc import Callable

from mpi4py import MPI

import numpy as np
import torch


class TaylorResult(list):
    """Convergence rates of the first-order Taylor remainder (a list of floats).

    Attributes:
        remainders: ``|J(m + h dm) - J(m) - h dJ.dm|`` for each step ``h``.
        steps: The steps ``h``.
        dJdm: The directional derivative from autograd.
    """

    remainders: list[float]
    steps: list[float]
    dJdm: float


def taylor_test(fn: Callable[[torch.Tensor], torch.Tensor], m: torch.Tensor, dm: torch.Tensor, *,
                h0: float = 1e-2, n_steps: int = 4, reduce_gradient: bool = True,
                comm: MPI.Comm = MPI.COMM_WORLD) -> TaylorResult:
    """First-order Taylor remainder rates of ``fn`` at ``m`` in direction ``dm``.

    ``fn`` maps a tensor to a scalar (0-dim) tensor with the same value on every rank, e.g. a
    loss reduced by :func:`dnf.parallel.sum`. With a correct gradient the remainder
    ``|fn(m + h dm) - fn(m) - h <grad, dm>|`` falls as ``h^2``: rates near 2. A wrong gradient
    gives rates near 1.

    Args:
        fn: The function to test; called ``n_steps + 1`` times, collectively.
        m, dm: Point and direction (same shape); distributed (owned dofs) or replicated.
        h0: Largest step; each next step halves it.
        reduce_gradient: Sum ``<grad, dm>`` over ranks (the deepnum-fem convention: a rank's
            gradient is its share). Set False for a function computed redundantly on every
            rank without ``dnf.parallel``.

    Returns:
        The ``n_steps - 1`` rates, with ``.remainders``, ``.steps`` and ``.dJdm``.
    """
    if m.shape != dm.shape:
        raise ValueError(f"taylor_test: m and dm must have one shape, got {tuple(m.shape)} and "
                         f"{tuple(dm.shape)}")
    m0 = m.detach().clone().requires_grad_(True)
    J0 = fn(m0)
    if J0.dim() != 0:
        raise ValueError(f"taylor_test: fn must return a 0-dim tensor, got shape {tuple(J0.shape)}")
    (grad,) = torch.autograd.grad(J0, m0, allow_unused=True)
    local = 0.0 if grad is None else float((grad.detach() * dm).sum())
    dJdm = comm.allreduce(local, op=MPI.SUM) if reduce_gradient else local
    with torch.no_grad():
        return _remainder_rates(lambda h: float(fn(m.detach() + h * dm)), float(J0), dJdm, h0, n_steps)


def taylor_test_parameters(loss_fn: Callable[[], torch.Tensor], module: torch.nn.Module, *,
                           direction: list[torch.Tensor] | None = None, h0: float = 1e-2, n_steps: int = 4,
                           seed: int = 0, comm: MPI.Comm = MPI.COMM_WORLD) -> TaylorResult:
    """Taylor remainder rates of ``loss_fn()`` in the parameters of ``module``.

    The direction (random from ``seed`` unless given) is the same on every rank, as the
    parameters are; each rank's ``.grad`` share is summed over ranks. The parameters are
    restored afterwards.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    if direction is None:
        gen = torch.Generator().manual_seed(seed)
        direction = [torch.rand(p.shape, generator=gen, dtype=torch.float64).to(p) for p in params]
    saved = [p.detach().clone() for p in params]
    J0 = loss_fn()
    grads = torch.autograd.grad(J0, params, allow_unused=True)
    local = sum(float((g * d).sum()) for g, d in zip(grads, direction, strict=True) if g is not None)
    dJdm = comm.allreduce(local, op=MPI.SUM)

    def at(h: float) -> float:
        for p, p0, d in zip(params, saved, direction, strict=True):
            p.copy_(p0 + h * d)
        return float(loss_fn())

    try:
        with torch.no_grad():
            return _remainder_rates(at, float(J0), dJdm, h0, n_steps)
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, saved, strict=True):
                p.copy_(p0)


def _remainder_rates(J_at: Callable[[float], float], J0: float, dJdm: float, h0: float,
                     n_steps: int) -> TaylorResult:
    steps = [h0 / 2**k for k in range(n_steps)]
    remainders = [abs(J_at(h) - J0 - h * dJdm) for h in steps]
    rates = TaylorResult(
        float(np.log(remainders[k] / remainders[k + 1]) / np.log(2.0)) if remainders[k + 1] > 0
        else float("inf") for k in range(n_steps - 1))
    rates.remainders, rates.steps, rates.dJdm = remainders, steps, dJdm
    return rates
