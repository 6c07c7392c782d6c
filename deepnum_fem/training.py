"""Training-loop helpers that are safe under MPI: progress lines and resumable checkpoints."""

from __future__ import annotations

import json
import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path

from mpi4py import MPI

import torch

from deepnum_fem.errors import DeepnumFemError
from deepnum_fem.parallel import raise_on_any_rank

__all__ = ["Progress", "finish", "fit", "load_checkpoint", "plot_loss", "resume", "rmse", "save_checkpoint"]

_FIT_KEYS = ("optimizer", "epoch", "history")   # what fit() itself writes into a checkpoint
_REMEDY = "delete it to start afresh, or pass a checkpoint from an earlier run instead"


class Progress:
    """Prints ``epoch i/n  loss …  s/epoch  ETA`` on rank 0, flushing at once.

    ``total`` is the whole run's epoch count and ``start`` the epochs done before (by the run
    that wrote the checkpoint resumed from): resuming at 4 of 8, the first line is ``epoch 5/8``.
    """

    def __init__(self, total: int, *, start: int = 0, comm: MPI.Comm = MPI.COMM_WORLD, prefix: str = ""):
        self.total, self.done, self.comm, self.prefix = total, start, comm, prefix
        self._t0 = time.perf_counter()
        self._first = start
        self.seconds_per_epoch = float("nan")

    def update(self, **values: float) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self._t0
        self.seconds_per_epoch = elapsed / max(self.done - self._first, 1)
        eta = self.seconds_per_epoch * max(self.total - self.done, 0)
        if self.comm.rank == 0:
            shown = "  ".join(f"{k} {v:.4g}" for k, v in values.items())
            print(f"{self.prefix}epoch {self.done:>{len(str(self.total))}}/{self.total}  {shown}  "
                  f"{self.seconds_per_epoch:6.2f} s/epoch  ETA {eta:6.0f} s", flush=True)


def save_checkpoint(path: str | Path, comm: MPI.Comm = MPI.COMM_WORLD, **state) -> None:
    """Rank 0 writes ``state`` (modules and optimisers are saved by their ``state_dict``, tensors
    detached) atomically: a crash while writing leaves the previous checkpoint intact. Collective."""
    if comm.rank == 0:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {k: _saved(v) for k, v in state.items()}
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
    comm.Barrier()


def _saved(value):
    if hasattr(value, "state_dict"):
        return value.state_dict()
    return value.detach() if isinstance(value, torch.Tensor) else value


def read_weights(path: Path) -> tuple[dict | None, str | None]:
    """``torch.load(path, weights_only=True)`` of a dict, as ``(payload, None)``, or
    ``(None, what is wrong with the file)``. Rank-local; torch's own advice to retry with
    ``weights_only=False`` (which runs whatever code the file holds) is never passed on."""
    if not path.exists():
        return None, "it does not exist"
    if not path.is_file():
        return None, "it is not a file"
    try:
        with path.open("rb"):
            pass
    except OSError as e:
        return None, f"it cannot be read ({e.strerror or e})"
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        return None, ("it is not a torch.save file of tensors, numbers, strings and containers of them "
                      "(only such files are read: unpickling anything else could run code from the file)")
    except Exception as e:  # noqa: BLE001  (torch raises OSError, RuntimeError, EOFError, KeyError... on a bad file)
        size = path.stat().st_size
        return None, ("it is empty" if size == 0 else
                      f"it is truncated or damaged, or was not written by torch.save ({size} bytes; "
                      f"torch.load raised {type(e).__name__})")
    if not isinstance(payload, dict):
        return None, f"it holds a {type(payload).__name__}, not a dict of named entries"
    return payload, None


def load_checkpoint(path: str | Path, comm: MPI.Comm = MPI.COMM_WORLD, **targets) -> dict:
    """Read a checkpoint on every rank; load the entries named in ``targets`` into those
    modules/optimisers (``load_state_dict``) or tensors (copied in place) and return the whole
    payload. Collective: a missing, truncated or corrupt file, or one without an entry asked
    for, raises a :class:`~deepnum_fem.errors.DeepnumFemError` on every rank, whichever rank
    found it. Only tensors, numbers, strings and containers of them are read
    (``torch.load(weights_only=True)``)."""
    path = Path(path)
    payload, problem = read_weights(path)
    if problem is None:
        missing = [name for name in targets if name not in payload]
        if missing:
            problem = f"it has no entry {', '.join(map(repr, missing))} (it holds {sorted(payload)})"
    raise_on_any_rank(None if problem is None else
                      DeepnumFemError(f"checkpoint {path} is not a valid checkpoint: {problem}; {_REMEDY}"), comm)
    error = None
    for name, target in targets.items():
        try:
            if isinstance(target, torch.Tensor):
                with torch.no_grad():
                    target.copy_(payload[name])
            else:
                target.load_state_dict(payload[name])
        except Exception as e:  # noqa: BLE001  (reported on every rank)
            error = DeepnumFemError(f"checkpoint {path}: its entry {name!r} does not fit the "
                                    f"{type(target).__name__} it is loaded into ({type(e).__name__}: {e}); "
                                    f"{_REMEDY}")
            break
    raise_on_any_rank(error, comm)
    return payload


