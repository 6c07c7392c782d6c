"""Figure of the district's wind: speed and direction of the steady Navier–Stokes wind (with
wakes) beside potential flow (without), over the bundled Prague-Bubeneč mesh.

Run: ``python scripts/plot_district_wind.py [--out docs/figures/district/wind.png]`` (serial,
about 20 s; needs the ``viz`` extra's matplotlib). Prints the reversed-flow areas it shows.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from mpi4py import MPI

import dolfinx.fem
import matplotlib
import numpy as np
import ufl

import deepnum_fem as dnf
from deepnum_fem.models import SteadyWind, potential_flow

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend)

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--out", type=Path, default=Path("docs/figures/district/wind.png"))
p.add_argument("--angle", type=float, default=0.3, help="wind direction, radians from east")
p.add_argument("--speed", type=float, default=2.0, help="m/s")
p.add_argument("--viscosity", type=float, default=1.0, help="eddy viscosity, m^2/s")
args = p.parse_args()

direction = np.array([math.cos(args.angle), math.sin(args.angle)])
data = dnf.geometry.wind_boundaries(dnf.io.load_district(MPI.COMM_SELF), direction)
mesh = data.mesh
wind = SteadyWind(data, viscosity=args.viscosity, inflow="INFLOW", walls="BUILDINGS", velocity=args.speed * direction)
fields = {f"Navier–Stokes, ν = {args.viscosity:g} m²/s": wind.solve(),
          "potential flow": potential_flow(data, inflow="INFLOW", outflow="OUTFLOW", speed=args.speed)}
V1 = dolfinx.fem.functionspace(mesh, ("Lagrange", 1, (2,)))
x = V1.tabulate_dof_coordinates()[:, :2]      # P1 dofs are the vertices; triangles in dof numbers
cells = V1.dofmap.list
fig, axes = plt.subplots(1, 2, figsize=(12, 6), constrained_layout=True)
for ax, (name, w) in zip(axes, fields.items(), strict=True):
    w1 = dolfinx.fem.Function(V1)
    w1.interpolate(w)
    at_vertices = w1.x.array.reshape(-1, 2)
    speed = np.linalg.norm(at_vertices, axis=1)
    shading = ax.tripcolor(x[:, 0], x[:, 1], cells, speed, shading="gouraud", cmap="viridis", vmin=0,
                           vmax=1.6 * args.speed)
    reverse = at_vertices @ direction < -0.2
    ax.plot(x[reverse, 0], x[reverse, 1], ".", color="red", markersize=1.5)
    for block in dnf.io.load_district_footprints()["buildings"]:
        ax.fill(block[:, 0], block[:, 1], color="0.35")
    every = slice(None, None, 23)
    ax.quiver(x[every, 0], x[every, 1], at_vertices[every, 0], at_vertices[every, 1], color="white", width=0.0015)
    d = dolfinx.fem.Constant(mesh, direction)
    share = dolfinx.fem.assemble_scalar(dolfinx.fem.form(
        ufl.conditional(ufl.lt(ufl.dot(w, d), -0.2), 1.0, 0.0) * ufl.dx)) / dolfinx.fem.assemble_scalar(
        dolfinx.fem.form(dolfinx.fem.Constant(mesh, 1.0) * ufl.dx))
    ax.set_title(f"{name}\nagainst the mean wind (red): {100 * share:.1f} % of the area")
    ax.set_aspect("equal")
    ax.set_xlabel("x (m, east)")
    print(f"{name}: reversed (u·d < -0.2 m/s) on {100 * share:.2f} % of the street space")
fig.colorbar(shading, ax=axes, shrink=0.7, label="speed (m/s)")
args.out.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(args.out, dpi=110)
print(f"wrote {args.out}; Newton iterations {wind.newton_iterations}")
