"""The ``deepnum-fem`` command: ``info`` (versions and capabilities) and ``demo``."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path


def _info_lines() -> list[str]:
    from mpi4py import MPI
    from petsc4py import PETSc

    import dolfinx
    import numpy as np
    import torch

    import deepnum_fem

    comm = MPI.COMM_WORLD
    major, minor, sub = PETSc.Sys.getVersion()
    scalar = np.dtype(PETSc.ScalarType).name
    solvers = {name: _has_solver_package(name) for name in ("mumps", "superlu_dist", "hypre")}
    if torch.cuda.is_available():
        cuda = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    else:
        cuda = "none seen"
    mpi_lib = MPI.Get_library_version().strip().splitlines()[0]
    return [
        f"deepnum-fem  {deepnum_fem.__version__}",
        f"python       {sys.version.split()[0]} ({sys.executable})",
        f"DOLFINx      {dolfinx.__version__}",
        f"PETSc        {major}.{minor}.{sub}, scalar {scalar}; "
        + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in solvers.items()),
        f"torch        {torch.__version__}, threads/rank {torch.get_num_threads()}, CUDA devices: {cuda}",
        f"MPI          {mpi_lib}",
        f"ranks        {comm.size}",
    ]


def _has_solver_package(name: str) -> bool:
    """Whether PETSc was built with the external solver package ``name``."""
    from petsc4py import PETSc

    return bool(PETSc.Sys.hasExternalPackage(name))


def info() -> int:
    from mpi4py import MPI

    lines = _info_lines()
    if MPI.COMM_WORLD.rank == 0:
        print("\n".join(lines), flush=True)
    return 0


def demo(argv: list[str]) -> int:
    """Run a demo from a source checkout: the main job (cardiac_hybrid), or the one named first."""
    demos = Path(__file__).resolve().parents[1] / "demos"
    name = "cardiac_hybrid"
    if argv and (demos / f"{argv[0]}.py").exists():
        name, argv = argv[0], argv[1:]
    script = demos / f"{name}.py"
    if not script.exists():
        print(f"demo script not found at {script}; run demos from a source checkout", file=sys.stderr)
        return 2
    sys.argv = [str(script), *argv]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="deepnum-fem", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions of deepnum-fem, DOLFINx, PETSc, torch, MPI")
    sub.add_parser("demo", help="run the main job, the cardiac hybrid model, or the demo named next "
                   "(ecg_personalisation, air_quality_inversion, air_quality_district, coastal_closure, "
                   "channel_inversion, thacker_bowl, quickstart, closure_learning); further arguments go "
                   "to the demo")
    if argv[:1] == ["demo"]:
        return demo(argv[1:])   # the demo parses its own options
    parser.parse_args(argv)
    import deepnum_fem  # noqa: F401  (dolfinx_solver before petsc4py)

    return info()


if __name__ == "__main__":
    raise SystemExit(main())
