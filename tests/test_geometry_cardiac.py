"""The Land et al. left ventricle, mesh files (load_mesh) and rule-based fibres, serial and parallel."""

from __future__ import annotations

from mpi4py import MPI

import dolfinx.fem
import numpy as np
import pytest
import ufl

from deepnum_fem.errors import MeshError
from deepnum_fem.geometry import LV_DIMENSIONS, LV_TAGS, left_ventricle, left_ventricle_volume
from deepnum_fem.io import bundled_mesh_path, load_left_ventricle, load_mesh
from deepnum_fem.models.fibres import rule_based_fibres, transmural_coordinate

BASE, ENDO, EPI = LV_TAGS["BASE"], LV_TAGS["ENDO"], LV_TAGS["EPI"]
# meshes/README.md records these.
BUNDLED_VERTICES, BUNDLED_CELLS = 4433, 18133
BUNDLED_FACETS = {BASE: 412, ENDO: 2103, EPI: 3457}


@pytest.fixture(scope="module")
def lv():
    return left_ventricle(h=2.0, comm=MPI.COMM_WORLD)


@pytest.fixture(scope="module")
def fibres(lv):
    phi = transmural_coordinate(lv.mesh, lv.facet_tags, ENDO, EPI)
    return phi, rule_based_fibres(lv.mesh, lv.facet_tags, ENDO, EPI, transmural=phi)


def _integral(form, comm) -> float:
    return comm.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(form)), op=MPI.SUM)


def _owned(tags, value) -> np.ndarray:
    """Entities tagged ``value`` and owned by this rank."""
    entities = tags.find(value)
    return entities[entities < tags.topology.index_map(tags.dim).size_local]


def _global_count(tags, value, comm) -> int:
    return comm.allreduce(_owned(tags, value).size, op=MPI.SUM)


def _ellipsoid(x: np.ndarray, which: str) -> np.ndarray:
    """``(x² + y²)/a² + z²/c²`` for the ``endo`` or ``epi`` ellipsoid (1 on its surface)."""
    a, c = LV_DIMENSIONS[f"{which}_short"], LV_DIMENSIONS[f"{which}_long"]
    return (x[:, 0] ** 2 + x[:, 1] ** 2) / a**2 + x[:, 2] ** 2 / c**2


def test_exact_volume_matches_quadrature():
    z_base = LV_DIMENSIONS["z_base"]

    def cap(a, c):  # ∫ π r(z)² dz below the base, by quadrature
        z = np.linspace(-c, z_base, 200_001)
        return np.trapezoid(np.pi * a**2 * (1 - z**2 / c**2), z)

    expected = cap(10, 20) - cap(7, 17)
    assert left_ventricle_volume() == pytest.approx(expected, rel=1e-8)


def test_left_ventricle_volume_areas_and_tags(lv, comm):
    mesh = lv.mesh
    volume = _integral(1.0 * ufl.dx(domain=mesh), comm)
    assert volume == pytest.approx(left_ventricle_volume(), rel=0.02)

    ds = ufl.Measure("ds", domain=mesh, subdomain_data=lv.facet_tags)
    base_area = np.pi * (10**2 * (1 - 25 / 400) - 7**2 * (1 - 25 / 289))
    assert _integral(1.0 * ds(BASE), comm) == pytest.approx(base_area, rel=0.02)
    assert {name: lv.physical_groups[name].tag for name in LV_TAGS} == LV_TAGS
    assert lv.physical_groups["MYOCARDIUM"].dim == 3
    assert all(_global_count(lv.facet_tags, tag, comm) > 0 for tag in LV_TAGS.values())
    n_cells = mesh.topology.index_map(3).size_local
    assert np.all(lv.cell_tags.values == 1) and comm.allreduce(lv.cell_tags.values.size) >= comm.allreduce(n_cells)


def test_left_ventricle_facets_lie_on_their_surfaces(lv):
    """BASE vertices at z = 5, ENDO on the inner ellipsoid, EPI on the outer one."""
    mesh = lv.mesh
    x = mesh.geometry.x
    assert x[:, 2].max(initial=-np.inf) <= LV_DIMENSIONS["z_base"] + 1e-8
    for tag, check in ((BASE, lambda p: np.abs(p[:, 2] - 5.0)),
                       (ENDO, lambda p: np.abs(_ellipsoid(p, "endo") - 1)),
                       (EPI, lambda p: np.abs(_ellipsoid(p, "epi") - 1))):
        vertices = dolfinx.mesh.entities_to_geometry(mesh, 2, lv.facet_tags.find(tag)).reshape(-1)
        assert check(x[vertices]).max(initial=0.0) < 1e-3, f"tag {tag}"


