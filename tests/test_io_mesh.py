"""load_mesh refuses unusable mesh files with a MeshError on every rank, and still loads good ones;
saved fields load back by position."""

from __future__ import annotations

from pathlib import Path

from mpi4py import MPI

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import pytest
import ufl

import deepnum_fem as dnf
from deepnum_fem.errors import MeshError
from deepnum_fem.geometry.gmsh_model import gmsh_session
from deepnum_fem.io import load_mesh

#: The unit cube as 6 Kuhn tetrahedra; points (x, y, z) in {0, 1}³ and, for the mixed mesh, x = 2.
CUBE = np.array([(x, y, z) for x in (0, 1, 2) for y in (0, 1) for z in (0, 1)], dtype=float)
TETS = np.array([[0, 4, 6, 7], [0, 4, 5, 7], [0, 2, 6, 7], [0, 2, 3, 7], [0, 1, 5, 7], [0, 1, 3, 7]])
HEXAHEDRON = np.array([[4, 8, 10, 6, 5, 9, 11, 7]])   # the cube [1, 2] x [0, 1] x [0, 1]
#: The unit square as 2 triangles, at z = 0; a quad [1, 2] x [0, 1] beside it for the mixed mesh.
SQUARE = np.array([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (2, 0, 0), (2, 1, 0)], dtype=float)
TRIANGLES = np.array([[0, 1, 2], [0, 2, 3]])
QUAD = np.array([[1, 4, 5, 2]])


def _write(comm, path: Path, points: np.ndarray, cells: list, **kwargs) -> Path:
    """Write a meshio file on rank 0, visible to all ranks on return."""
    if comm.rank == 0:
        import meshio
        meshio.Mesh(points, cells, **kwargs).write(path)
    comm.Barrier()
    return path


def _volume(mesh) -> float:
    local = dolfinx.fem.assemble_scalar(dolfinx.fem.form(1.0 * ufl.dx(domain=mesh)))
    return mesh.comm.allreduce(local)


def _write_msh(comm, path: Path, build) -> Path:
    """Let ``build(gmsh)`` make a model on rank 0 and write it to ``path``, visible to all ranks."""
    with gmsh_session("test_io_mesh", comm) as gmsh:
        if comm.rank == 0:
            build(gmsh)
            gmsh.write(str(path))
    comm.Barrier()
    return path


def _two_squares(gmsh, *, one_group: bool) -> None:
    """Two unit squares side by side, the left in triangles and the right recombined into quads."""
    left = gmsh.model.occ.addRectangle(0, 0, 0, 1, 1)
    right = gmsh.model.occ.addRectangle(1, 0, 0, 1, 1)
    gmsh.model.occ.fragment([(2, left)], [(2, right)])
    gmsh.model.occ.synchronize()
    gmsh.model.mesh.setRecombine(2, right)
    if one_group:
        gmsh.model.addPhysicalGroup(2, [left, right], 1, name="DOMAIN")
    else:
        gmsh.model.addPhysicalGroup(2, [left], 1, name="TRIANGLES")
        gmsh.model.addPhysicalGroup(2, [right], 2, name="QUADS")
    gmsh.option.setNumber("Mesh.MeshSizeMax", 0.5)
    gmsh.model.mesh.generate(2)


def _box(gmsh) -> None:
    gmsh.model.occ.addBox(0, 0, 0, 1, 1, 1)
    gmsh.model.occ.synchronize()
    gmsh.model.addPhysicalGroup(3, [1], 1)
    gmsh.option.setNumber("Mesh.MeshSizeMax", 0.5)
    gmsh.model.mesh.generate(3)


def _tilted_square(gmsh) -> None:
    """The unit square rotated 45° about the x axis: its z coordinates span 0 to 1/√2."""
    square = gmsh.model.occ.addRectangle(0, 0, 0, 1, 1)
    gmsh.model.occ.rotate([(2, square)], 0, 0, 0, 1, 0, 0, np.pi / 4)
    gmsh.model.occ.synchronize()
    gmsh.model.addPhysicalGroup(2, [square], 1)
    gmsh.model.mesh.generate(2)


