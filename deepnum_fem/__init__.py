"""deepnum-fem: DOLFINx finite-element solvers and PyTorch networks as one differentiable program."""

from __future__ import annotations

import importlib.util as _ilu

# The PyPI DOLFINx wheel must configure its bundled PETSc/MPI before dolfinx or petsc4py load.
if _ilu.find_spec("dolfinx_solver") is not None:
    import dolfinx_solver  # noqa: F401

from deepnum_fem import parallel
from deepnum_fem._threads import limit_torch_threads
from deepnum_fem.convert import from_torch, to_torch
from deepnum_fem.errors import (
    DeepnumFemError,
    DeviceError,
    DTypeError,
    MeshError,
    NetworkError,
    NonFiniteError,
    ShapeError,
    SolverError,
)
from deepnum_fem.fem.options import SolverOptions
from deepnum_fem.ops.fem_operator import FemOperator, fem_operator
from deepnum_fem.ops.functional import Functional, functional
from deepnum_fem.ops.ml_operator import MLOperator, ml_operator
from deepnum_fem.ops.timestepping import rollout
from deepnum_fem.verification import TaylorResult, taylor_test, taylor_test_parameters

#: The package version.
__version__ = "0.1.0.dev0"

limit_torch_threads()

# Submodules reached as attributes (``dnf.geometry.left_ventricle``) are imported on first use,
# so that ``import deepnum_fem`` stays cheap (gmsh, meshio and the models load only when needed).
_SUBMODULES = ("bathymetry", "geometry", "io", "models", "precond", "sensors", "training", "verification", "viz")


def __getattr__(name: str):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"deepnum_fem.{name}")
    raise AttributeError(f"module 'deepnum_fem' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBMODULES})

__all__ = [
    "DeepnumFemError",
    "FemOperator",
    "MLOperator",
    "Functional",
    "TaylorResult",
    "DTypeError",
    "DeviceError",
    "MeshError",
    "NetworkError",
    "NonFiniteError",
    "ShapeError",
    "SolverError",
    "SolverOptions",
    "__version__",
    "fem_operator",
    "from_torch",
    "functional",
    "ml_operator",
    "parallel",
    "rollout",
    "taylor_test",
    "taylor_test_parameters",
    "to_torch",
]
