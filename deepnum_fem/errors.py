"""Exceptions raised by deepnum-fem; all derive from :class:`DeepnumFemError`."""

from __future__ import annotations


class DeepnumFemError(RuntimeError):
    """Base class of every error deepnum-fem raises on purpose."""


class ShapeError(DeepnumFemError, ValueError):
    """A tensor has the wrong shape for the space or operator it is given to."""


class DTypeError(DeepnumFemError, TypeError):
    """A tensor has a dtype that cannot be used here."""


class DeviceError(DeepnumFemError, ValueError):
    """A tensor lives on a device that cannot be used here."""


class NonFiniteError(DeepnumFemError, FloatingPointError):
    """NaN or Inf where finite values are required."""


class SolverError(DeepnumFemError):
    """A PETSc linear or nonlinear solve did not converge."""


class MeshError(DeepnumFemError, ValueError):
    """A mesh file is missing, does not parse, or lacks the cells or tags asked for."""


class NetworkError(DeepnumFemError):
    """User torch code (a network in a form, a preconditioner model) raised an exception.

    Raised on every rank, whichever rank the exception happened on. The message names the
    network, what deepnum-fem was doing, the original exception's type and its message; on
    the rank where it happened the original is also chained as ``__cause__``.
    """