def resume(path: str | Path, enabled: bool = True, comm: MPI.Comm = MPI.COMM_WORLD, *,
           optimizer: torch.optim.Optimizer | None = None,
           state: dict | None = None) -> tuple[int, list, dict | None]:
    """``(epochs done, history, payload)`` from the checkpoint :func:`fit` wrote at ``path``
    when ``enabled`` and it exists, else ``(0, [], None)``.

    ``optimizer`` and the modules and tensors in ``state`` (the same ``state`` as :func:`fit`'s)
    are loaded from it, as :func:`load_checkpoint` does; other entries (numbers) are in the
    payload. Collective: the file must exist on every rank or on none.
    """
    path = Path(path)
    state = _checked_state(state)
    if not enabled:
        return 0, [], None
    found = comm.allgather(path.exists())
    if not any(found):
        return 0, [], None
    if not all(found):
        raise DeepnumFemError(f"checkpoint {path} exists on rank(s) {[r for r, f in enumerate(found) if f]} "
                              f"only: every rank reads it, so it must be on a file system all ranks share")
    targets = {**state, **({} if optimizer is None else {"optimizer": optimizer})}
    payload = load_checkpoint(path, comm, **targets)
    missing = [k for k in _FIT_KEYS[1:] if k not in payload]
    raise_on_any_rank(DeepnumFemError(
        f"checkpoint {path} has no {' or '.join(map(repr, missing))} entry (it holds {sorted(payload)}): "
        f"it was not written by deepnum_fem.training.fit; {_REMEDY}") if missing else None, comm)
    if comm.rank == 0:
        print(f"resumed from {path} at epoch {payload['epoch']}", flush=True)
    return int(payload["epoch"]), list(payload["history"]), payload


def fit(optimizer: torch.optim.Optimizer, closure: Callable[[], torch.Tensor], *, epochs: int, start: int,
        history: list, checkpoint: str | Path, every: int, state: dict | None = None,
        monitor: Callable[[], dict] | None = None, comm: MPI.Comm = MPI.COMM_WORLD) -> Progress:
    """Train from epoch ``start`` to ``epochs``, one ``optimizer.step(closure)`` per epoch.

    Args:
        optimizer: Any torch optimiser; with ``torch.optim.LBFGS`` an epoch is one outer
            iteration (up to ``max_iter`` inner iterations).
        closure: Zeroes the gradients, evaluates the loss, calls ``backward`` and returns the
            loss, as ``optimizer.step`` expects.
        epochs: The run's total number of epochs, those before a resume included: resumed at
            4 of 8, it trains epochs 5 to 8 and prints ``epoch 5/8`` first.
        start: Epochs already done (from :func:`resume`; 0 for a fresh run).
        history: Extended in place with ``{"epoch": e, "loss": …, **monitor()}`` per epoch.
        checkpoint: Written every ``every`` epochs and after the last one.
        state: Further entries to checkpoint by name: modules (their ``state_dict``), tensors
            and numbers; pass the same dict to :func:`resume`.
        monitor: Returns extra values (floats) to show and record after each epoch.
        comm: The ranks training together.

    The loss reported for an epoch is the value ``optimizer.step(closure)`` returns; for
    L-BFGS that is the closure's first evaluation in the step, the loss at the start of the
    epoch, before its update (so the last entry is the loss before the last epoch's step).
    The checkpoint holds ``"optimizer"`` (its ``state_dict``), ``"epoch"`` (epochs done),
    ``"history"`` and the entries of ``state``: what :func:`resume` reads back.

    Returns:
        The :class:`Progress` (its ``seconds_per_epoch``).
    """
    state = _checked_state(state)
    progress = Progress(epochs, start=start, comm=comm)
    if start >= epochs and comm.rank == 0:
        print(f"nothing to train: {start} epoch(s) done already, of {epochs} in all (epochs counts "
              "those before the resume too)", flush=True)

    def detached_closure():
        loss = closure()
        return loss.detach() if isinstance(loss, torch.Tensor) else loss

    for epoch in range(start, epochs):
        loss = optimizer.step(detached_closure)
        values = {"loss": float(loss), **(monitor() if monitor is not None else {})}
        history.append({"epoch": epoch + 1, **values})
        progress.update(**values)
        if (epoch + 1) % every == 0 or epoch + 1 == epochs:
            save_checkpoint(checkpoint, comm, **state, optimizer=optimizer, epoch=epoch + 1, history=history)
    return progress


def _checked_state(state: dict | None) -> dict:
    state = {} if state is None else dict(state)
    clash = [k for k in _FIT_KEYS if k in state]
    if clash:
        raise ValueError(f"state entries {clash} clash with what fit() checkpoints itself ({list(_FIT_KEYS)}); "
                         "pass the optimiser as optimizer= and rename the others")
    return state


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
    return float(((a - b) ** 2).mean().sqrt().detach())


def finish(out: str | Path, metrics: dict, *, reduction: float, target: float,
           comm: MPI.Comm = MPI.COMM_WORLD) -> None:
    """Rank 0 writes ``metrics.json`` to ``out`` and prints it; every rank exits non-zero when the
    demo's ``reduction`` is below its ``target`` (a demo checks its own result)."""
    if comm.rank == 0:
        (Path(out) / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(json.dumps(metrics, indent=2), flush=True)
    if reduction < target:
        raise SystemExit(f"held-out RMSE fell {reduction:.1f}x, less than the required {target}x")