def _flat_tetrahedron_msh(gmsh) -> None:
    """The Kuhn cube plus one tetrahedron in the plane z = 0, as a discrete gmsh volume."""
    volume = gmsh.model.addDiscreteEntity(3)
    gmsh.model.mesh.addNodes(3, volume, np.arange(1, 9), CUBE[:8].reshape(-1))
    flat = [[0, 4, 6, 2]]
    gmsh.model.mesh.addElementsByType(volume, 4, [], (np.vstack([TETS, flat]) + 1).reshape(-1))
    gmsh.model.addPhysicalGroup(3, [volume], 1)


@pytest.mark.parametrize(("points", "cells", "found"), [
    (CUBE, [("tetra", TETS), ("hexahedron", HEXAHEDRON)], r"3D cells are 6 'tetra' and 1 'hexahedron'"),
    (SQUARE, [("triangle", TRIANGLES), ("quad", QUAD)], r"2D cells are 2 'triangle' and 1 'quad'"),
], ids=["tetra+hexahedron", "triangle+quad"])
def test_mixed_cell_types_are_refused(comm, mpi_tmp_path, points, cells, found):
    path = _write(comm, mpi_tmp_path / "mixed.vtu", points, cells)
    with pytest.raises(MeshError, match=rf"mixed\.vtu is a mixed-topology mesh: its {found}.*"
                                        r"convert all cells to '(tetra|triangle)'.*split the file"):
        load_mesh(path, comm, gdim=3)


def test_non_simplex_cells_are_refused(comm, mpi_tmp_path):
    path = _write(comm, mpi_tmp_path / "hexahedra.vtu", CUBE, [("hexahedron", HEXAHEDRON)])
    with pytest.raises(MeshError, match=r"hexahedra\.vtu has no linear 'tetra' cells: its 3D cells are 1 "
                                        r"'hexahedron'; .*convert the mesh to 'tetra' cells"):
        load_mesh(path, comm)


@pytest.mark.parametrize("one_group", [True, False], ids=["one-group", "two-groups"])
def test_mixed_msh_is_refused(comm, mpi_tmp_path, one_group):
    path = _write_msh(comm, mpi_tmp_path / "mixed.msh", lambda gmsh: _two_squares(gmsh, one_group=one_group))
    with pytest.raises(MeshError, match=r"mixed\.msh is a mixed-topology mesh: its 2D cells are \d+ "
                                        r"'Triangle 3' and \d+ 'Quadrilateral 4'.*one element type"):
        load_mesh(path, comm, gdim=2)


def test_non_finite_coordinates_are_refused(comm, mpi_tmp_path):
    points = CUBE[:8].copy()
    points[3, 1] = np.nan
    points[5] = np.inf
    path = _write(comm, mpi_tmp_path / "nan.vtu", points, [("tetra", TETS)])
    with pytest.raises(MeshError, match=r"nan\.vtu has 4 NaN or Inf coordinate\(s\) in 2 point\(s\) "
                                        r"\(the first: point 3, \[0\.0, nan, 1\.0\]\)"):
        load_mesh(path, comm)


@pytest.mark.parametrize(("kind", "index"), [("tetra", 8), ("tetra", -1), ("triangle", 99)])
def test_out_of_range_connectivity_is_refused(comm, mpi_tmp_path, kind, index):
    tets, facets = TETS.copy(), np.array([[0, 2, 3], [0, 1, 3]])   # facets on x = 0
    (tets if kind == "tetra" else facets)[1, 2] = index
    path = _write(comm, mpi_tmp_path / "indices.vtu", CUBE[:8], [("tetra", tets), ("triangle", facets)])
    with pytest.raises(MeshError, match=rf"indices\.vtu has 1 '{kind}' cell\(s\) with point indices out of "
                                        rf"range: '{kind}' cell 1 refers to point {index}, but the file has 8 "
                                        r"points \(indices 0 to 7\)"):
        load_mesh(path, comm)


def test_degenerate_cells_are_refused(comm, mpi_tmp_path):
    flat = [[0, 4, 6, 2], [1, 3, 7, 5]]   # in the cube's faces z = 0 and z = 1
    path = _write(comm, mpi_tmp_path / "flat.vtu", CUBE[:8], [("tetra", np.vstack([TETS, flat]))])
    with pytest.raises(MeshError, match=r"flat\.vtu has 2 degenerate \(zero-volume\) 'tetra' cell\(s\) of 8: "
                                        r".*the first is cell 6, points \[0, 4, 6, 2\], volume 0"):
        load_mesh(path, comm)


