"""Training-loop helpers that are safe under MPI: progress lines and resumable checkpoints."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from mpi4py import MPI

import torch

__all__ = ["Progress", "finish", "fit", "load_checkpoint", "plot_loss", "resume", "rmse", "save_checkpoint"]


class Progress:
    """Prints ``epoch i/n  loss …  s/epoch  ETA`` on rank 0, flushing at once."""

    def __init__(self, total: int, *, start: int = 0, comm: MPI.Comm = MPI.COMM_WORLD, prefix: str = ""):
        self.total, self.done, self.comm, self.prefix = total, start, comm, prefix
        self._t0 = time.perf_counter()
        self._first = start
        self.seconds_per_epoch = float("nan")

    def update(self, **values: float) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self._t0
        self.seconds_per_epoch = elapsed / max(self.done - self._first, 1)
        eta = self.seconds_per_epoch * (self.total - self.done)
        if self.comm.rank == 0:
            shown = "  ".join(f"{k} {v:.4g}" for k, v in values.items())
            print(f"{self.prefix}epoch {self.done:>4}/{self.total}  {shown}  "
                  f"{self.seconds_per_epoch:6.2f} s/epoch  ETA {eta:6.0f} s", flush=True)


def save_checkpoint(path: str | Path, comm: MPI.Comm = MPI.COMM_WORLD, **state) -> None:
    """Rank 0 writes ``state`` (modules and optimisers are saved by their ``state_dict``)
    atomically: a crash while writing leaves the previous checkpoint intact. Collective."""
    if comm.rank == 0:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {k: (v.state_dict() if hasattr(v, "state_dict") else v) for k, v in state.items()}
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
    comm.Barrier()


def load_checkpoint(path: str | Path, comm: MPI.Comm = MPI.COMM_WORLD, **targets) -> dict:
    """Read a checkpoint on every rank; load the entries named in ``targets`` into those
    modules/optimisers (``load_state_dict``) and return the whole payload."""
    payload = torch.load(Path(path), weights_only=True, map_location="cpu")
    for name, target in targets.items():
        if name not in payload:
            raise KeyError(f"checkpoint {path} has no entry {name!r}; it holds {sorted(payload)}")
        target.load_state_dict(payload[name])
    return payload


def resume(path: str | Path, enabled: bool, comm: MPI.Comm = MPI.COMM_WORLD,
           **targets) -> tuple[int, list, dict | None]:
    """``(start epoch, history, payload)`` from the checkpoint at ``path`` when ``enabled`` and it
    exists (loading ``targets`` as :func:`load_checkpoint` does), else ``(0, [], None)``."""
    path = Path(path)
    if not (enabled and path.exists()):
        return 0, [], None
    payload = load_checkpoint(path, comm, **targets)
    if comm.rank == 0:
        print(f"resumed from {path} at epoch {payload['epoch']}", flush=True)
    return payload["epoch"], payload["history"], payload


def fit(optimizer: torch.optim.Optimizer, closure, *, epochs: int, start: int, history: list,
        checkpoint: str | Path, every: int, comm: MPI.Comm = MPI.COMM_WORLD, monitor=None, **state) -> Progress:
    """Epochs ``start`` to ``epochs``, one ``optimizer.step(closure)`` each (an L-BFGS outer
    iteration): the loss and ``monitor()``'s values appended to ``history`` and shown by
    :class:`Progress`; ``state``, the optimiser, the epoch and the history checkpointed every
    ``every`` epochs and at the end (what :func:`resume` reads back). Returns the
    :class:`Progress` (its ``seconds_per_epoch``); ``history`` is extended in place."""
    progress = Progress(epochs, start=start, comm=comm)
    for epoch in range(start, epochs):
        values = {"loss": float(optimizer.step(closure)), **(monitor() if monitor is not None else {})}
        history.append({"epoch": epoch + 1, **values})
        progress.update(**values)
        if (epoch + 1) % every == 0 or epoch + 1 == epochs:
            save_checkpoint(checkpoint, comm, optimizer=optimizer, epoch=epoch + 1, history=history, **state)
    return progress


def plot_loss(path: str | Path, history: list[dict], title: str, comm: MPI.Comm = MPI.COMM_WORLD) -> None:
    """Rank 0 draws the training loss of ``history`` (``{"epoch", "loss"}`` entries) to a PNG."""
    if comm.rank != 0:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogy([h["epoch"] for h in history], [h["loss"] for h in history])
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    """Root-mean-square difference of two tensors of the same shape that every rank holds whole
    (e.g. sensor series after ``parallel.sum``)."""
    return float(((a - b) ** 2).mean().sqrt())


def finish(out: str | Path, metrics: dict, *, reduction: float, target: float,
           comm: MPI.Comm = MPI.COMM_WORLD) -> None:
    """Rank 0 writes ``metrics.json`` to ``out`` and prints it; every rank exits non-zero when the
    demo's ``reduction`` is below its ``target`` (a demo checks its own result)."""
    if comm.rank == 0:
        (Path(out) / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(json.dumps(metrics, indent=2), flush=True)
    if reduction < target:
        raise SystemExit(f"held-out RMSE fell {reduction:.1f}x, less than the required {target}x")
