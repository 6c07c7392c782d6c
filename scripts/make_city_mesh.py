"""Write the bundled 2D city-block mesh ``meshes/city.msh`` (Gmsh MSH 4.1).

Run: ``python scripts/make_city_mesh.py [--h 8.0] [--out meshes/city.msh]`` (serial, < 1 s).
The geometry and tags are those of :func:`deepnum_fem.geometry.city_blocks` with its default
domain and buildings; the file is written in ASCII or binary, whichever is smaller. Prints what
``meshes/README.md`` records.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

from mpi4py import MPI

import deepnum_fem  # noqa: F401  (dolfinx_solver first)
from deepnum_fem.geometry.city import CITY_BUILDINGS, check_city, city_blocks, city_blocks_model
from deepnum_fem.geometry.gmsh_model import gmsh_session, write_msh
from deepnum_fem.io import BUNDLED_CITY_H, bundled_mesh_path

DEFAULTS = inspect.signature(city_blocks).parameters
LENGTH, WIDTH = DEFAULTS["length"].default, DEFAULTS["width"].default

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--h", type=float, default=BUNDLED_CITY_H, help="mesh size away from the buildings, m")
parser.add_argument("--out", type=Path, default=bundled_mesh_path("city"))
args = parser.parse_args()
h_near = check_city(args.h, None, LENGTH, WIDTH, CITY_BUILDINGS, h_near_default=args.h / 3)

with gmsh_session("city_blocks", MPI.COMM_SELF) as gmsh:
    city_blocks_model(gmsh, args.h, h_near, LENGTH, WIDTH, CITY_BUILDINGS)
    info = write_msh(gmsh, args.out)
    area = LENGTH * WIDTH - sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in CITY_BUILDINGS)
    print(f"wrote {args.out}: gmsh {gmsh.__version__}, h = {args.h} m, h_near = {h_near:.4g} m, "
          f"{info['vertices']} vertices, {info['counts']} elements, {'binary' if info['binary'] else 'ASCII'}, "
          f"{info['megabytes']:.2f} MB; exact area {area:.1f} m^2")
