"""Write the bundled coastal mesh ``meshes/coast.msh`` (Gmsh MSH 4.1): an idealised bay with an island.

Run: ``python scripts/make_coast_mesh.py [--h 500.0] [--out meshes/coast.msh]`` (serial, < 1 s).
The geometry and tags are those of :func:`deepnum_fem.geometry.coastal_domain` of
``BAY_COASTLINE``, ``BAY_OPEN_SEA`` and ``BAY_ISLANDS`` with its default grading (``h / 4`` at
the land, ``h`` from ``4 h`` offshore); the file is written in ASCII or binary, whichever is
smaller. Prints what ``meshes/README.md`` records.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mpi4py import MPI

import numpy as np

import deepnum_fem  # noqa: F401  (dolfinx_solver first)
from deepnum_fem.geometry.coast import BAY_COASTLINE, BAY_ISLANDS, BAY_OPEN_SEA, check_coast, coastal_model
from deepnum_fem.geometry.gmsh_model import gmsh_session, write_msh
from deepnum_fem.geometry.polygons import signed_area
from deepnum_fem.io import BUNDLED_COAST_H, bundled_mesh_path

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--h", type=float, default=BUNDLED_COAST_H, help="mesh size offshore, m")
parser.add_argument("--out", type=Path, default=bundled_mesh_path("coast"))
args = parser.parse_args()
rings, open_sea, h_coast, grading = check_coast(BAY_COASTLINE, BAY_OPEN_SEA, BAY_ISLANDS, args.h, None, None,
                                                False, None)

with gmsh_session("coastal_domain", MPI.COMM_SELF) as gmsh:
    coastal_model(gmsh, rings, open_sea, args.h, h_coast, grading)
    info = write_msh(gmsh, args.out)
    area = abs(signed_area(rings[0])) - sum(abs(signed_area(r)) for r in rings[1:])
    edges = [np.linalg.norm(np.roll(r, -1, axis=0) - r, axis=1) for r in rings]
    open_length = edges[0][list(open_sea)].sum()
    land_length = sum(e.sum() for e in edges) - open_length
    print(f"wrote {args.out}: gmsh {gmsh.__version__}, h = {args.h} m, h_coast = {h_coast:.4g} m, "
          f"grading distance {grading:.4g} m, {info['vertices']} vertices, {info['counts']} elements, "
          f"{'binary' if info['binary'] else 'ASCII'}, {info['megabytes']:.2f} MB; "
          f"exact area {area:.1f} m^2, LAND {land_length:.3f} m, OPEN_SEA {open_length:.3f} m")