def test_degenerate_msh_cells_are_refused(comm, mpi_tmp_path):
    path = _write_msh(comm, mpi_tmp_path / "flat.msh", _flat_tetrahedron_msh)
    with pytest.raises(MeshError, match=r"flat\.msh has 1 degenerate \(zero-volume\) 'tetrahedron' cell\(s\) of "
                                        r"7: .*the first is cell 6"):
        load_mesh(path, comm)


def test_gdim_below_the_cell_dimension_is_refused(comm, mpi_tmp_path):
    vtu = _write(comm, mpi_tmp_path / "cube.vtu", CUBE[:8], [("tetra", TETS)])
    msh = _write_msh(comm, mpi_tmp_path / "box.msh", _box)
    for path in (vtu, msh):
        with pytest.raises(MeshError, match=rf"gdim=2 is smaller than the topological dimension 3 of the cells "
                                            rf"of .*{path.name} \(its points are 3D\); pass gdim=3"):
            load_mesh(path, comm, gdim=2)


def test_gdim_that_would_flatten_the_mesh_is_refused(comm, mpi_tmp_path):
    path = _write_msh(comm, mpi_tmp_path / "tilted.msh", _tilted_square)
    with pytest.raises(MeshError, match=r"tilted\.msh has 3D points that do not lie in a 2D plane \(its z "
                                        r"coordinates span 0\.707107\), so gdim=2 would flatten the mesh; pass gdim=3"):
        load_mesh(path, comm, gdim=2)


@pytest.mark.parametrize("scale", [1.0, 1e-4], ids=["unit", "small"])
def test_valid_meshes_still_load(comm, mpi_tmp_path, scale):
    cube = _write(comm, mpi_tmp_path / "cube.vtu", scale * CUBE[:8], [("tetra", TETS)])
    square = _write(comm, mpi_tmp_path / "square.vtu", scale * SQUARE[:4], [("triangle", TRIANGLES)])
    assert _volume(load_mesh(cube, comm).mesh) == pytest.approx(scale**3, rel=1e-12)
    assert _volume(load_mesh(square, comm, gdim=2).mesh) == pytest.approx(scale**2, rel=1e-12)
    assert _volume(load_mesh(square, comm, gdim=3).mesh) == pytest.approx(scale**2, rel=1e-12)


def test_saved_functions_load_by_position_and_refuse_another_mesh(comm, tmp_path):
    """A P2 vector field saved on this partition loads into the same mesh partitioned as one
    rank each (positions, not dof numbers, match); other metadata miss; a moved mesh under
    the same metadata is an error on every rank."""
    path = comm.bcast(str(tmp_path / "field.npz"), root=0)

    def field(c, shift=0.0):
        mesh = dolfinx.mesh.create_unit_square(c, 6, 5)
        mesh.geometry.x[:, 0] += shift
        u = dolfinx.fem.Function(dolfinx.fem.functionspace(mesh, ("Lagrange", 2, (2,))))
        return u

    u = field(comm)
    u.interpolate(lambda x: np.stack([np.sin(3 * x[0]) + x[1] ** 2, x[0] * x[1]]))
    dnf.io.save_functions(path, {"u": u}, {"what": "test"})
    whole = field(MPI.COMM_SELF)
    assert dnf.io.load_functions(path, {"u": whole}, {"what": "test"})
    exact = dolfinx.fem.Function(whole.function_space)
    exact.interpolate(lambda x: np.stack([np.sin(3 * x[0]) + x[1] ** 2, x[0] * x[1]]))
    assert np.allclose(whole.x.array, exact.x.array, rtol=0, atol=1e-14)
    assert not dnf.io.load_functions(path, {"u": field(comm)}, {"what": "other"})
    with pytest.raises(ValueError, match="matches the metadata but not the mesh"):
        dnf.io.load_functions(path, {"u": field(comm, shift=0.5)}, {"what": "test"})
