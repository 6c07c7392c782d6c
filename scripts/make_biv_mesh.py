"""Write the bundled biventricular mesh ``meshes/biventricle.msh`` (Gmsh MSH 4.1).

Run: ``python scripts/make_biv_mesh.py [--h 1.2] [--out meshes/biventricle.msh]`` (serial, a
few seconds). The geometry and tags are those of :func:`deepnum_fem.geometry.biventricle`; the
file is written in ASCII or binary, whichever is smaller. Prints what ``meshes/README.md``
records. Finer meshes: ``--h 0.8 --out biv_h08.msh``, then ``deepnum_fem.io.load_mesh(path)``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mpi4py import MPI

import deepnum_fem  # noqa: F401  (dolfinx_solver first)
from deepnum_fem.geometry.biventricular import biventricle_model, biventricle_volume
from deepnum_fem.geometry.gmsh_model import gmsh_session, write_msh
from deepnum_fem.io import BUNDLED_BIV_H, bundled_mesh_path

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--h", type=float, default=BUNDLED_BIV_H, help="target edge length, mm")
parser.add_argument("--out", type=Path, default=bundled_mesh_path("biventricle"))
args = parser.parse_args()

start = time.perf_counter()
with gmsh_session("biventricle", MPI.COMM_SELF) as gmsh:
    biventricle_model(gmsh, args.h)
    info = write_msh(gmsh, args.out)
    print(f"wrote {args.out}: gmsh {gmsh.__version__}, h = {args.h} mm, {info['vertices']} vertices, "
          f"{info['counts']} elements, {'binary' if info['binary'] else 'ASCII'}, "
          f"{info['megabytes']:.2f} MB, {time.perf_counter() - start:.1f} s; "
          f"volume {biventricle_volume():.1f} mm^3")
