"""Rollouts of a time-step operation, with optional checkpointing for long horizons."""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import torch
import torch.utils.checkpoint

Step = Callable[[torch.Tensor, int], torch.Tensor]
Observe = Callable[[torch.Tensor, int], torch.Tensor]


def _find_malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl)."""
    try:   # the symbols the process has loaded, libc's among them: no library search at import
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


_MALLOC_TRIM = _find_malloc_trim()


def release_free_heap() -> None:
    """Give the heap's free pages back to the system (glibc's ``malloc_trim(0)``; else nothing).

    A checkpointed rollout frees a block's graph and builds the next one from tensors of the
    same sizes; glibc serves them from a heap that fragments and keeps its free pages resident,
    so without this the resident size grows with the number of blocks, not with what is live.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def rollout(step: Step, u0: torch.Tensor, n_steps: int, *, observe: Observe | None = None,
            checkpoint_every: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply ``u_{k+1} = step(u_k, k)`` for ``k`` from 0 to ``n_steps - 1``.

    Args:
        step: One time step, typically a ``dnf.fem_operator`` whose controls include the
            previous state, wrapped as ``lambda u, k: op(u, f_k)``.
        u0: Initial state.
        n_steps: Number of steps.
        observe: Optional ``observe(u_{k+1}, k) -> tensor`` called after each step; the
            results are stacked (e.g. sensor values or per-step loss terms).
        checkpoint_every: With ``None`` every step keeps what its backward needs (memory
            grows with ``n_steps``). With ``k`` the rollout is cut into blocks of ``k`` steps
            and only block boundaries are kept; each block's forward solves are recomputed in
            the backward pass (about one extra forward per step, memory ~ n_steps / k + k).

    Returns:
        ``(u_final, observations)``; ``observations`` is None without ``observe``.
    """
    if n_steps < 0:
        raise ValueError(f"n_steps must be >= 0, got {n_steps}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive number of steps, got {checkpoint_every}")

    def block(u: torch.Tensor, start: int, stop: int):
        if checkpoint_every is not None:
            release_free_heap()        # once per block, forward and recomputation alike
        obs = []
        for k in range(start, stop):
            u = step(u, k)
            if observe is not None:
                obs.append(observe(u, k))
        return (u, torch.stack(obs)) if obs else (u, None)

    if checkpoint_every is None or not torch.is_grad_enabled():
        return block(u0, 0, n_steps)
    u, chunks = u0, []
    for start in range(0, n_steps, checkpoint_every):
        stop = min(start + checkpoint_every, n_steps)
        u, obs = torch.utils.checkpoint.checkpoint(block, u, start, stop, use_reentrant=False)
        if obs is not None:
            chunks.append(obs)
    return u, (torch.cat(chunks) if chunks else None)
