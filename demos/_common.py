"""What the training demos share: rank-0 printing and their command-line options.

``demos/`` is on ``sys.path`` when a script there runs, so a demo imports this as ``_common``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mpi4py import MPI

COMM = MPI.COMM_WORLD


def log(*a) -> None:
    """Print on rank 0 only."""
    if COMM.rank == 0:
        print(*a, flush=True)


def training_parser(description: str, *, out: str, epochs: int, iterations: int, save_every: int,
                    target: float, checkpoint_every: int | None, quick: str) -> argparse.ArgumentParser:
    """A parser with the options every training demo has; the demo adds its own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", type=Path, default=Path(out))
    p.add_argument("--epochs", type=int, default=epochs,
                   help="epochs in all: with --resume, training continues from the checkpoint up to this count")
    p.add_argument("--iterations", type=int, default=iterations, help="L-BFGS iterations per epoch")
    p.add_argument("--checkpoint-every", type=int, default=checkpoint_every, help="steps per recomputed block")
    p.add_argument("--save-every", type=int, default=save_every, help="epochs between checkpoints")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--quick", action="store_true", help=f"{quick} (the tests)")
    p.add_argument("--target", type=float, default=target, help="required held-out RMSE reduction")
    return p


def owned_rmse(a, b) -> float:
    """RMSE over every rank of two tensors of owned values (collective; the same on every rank)."""
    import math

    import torch

    from deepnum_fem import parallel

    n = parallel.sum(torch.tensor(float(a.numel()), dtype=torch.float64), COMM)
    return math.sqrt(float(parallel.sum(((a - b) ** 2).sum(), COMM) / n))


class ReplicatedField:
    """A scalar field's owned dofs as one vector replicated on every rank, ordered by node
    position (x, then y, then z), so that L-BFGS (which takes dot products of whole vectors)
    and checkpoints see the same numbers for any number of ranks.

    ``owned(values)`` picks this rank's owned dofs from the replicated ``values``; its
    gradient is nonzero at those entries only, so ``dnf.parallel.allreduce_gradients`` makes
    the whole gradient on every rank.
    """

    def __init__(self, space):
        import numpy as np
        import torch

        n = space.dofmap.index_map.size_local
        mine = space.tabulate_dof_coordinates()[:n, : space.mesh.geometry.dim]
        everyone = np.concatenate(COMM.allgather(mine))
        order = np.lexsort(tuple(np.round(everyone[:, i], 6) for i in reversed(range(everyone.shape[1]))))
        rank_of = np.argsort(order)                      # position of each gathered node
        start = sum(COMM.allgather(n)[: COMM.rank])
        self.mine = torch.from_numpy(rank_of[start:start + n].astype(np.int64))
        self.size = len(everyone)
        self.x = everyone[order, 0]
        self.coordinates = everyone[order]

    def owned(self, values):
        return values[self.mine]
