"""Write the bundled left-ventricle mesh ``meshes/left_ventricle.msh`` (Gmsh MSH 4.1).

Run: ``python scripts/make_lv_mesh.py [--h 1.0] [--out meshes/left_ventricle.msh]`` (serial, < 2 s).
The geometry and tags are those of :func:`deepnum_fem.geometry.left_ventricle`; the file is
written in ASCII or binary, whichever is smaller. Prints what ``meshes/README.md`` records.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mpi4py import MPI

import deepnum_fem  # noqa: F401  (dolfinx_solver first)
from deepnum_fem.geometry.gmsh_model import gmsh_session, write_msh
from deepnum_fem.geometry.heart import left_ventricle_model, left_ventricle_volume
from deepnum_fem.io import BUNDLED_LV_H, bundled_mesh_path

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--h", type=float, default=BUNDLED_LV_H, help="target edge length, mm")
parser.add_argument("--out", type=Path, default=bundled_mesh_path("left_ventricle"))
args = parser.parse_args()

with gmsh_session("left_ventricle", MPI.COMM_SELF) as gmsh:
    left_ventricle_model(gmsh, args.h)
    info = write_msh(gmsh, args.out)
    print(f"wrote {args.out}: gmsh {gmsh.__version__}, h = {args.h} mm, {info['vertices']} vertices, "
          f"{info['counts']} elements, {'binary' if info['binary'] else 'ASCII'}, "
          f"{info['megabytes']:.2f} MB; exact volume {left_ventricle_volume():.1f} mm^3")
