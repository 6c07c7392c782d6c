"""Train the learned preconditioners' networks on a family of diffusion operators.

Run: ``python scripts/train_fsai.py [--kind fsai|twolevel] [--steps N] [--out PATH]``.
The bundled models were made with the defaults below (serial, 2 cores):

* ``--kind fsai`` (``deepnum_fem/precond/fsai_default.pt``, about 30 s): the stand-alone
  FSAI on the pattern of ``Â²``, loss ``‖Â ĜᵀĜ r − r‖²/‖r‖²``; 1200 Adam steps, lr 3e-3.
  Family (60 operators): unit squares with 8, 12, 16, 20 cells per side (crossed
  diagonals), unit cubes with 4, 6, 8 cells per side and unit cubes with 5, 7, 9 cells per
  side whose interior vertices are moved at random (irregular tetrahedra).
* ``--kind twolevel`` (``deepnum_fem/precond/twolevel_default.pt``): the two-level method's
  smoother on the pattern of ``Â``, one hidden layer of width 8, loss: energy left after two cycles
  (:func:`~deepnum_fem.precond.twolevel.two_level_loss`); 1500 Adam steps, lr 3e-3. Family
  (60 operators): squares with 12, 20, 28, 36 cells per side, cubes with 6, 9, 12 and
  jiggled cubes with 7, 10, 13 cells per side (larger than above so that the aggregates'
  coarse space is not trivial).

Every operator is P1 ``-div(κ grad u)`` with six seeded smooth log-normal-like ``κ`` fields,
Dirichlet rows = I; 8 random vectors a step. Checkpoints every 100 steps; rerunning resumes.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import torch

import deepnum_fem  # noqa: F401  (dolfinx_solver first)
from deepnum_fem.precond.family import training_family
from deepnum_fem.precond.fsai import DEFAULT_MODEL, FSAINet, fsai_loss, train
from deepnum_fem.precond.twolevel import DEFAULT_SMOOTHER, two_level_loss

KINDS = {
    "fsai": dict(out=DEFAULT_MODEL, steps=1200, net=dict(width=32, pattern="A2"), loss=fsai_loss, family={}),
    "twolevel": dict(out=DEFAULT_SMOOTHER, steps=1500, net=dict(width=8, pattern="A", hidden=1),
                     loss=two_level_loss,
                     family=dict(sizes=(12, 20, 28, 36), sizes_3d=(6, 9, 12), sizes_jiggled=(7, 10, 13),
                                 coarse=True)),
}

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--kind", choices=sorted(KINDS), default="fsai")
parser.add_argument("--steps", type=int)
parser.add_argument("--lr", type=float, default=3e-3)
parser.add_argument("--out", type=Path)
parser.add_argument("--checkpoint", type=Path)
parser.add_argument("--width", type=int, help="override the kind's network width")
parser.add_argument("--hidden", type=int, help="override the number of hidden layers")
parser.add_argument("--activation", choices=("tanh", "relu"))
parser.add_argument("--cycles", type=int, default=2, help="twolevel: cycles in the loss")
args = parser.parse_args()
kind = KINDS[args.kind]
steps = args.steps or kind["steps"]
out = args.out or kind["out"]
checkpoint = args.checkpoint or Path(f"out/{args.kind}_checkpoint.pt")

torch.manual_seed(0)
config = dict(kind["net"])
config.update({k: getattr(args, k) for k in ("width", "hidden", "activation") if getattr(args, k) is not None})
matrices = training_family(pattern=config["pattern"], **kind["family"])
net = FSAINet(**config).double()
checkpoint.parent.mkdir(parents=True, exist_ok=True)
loss = kind["loss"] if args.kind == "fsai" else functools.partial(two_level_loss, cycles=args.cycles)
history = train(net, matrices, steps=steps, lr=args.lr, checkpoint=checkpoint, every=100, loss=loss)
torch.save({"net": net.state_dict(), "config": net.config}, out)
print(f"saved {out}: {len(matrices)} training operators, final loss {history[-1] if history else 'n/a'}")
