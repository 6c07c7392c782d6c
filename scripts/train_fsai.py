"""Train the learned FSAI preconditioner on a family of diffusion operators.

Run: ``python scripts/train_fsai.py [--steps 1200] [--out deepnum_fem/precond/fsai_default.pt]``.
The bundled default model was made with the defaults below (serial, about 30 s on 2 cores).
Family (60 operators): unit squares with 8, 12, 16, 20 cells per side (crossed diagonals),
unit cubes with 4, 6, 8 cells per side and unit cubes with 5, 7, 9 cells per side whose
interior vertices are moved at random (irregular tetrahedra), P1, ``-div(κ grad u)`` with six seeded smooth
log-normal-like ``κ`` fields each, Dirichlet rows = I. Adam, lr 3e-3, 8 random vectors a step.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import deepnum_fem  # noqa: F401  (dolfinx_solver first)
from deepnum_fem.precond.family import training_family
from deepnum_fem.precond.fsai import DEFAULT_MODEL, FSAINet, train

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--steps", type=int, default=1200)
parser.add_argument("--lr", type=float, default=3e-3)
parser.add_argument("--out", type=Path, default=DEFAULT_MODEL)
parser.add_argument("--checkpoint", type=Path, default=Path("out/fsai_checkpoint.pt"))
args = parser.parse_args()

torch.manual_seed(0)
matrices = training_family()
net = FSAINet().double()
args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
history = train(net, matrices, steps=args.steps, lr=args.lr, checkpoint=args.checkpoint, every=100)
torch.save({"net": net.state_dict(), "width": 32}, args.out)
print(f"saved {args.out}: {len(matrices)} training operators, final loss {history[-1] if history else 'n/a'}")
