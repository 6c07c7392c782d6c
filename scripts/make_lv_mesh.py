"""Write the bundled left-ventricle mesh ``meshes/left_ventricle.msh`` (Gmsh MSH 4.1).

Run: ``python scripts/make_lv_mesh.py [--h 1.0] [--out meshes/left_ventricle.msh]`` (serial, < 2 s).
The geometry and tags are those of :func:`deepnum_fem.geometry.left_ventricle`; the file is
written in ASCII or binary, whichever is smaller. Prints what ``meshes/README.md`` records.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from mpi4py import MPI

import deepnum_fem  # noqa: F401  (dolfinx_solver first)
from deepnum_fem.geometry import _left_ventricle_model, _model, left_ventricle_volume
from deepnum_fem.io import BUNDLED_LV_H, bundled_mesh_path

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--h", type=float, default=BUNDLED_LV_H, help="target edge length, mm")
parser.add_argument("--out", type=Path, default=bundled_mesh_path("left_ventricle"))
args = parser.parse_args()

with _model("left_ventricle", MPI.COMM_SELF) as gmsh, tempfile.TemporaryDirectory() as tmp:
    _left_ventricle_model(gmsh, args.h)
    gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
    gmsh.option.setNumber("Mesh.SaveAll", 0)   # only the elements of physical groups
    candidates = []
    for binary in (0, 1):
        gmsh.option.setNumber("Mesh.Binary", binary)
        candidates.append(Path(tmp) / f"lv{binary}.msh")
        gmsh.write(str(candidates[-1]))
    best = min(candidates, key=lambda p: p.stat().st_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(best.read_bytes())
    n_vertices = gmsh.model.mesh.getNodes()[0].size
    counts = {name: sum(gmsh.model.mesh.getElements(dim, e)[1][0].size
                        for e in gmsh.model.getEntitiesForPhysicalGroup(dim, tag))
              for dim, tag in gmsh.model.getPhysicalGroups()
              for name in [gmsh.model.getPhysicalName(dim, tag)]}
    print(f"wrote {args.out}: gmsh {gmsh.__version__}, h = {args.h} mm, {n_vertices} vertices, "
          f"{counts} elements, {'binary' if best.name == 'lv1.msh' else 'ASCII'}, "
          f"{args.out.stat().st_size / 1e6:.2f} MB; exact volume {left_ventricle_volume():.1f} mm^3")