def test_bundled_left_ventricle(comm):
    data = load_left_ventricle(comm)
    mesh = data.mesh
    assert mesh.geometry.index_map().size_global == BUNDLED_VERTICES
    assert mesh.topology.index_map(3).size_global == BUNDLED_CELLS
    assert {name: g.tag for name, g in data.physical_groups.items()} == {**LV_TAGS, "MYOCARDIUM": 1}
    assert {tag: _global_count(data.facet_tags, tag, comm) for tag in LV_TAGS.values()} == BUNDLED_FACETS
    assert _integral(1.0 * ufl.dx(domain=mesh), comm) == pytest.approx(left_ventricle_volume(), rel=2e-3)


def _cube_mesh(n: int = 2):
    """Unit cube, n³ Kuhn cubes of 6 tetrahedra (tag 1); triangles on x = 0 (tag 5) and x = 1 (tag 7)."""
    import meshio

    g = np.linspace(0.0, 1.0, n + 1)
    points = np.array([(x, y, z) for x in g for y in g for z in g])

    def v(i, j, k):
        return (i * (n + 1) + j) * (n + 1) + k

    tets, tris, tri_tags = [], [], []
    paths = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    for i in range(n):
        for j in range(n):
            for k in range(n):
                for path in paths:
                    c = [i, j, k]
                    tet = [v(*c)]
                    for axis in path:
                        c[axis] += 1
                        tet.append(v(*c))
                    tets.append(tet)
    for i, tag in ((0, 5), (n, 7)):
        for j in range(n):
            for k in range(n):
                tris += [[v(i, j, k), v(i, j + 1, k), v(i, j + 1, k + 1)],
                         [v(i, j, k), v(i, j, k + 1), v(i, j + 1, k + 1)]]
                tri_tags += [tag, tag]
    cells = [("tetra", np.array(tets)), ("triangle", np.array(tris))]
    tags = [np.ones(len(tets), dtype=np.int64), np.array(tri_tags)]
    return meshio, points, cells, tags


@pytest.mark.parametrize(("suffix", "tag_name"), [(".vtu", "region"), (".mesh", None)])
def test_meshio_round_trip(comm, mpi_tmp_path, suffix, tag_name):
    path = mpi_tmp_path / f"cube{suffix}"
    if comm.rank == 0:
        meshio, points, cells, tags = _cube_mesh(2)
        meshio.Mesh(points, cells, cell_data={tag_name or "medit:ref": tags}).write(path)
    comm.Barrier()
    data = load_mesh(path, comm, required_tags=[1, 5, 7], tag_name=tag_name)
    mesh = data.mesh
    assert mesh.topology.index_map(3).size_global == 48
    assert mesh.geometry.index_map().size_global == 27
    assert comm.allreduce(_owned(data.cell_tags, 1).size) == 48
    for tag, x_face in ((5, 0.0), (7, 1.0)):
        assert _global_count(data.facet_tags, tag, comm) == 8
        vertices = dolfinx.mesh.entities_to_geometry(mesh, 2, data.facet_tags.find(tag)).reshape(-1)
        assert np.allclose(mesh.geometry.x[vertices, 0], x_face)
    assert _integral(1.0 * ufl.dx(domain=mesh), comm) == pytest.approx(1.0, rel=1e-12)


def test_load_mesh_errors_name_the_file_and_the_tags(comm, mpi_tmp_path):
    garbage = {name: mpi_tmp_path / name for name in ("broken.vtu", "broken.mesh", "broken.msh", "lines.vtu")}
    if comm.rank == 0:
        garbage["broken.vtu"].write_text("<VTKFile this is not xml")
        garbage["broken.mesh"].write_text("MeshVersionFormatted 2\nDimension 3\nVertices\nnonsense\n")
        garbage["broken.msh"].write_text("$MeshFormat\n4.1 0 8\n$EndMeshFormat\n$Nodes\ngarbage\n")
        import meshio
        meshio.Mesh(np.eye(3), [("line", np.array([[0, 1], [1, 2]]))]).write(garbage["lines.vtu"])
    comm.Barrier()
    for name in ("broken.vtu", "broken.mesh", "broken.msh"):
        with pytest.raises(MeshError, match=rf"could not read .*{name}"):
            load_mesh(garbage[name], comm)
    with pytest.raises(MeshError, match=r"lines\.vtu has no volume cells.*'line'"):
        load_mesh(garbage["lines.vtu"], comm)
    with pytest.raises(MeshError, match=r"missing\.msh not found"):
        load_mesh(mpi_tmp_path / "missing.msh", comm)
    with pytest.raises(MeshError, match=r"required tags \['SEPTUM'\].*'BASE', 'ENDO', 'EPI', 'MYOCARDIUM'"):
        load_mesh(bundled_mesh_path(), comm, required_tags=["ENDO", "SEPTUM"])


