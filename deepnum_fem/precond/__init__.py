"""Torch-backed PETSc preconditioners: a generic rank-local TorchPC and a learned FSAI."""

from deepnum_fem.precond.fsai import FSAINet, LearnedFSAI, fsai_loss, train
from deepnum_fem.precond.torch_pc import TorchPC, ksp_type_for, solve

__all__ = ["FSAINet", "LearnedFSAI", "TorchPC", "fsai_loss", "ksp_type_for", "solve", "train"]
