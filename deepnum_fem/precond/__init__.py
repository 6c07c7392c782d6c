"""Torch-backed PETSc preconditioners: a generic rank-local TorchPC, a learned FSAI and a
two-level method with a learned smoother."""

from deepnum_fem.precond.fsai import FSAINet, LearnedFSAI, fsai_loss, train
from deepnum_fem.precond.torch_pc import TorchPC, block_icc, ksp_type_for, solve
from deepnum_fem.precond.twolevel import TwoLevel, two_level_loss

__all__ = ["FSAINet", "LearnedFSAI", "TorchPC", "TwoLevel", "block_icc", "fsai_loss", "ksp_type_for", "solve", "train",
           "two_level_loss"]