def test_transmural_coordinate(lv, fibres, comm):
    phi = fibres[0]
    values = phi.x.array
    assert values.min(initial=0.0) >= -1e-8 and values.max(initial=1.0) <= 1 + 1e-8
    V = phi.function_space
    for tag, expected in ((ENDO, 0.0), (EPI, 1.0)):
        dofs = dolfinx.fem.locate_dofs_topological(V, 2, lv.facet_tags.find(tag))
        assert comm.allreduce(dofs.size) > 0 and np.all(values[dofs] == expected)
    # Near the equator the wall is a 7 mm to 10 mm annulus: φ ≈ (r - 7)/3.
    x = V.tabulate_dof_coordinates()
    equator = np.abs(x[:, 2]) < 1.0
    r = np.hypot(x[equator, 0], x[equator, 1])
    assert comm.allreduce(np.count_nonzero(equator)) > 20
    assert np.abs(values[equator] - (r - 7) / 3).max(initial=0.0) < 0.1


def _cell_gradients(phi) -> tuple[np.ndarray, np.ndarray]:
    """∇φ on each owned cell from its four vertex values, and φ at the midpoint (numpy only)."""
    V = phi.function_space
    n = V.mesh.topology.index_map(3).size_local
    dofs = V.dofmap.list[:n]
    x, u = V.tabulate_dof_coordinates()[dofs], phi.x.array[dofs]
    edges = x[:, 1:] - x[:, :1]
    grad = np.linalg.solve(edges, (u[:, 1:] - u[:, :1])[..., None])[..., 0]
    return grad, u.mean(axis=1)


def test_rule_based_fibres(lv, fibres, comm):
    phi, f = fibres
    mesh = lv.mesh
    n = mesh.topology.index_map(3).size_local
    W = f.function_space
    f_cells = f.x.array.reshape(-1, 3)[W.dofmap.list[:n, 0]]
    grad, phi_mid = _cell_gradients(phi)
    e_t = grad / np.linalg.norm(grad, axis=1, keepdims=True)

    assert np.abs(np.linalg.norm(f_cells, axis=1) - 1).max(initial=0.0) < 1e-12
    assert np.abs(np.sum(f_cells * e_t, axis=1)).max(initial=0.0) < 1e-10

    e_l = np.array([0.0, 0.0, 1.0]) - e_t[:, 2:3] * e_t
    e_l /= np.linalg.norm(e_l, axis=1, keepdims=True)
    e_c = np.cross(e_l, e_t)
    angle = np.degrees(np.arctan2(np.sum(f_cells * e_l, axis=1), np.sum(f_cells * e_c, axis=1)))
    expected = 60.0 - 120.0 * phi_mid

    # Counter-clockwise seen from the base: e_c ≈ (-y, x, 0)/r.
    centres = dolfinx.mesh.compute_midpoints(mesh, 3, np.arange(n, dtype=np.int32))
    ccw = np.column_stack([-centres[:, 1], centres[:, 0], np.zeros(n)])
    ccw /= np.linalg.norm(ccw, axis=1, keepdims=True)
    mid_wall = np.abs(centres[:, 2]) < 8
    assert np.sum(e_c[mid_wall] * ccw[mid_wall], axis=1).min(initial=1.0) > 0.9

    mesh.topology.create_connectivity(2, 3)
    f2c = mesh.topology.connectivity(2, 3)
    for tag, sign in ((ENDO, 1), (EPI, -1)):
        cells = np.unique(np.concatenate([f2c.links(facet) for facet in lv.facet_tags.find(tag)]))
        cells = cells[cells < n]
        sums = np.array([np.sum(angle[cells]), np.sum(expected[cells]), np.sum(f_cells[cells, 2]), cells.size])
        total_angle, total_expected, total_fz, count = comm.allreduce(sums, op=MPI.SUM)
        assert abs(total_angle - total_expected) / count < 2.0
        assert sign * total_expected / count > 30.0     # the outer cell layers turn towards ±60°
        assert sign * total_fz / count > 0.3            # fibres rise (endo) or fall (epi) along +z
    # The helix angle is linear in φ: 60° at φ = 0, -60° at φ = 1.
    stats = comm.allreduce(np.array([n, phi_mid.sum(), angle.sum(), (phi_mid**2).sum(), (phi_mid * angle).sum()]),
                           op=MPI.SUM)
    count, sx, sy, sxx, sxy = stats
    slope = (count * sxy - sx * sy) / (count * sxx - sx**2)
    assert slope == pytest.approx(-120.0, abs=1.0)
    assert (sy - slope * sx) / count == pytest.approx(60.0, abs=0.5)


def test_transmural_coordinate_rejects_unknown_tags(lv):
    with pytest.raises(ValueError, match=r"no facet carries the epi tags \[9\]; the facet tags are \[1, 2, 3\]"):
        transmural_coordinate(lv.mesh, lv.facet_tags, ENDO, 9)
