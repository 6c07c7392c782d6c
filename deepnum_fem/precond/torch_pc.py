"""A torch model as a PETSc preconditioner (PC type ``python``), applied rank-locally.

Design: each rank hands the model the owned block of the residual, ``y_owned = model(r_owned)``
(shape ``(n_owned,)`` in, the same out), with one host->device and one device->host transfer
per application. The model sees no neighbour values; a model that needs them must be built on
a PETSc matrix (as :mod:`deepnum_fem.precond.fsai` is). Errors (an exception in the model, a
wrong output shape, NaN/Inf) are decided on all ranks together and stop the Krylov solve on
every rank.
"""

from __future__ import annotations

from petsc4py import PETSc

import numpy as np
import torch

from deepnum_fem.errors import DeepnumFemError, NonFiniteError, ShapeError, SolverError
from deepnum_fem.fem.checks import reason_name
from deepnum_fem.parallel import network_name, user_code

__all__ = ["TorchPC", "block_icc", "solve"]


class TorchPC:
    """PETSc python-PC context: ``y = model(x)`` on each rank's owned block.

    Args:
        model: Maps a 1D tensor (the owned residual entries) to one of the same shape.
        device: Where the model runs.
        dtype: The model's dtype; float64 by default.
        linear: Whether the model is linear in its input (then CG/GMRES are valid with it);
            nonlinear models need a flexible Krylov method (FGMRES), see :func:`ksp_type_for`.
        symmetric: Whether the (linear) model is symmetric positive definite, allowing CG.
    """

    def __init__(self, model: torch.nn.Module | None = None, *, device: str = "cpu",
                 dtype: torch.dtype = torch.float64, linear: bool = False, symmetric: bool = False):
        self.model = model
        self.device = torch.device(device)
        self.dtype = dtype
        self.linear = linear
        self.symmetric = symmetric and linear
        self.error: DeepnumFemError | None = None
        self.applications = 0

    def setUp(self, pc: PETSc.PC) -> None:  # noqa: N802 (PETSc's name)
        if self.model is None:
            self.error = DeepnumFemError("TorchPC has no model: pass one to TorchPC(model) and pc.setPythonContext")
            raise self.error

    def apply(self, pc: PETSc.PC, x: PETSc.Vec, y: PETSc.Vec) -> None:
        self.applications += 1
        r = torch.from_numpy(x.getArray(readonly=True).copy()).to(self.device, self.dtype)
        try:   # one collective decision: an exception in the model, a wrong shape or NaN/Inf on any rank
            with user_code(f"TorchPC model {network_name(self.model)} (preconditioner apply)", x.getComm().tompi4py()):
                with torch.no_grad():
                    out = self.model(r)
                values = _checked(out, r)
        except DeepnumFemError as e:
            self.error = e   # kept for solve(): PETSc wraps exceptions raised in callbacks
            raise
        y.getArray()[:] = values

    def applyTranspose(self, pc: PETSc.PC, x: PETSc.Vec, y: PETSc.Vec) -> None:  # noqa: N802
        if not self.symmetric:
            raise DeepnumFemError("TorchPC: a transposed application needs symmetric=True")
        self.apply(pc, x, y)


def _checked(out, r: torch.Tensor) -> np.ndarray:
    """The model's output as float64 values, or ShapeError / NonFiniteError (rank-local)."""
    if not isinstance(out, torch.Tensor):
        raise ShapeError(f"TorchPC: the model must return a tensor of the residual's shape {tuple(r.shape)}, "
                         f"got a {type(out).__name__}")
    if tuple(out.shape) != tuple(r.shape):
        raise ShapeError(f"TorchPC: the model must return the residual's shape {tuple(r.shape)} "
                         f"(owned entries on this rank), got {tuple(out.shape)}")
    values = out.detach().to("cpu", torch.float64).numpy()
    if not np.all(np.isfinite(values)):
        raise NonFiniteError(f"TorchPC: the model returned {int((~np.isfinite(values)).sum())} "
                             "NaN/Inf value(s) on this rank")
    return values


def ksp_type_for(ctx) -> str:
    """The Krylov method a preconditioner allows: CG for SPD, GMRES for linear, else FGMRES."""
    if getattr(ctx, "symmetric", False):
        return "cg"
    return "gmres" if getattr(ctx, "linear", False) else "fgmres"


def solve(ksp: PETSc.KSP, b: PETSc.Vec, x: PETSc.Vec) -> int:
    """``ksp.solve(b, x)`` that turns a deepnum-fem preconditioner's failure (or divergence)
    into a clear :class:`DeepnumFemError` on every rank. Returns the iteration count."""
    ctx = ksp.getPC().getPythonContext() if ksp.getPC().getType() == "python" else None
    if hasattr(ctx, "error"):
        ctx.error = None
    try:
        ksp.solve(b, x)
    except PETSc.Error as e:
        error = getattr(ctx, "error", None)
        if error is None and isinstance(e.__cause__, DeepnumFemError):
            error = e.__cause__      # raised by a callback without a context to keep it
        if error is not None:
            raise error from error.__cause__   # not the PETSc.Error, only its wrapper
        raise DeepnumFemError(f"KSP solve failed inside PETSc: {e}") from e
    reason = ksp.getConvergedReason()
    if reason < 0:
        raise SolverError(f"KSP ({ksp.getType()}, PC {ksp.getPC().getType()}) diverged: reason {reason_name(reason)} "
                          f"after {ksp.getIterationNumber()} iterations, residual {ksp.getResidualNorm():.3e}")
    return ksp.getIterationNumber()


def block_icc(ksp: PETSc.KSP) -> None:
    """ICC(0) on one rank, block-Jacobi with ICC(0) blocks on several: the classical baseline.

    Set through a private options prefix, before setup, so that the caller holds no handles
    to the block sub-solvers."""
    if ksp.getComm().getSize() == 1:
        ksp.getPC().setType("icc")
        return
    prefix = f"dnf_block_icc_{id(ksp)}_"
    ksp.setOptionsPrefix(prefix)
    options = PETSc.Options(prefix)
    options["pc_type"] = "bjacobi"
    options["sub_pc_type"] = "icc"
    ksp.setFromOptions()
    options.delValue("pc_type")
    options.delValue("sub_pc_type")
