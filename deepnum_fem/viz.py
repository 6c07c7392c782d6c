"""Figures of distributed fields: gather a P1 field to rank 0 as a pyvista grid."""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import sys
from collections.abc import Iterator, Sequence

import dolfinx.fem
import dolfinx.plot
import numpy as np

from deepnum_fem.convert import n_owned

__all__ = ["gather_grid", "surface_maps_png"]


def gather_grid(V: dolfinx.fem.FunctionSpace, fields: dict[str, np.ndarray]):
    """A pyvista ``UnstructuredGrid`` of the whole mesh on rank 0 (None elsewhere), with the
    owned-dof arrays in ``fields`` as point data. Collective.

    Each rank contributes its cells (ghost points duplicated at partition boundaries, which
    does not change a plot).
    """
    import pyvista

    comm = V.mesh.comm
    topology, cell_types, x = dolfinx.plot.vtk_mesh(V)
    work = dolfinx.fem.Function(V)
    local = {}
    for name, values in fields.items():
        work.x.array[: n_owned(work)] = np.asarray(values)
        work.x.scatter_forward()
        local[name] = work.x.array.copy()
    parts = comm.gather((topology, cell_types, x, local), root=0)
    if comm.rank != 0:
        return None
    cells, types, points, data, offset = [], [], [], {k: [] for k in fields}, 0
    for topo, ct, pts, loc in parts:
        topo = topo.reshape(len(ct), -1).copy()
        topo[:, 1:] += offset
        cells.append(topo.ravel())
        types.append(ct)
        points.append(pts)
        for k in fields:
            data[k].append(loc[k])
        offset += pts.shape[0]
    grid = pyvista.UnstructuredGrid(np.concatenate(cells), np.concatenate(types), np.concatenate(points))
    for k in fields:
        grid.point_data[k] = np.concatenate(data[k])
    return grid


def surface_maps_png(path, V: dolfinx.fem.FunctionSpace, fields: dict[str, np.ndarray], *,
                     label: str, clim: Sequence[float] | None = None, cmap: str = "turbo",
                     camera_position=None) -> None:
    """One off-screen panel per field, side by side, of the outer surface coloured by the
    field (shared colour range). Collective; rank 0 writes ``path``."""
    grid = gather_grid(V, fields)
    if grid is None:
        return
    import pyvista

    surface = grid.extract_surface(algorithm="dataset_surface")
    names = list(fields)
    clim = clim or [min(float(np.min(surface[n])) for n in names), max(float(np.max(surface[n])) for n in names)]
    with _headless_window():
        plotter = pyvista.Plotter(off_screen=True, shape=(1, len(names)), window_size=(420 * len(names), 520))
    for i, name in enumerate(names):
        plotter.subplot(0, i)
        plotter.add_text(name, font_size=11)
        plotter.add_mesh(surface.copy(), scalars=name, clim=clim, cmap=cmap,
                         scalar_bar_args={"title": label, "n_labels": 4})
        if camera_position is not None:
            plotter.camera_position = camera_position
    plotter.screenshot(str(path))
    plotter.close()


@contextlib.contextmanager
def _headless_window() -> Iterator[None]:
    """Around the creation of a render window on Linux without ``DISPLAY``: have VTK open an EGL
    window directly (``VTK_DEFAULT_OPENGL_WINDOW``; VTK reads it as the window is made).

    Left to itself VTK first tries X, prints ``bad X server connection. DISPLAY=`` on stderr and
    then falls back to EGL; nothing changes when the user set the variable, when there is a
    display, or when no ``libEGL`` is installed (then VTK's fallback to OSMesa is kept).
    """
    name = "VTK_DEFAULT_OPENGL_WINDOW"
    headless = sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and name not in os.environ
    if not (headless and ctypes.util.find_library("EGL")):
        yield
        return
    os.environ[name] = "vtkEGLRenderWindow"
    try:
        yield
    finally:
        del os.environ[name]
