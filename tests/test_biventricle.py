"""The idealised biventricle (gmsh), its bundled mesh and LDRB fibres, serial and parallel."""

from __future__ import annotations

from mpi4py import MPI

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import pytest
import torch
import ufl

import deepnum_fem as dnf
import deepnum_fem.geometry.biventricular
import deepnum_fem.io
from deepnum_fem.geometry import (
    BIV_CELL_TAGS,
    BIV_DIMENSIONS,
    BIV_TAGS,
    LV_TAGS,
    biventricle,
    biventricle_volume,
    inside_biventricle,
    left_ventricle,
    left_ventricle_volume,
)
from deepnum_fem.io import BUNDLED_BIV_H, load_biventricle
from deepnum_fem.models import AlievPanfilov, Monodomain, Stimulus, activation_times
from deepnum_fem.models.ldrb import ldrb_coordinates, ldrb_fibres

# meshes/README.md records these.
BUNDLED_VERTICES, BUNDLED_CELLS = 4576, 16233
BUNDLED_FACETS = {"BASE": 452, "LV_ENDO": 1488, "EPI": 3368, "RV_ENDO": 2310}
SURFACES = {"lv_endo": BIV_TAGS["LV_ENDO"], "rv_endo": BIV_TAGS["RV_ENDO"], "epi": BIV_TAGS["EPI"],
            "base": BIV_TAGS["BASE"]}
ELLIPSOIDS = ("lv_endo", "lv_epi", "rv_endo", "rv_epi")
#: Not the defaults, and different on the two endocardia: (helix, sheet) in degrees.
ANGLES = {"alpha_endo": 60.0, "alpha_epi": -55.0, "beta_endo": -30.0, "beta_epi": 20.0,
          "alpha_endo_rv": 35.0, "beta_endo_rv": 10.0}


@pytest.fixture(scope="module")
def biv():
    return load_biventricle(MPI.COMM_WORLD)


@pytest.fixture(scope="module")
def coordinates(biv):
    return ldrb_coordinates(biv.mesh, biv.facet_tags, **SURFACES)


def _integral(form, comm) -> float:
    return comm.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(form)), op=MPI.SUM)


def _owned(tags, value) -> np.ndarray:
    entities = tags.find(value)
    return entities[entities < tags.topology.index_map(tags.dim).size_local]


def _ellipsoid(x: np.ndarray, name: str) -> np.ndarray:
    """``Σ ((x_i - c_i)/r_i)²`` of a :data:`BIV_DIMENSIONS` ellipsoid (1 on it), written out again here."""
    centre = np.array([BIV_DIMENSIONS["rv_centre_x"] if name.startswith("rv") else 0.0, 0.0, 0.0])
    return np.sum(((x - centre) / np.array(BIV_DIMENSIONS[name])) ** 2, axis=1)


def _outward(x: np.ndarray, name: str) -> np.ndarray:
    """The unit normal of ellipsoid ``name`` at ``x``, pointing out of it."""
    centre = np.array([BIV_DIMENSIONS["rv_centre_x"] if name.startswith("rv") else 0.0, 0.0, 0.0])
    g = (x - centre) / np.array(BIV_DIMENSIONS[name]) ** 2
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def _base_area(n: int = 2000) -> float:
    """Area of the myocardium's section by the base plane, by the midpoint rule on an n x n grid."""
    z = BIV_DIMENSIONS["z_base"] - 1e-12
    x = np.linspace(-10.5, 16.5, n + 1)
    y = np.linspace(-14.5, 14.5, n + 1)
    xm, ym = (x[1:] + x[:-1]) / 2, (y[1:] + y[:-1]) / 2
    count = sum(int(inside_biventricle(np.column_stack([np.full(n, xi), ym, np.full(n, z)])).sum()) for xi in xm)
    return count * (x[1] - x[0]) * (y[1] - y[0])


# -- geometry ---------------------------------------------------------------------------------


def test_biventricle_volume_by_columns_is_exact():
    """The column quadrature against a 3D grid of the implicit definition, and, with the right
    ventricle shrunk inside the left wall, against the left ventricle's closed form."""
    volume = biventricle_volume()
    n = 200
    axes = [np.linspace(-10.0, 16.0, n + 1), np.linspace(-14.0, 14.0, n + 1), np.linspace(-20.0, 5.0, n + 1)]
    mids = [(a[1:] + a[:-1]) / 2 for a in axes]
    cell = np.prod([a[1] - a[0] for a in axes])
    count = 0
    for x in mids[0]:
        Y, Z = np.meshgrid(mids[1], mids[2], indexing="ij")
        count += int(inside_biventricle(np.column_stack([np.full(Y.size, x), Y.ravel(), Z.ravel()])).sum())
    assert count * cell == pytest.approx(volume, rel=2e-3)

    shrunk = {**BIV_DIMENSIONS, "rv_endo": (0.5, 0.5, 0.5), "rv_epi": (1.0, 1.0, 1.0)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(deepnum_fem.geometry.biventricular, "BIV_DIMENSIONS", shrunk)
        assert biventricle_volume() == pytest.approx(left_ventricle_volume(), rel=1e-5)
    assert biventricle_volume(1000) == pytest.approx(volume, rel=2e-5)   # converged (measured: 4e-6)


def test_bundled_biventricle_tags_volume_and_areas(biv, comm):
    mesh = biv.mesh
    assert mesh.geometry.index_map().size_global == BUNDLED_VERTICES
    assert mesh.topology.index_map(3).size_global == BUNDLED_CELLS
    assert {name: g.tag for name, g in biv.physical_groups.items()} == {**BIV_TAGS, **BIV_CELL_TAGS}
    counts = {name: comm.allreduce(_owned(biv.facet_tags, tag).size) for name, tag in BIV_TAGS.items()}
    assert counts == BUNDLED_FACETS
    assert comm.allreduce(_owned(biv.cell_tags, 1).size) == BUNDLED_CELLS

    # every boundary facet carries exactly one tag, and no interior facet carries one
    mesh.topology.create_connectivity(2, 3)
    exterior = dolfinx.mesh.exterior_facet_indices(mesh.topology)
    n_facets = mesh.topology.index_map(2).size_local
    tagged, multiplicity = np.unique(biv.facet_tags.indices, return_counts=True)
    assert np.all(multiplicity == 1)
    assert np.array_equal(np.sort(tagged[tagged < n_facets]), np.sort(exterior[exterior < n_facets]))

    ds = ufl.Measure("ds", domain=mesh, subdomain_data=biv.facet_tags)
    areas = {name: _integral(1.0 * ds(tag), comm) for name, tag in BIV_TAGS.items()}
    assert sum(areas.values()) == pytest.approx(_integral(1.0 * ds, comm), rel=1e-12)
    assert all(area > 200.0 for area in areas.values())
    h = BUNDLED_BIV_H
    # both converge as h² (measured: volume -2.5e-3 at h = 2 mm, -7.6e-4 at 1.2, -5.2e-4 at 1)
    assert _integral(1.0 * ufl.dx(domain=mesh), comm) == pytest.approx(biventricle_volume(), rel=1e-3 * h**2)
    assert areas["BASE"] == pytest.approx(_base_area(), rel=1e-3 * h**2)


def test_biventricle_facets_lie_on_their_surfaces(biv):
    """BASE at z = 5; LV_ENDO on the left endocardial ellipsoid; EPI on an epicardial one and
    outside the right cavity; RV_ENDO on the right endocardial ellipsoid or the septum's right
    side (the left epicardial ellipsoid inside the right cavity)."""
    mesh = biv.mesh
    x = mesh.geometry.x
    assert x[:, 2].max(initial=-np.inf) <= BIV_DIMENSIONS["z_base"] + 1e-9
    on = {name: np.abs(_ellipsoid(x, name) - 1) < 1e-6 for name in ELLIPSOIDS}
    in_rv_cavity = _ellipsoid(x, "rv_endo") < 1 + 1e-6
    expected = {"BASE": np.abs(x[:, 2] - BIV_DIMENSIONS["z_base"]) < 1e-9,
                "LV_ENDO": on["lv_endo"],
                "EPI": (on["lv_epi"] | on["rv_epi"]) & (~in_rv_cavity | on["rv_endo"]),
                "RV_ENDO": on["rv_endo"] | (on["lv_epi"] & in_rv_cavity)}
    for name, tag in BIV_TAGS.items():
        vertices = dolfinx.mesh.entities_to_geometry(mesh, 2, biv.facet_tags.find(tag)).reshape(-1)
        assert np.all(expected[name][vertices]), name
        if name != "BASE":   # the surfaces' own vertices are off the base plane, but for their rims
            assert np.mean(x[vertices, 2] < BIV_DIMENSIONS["z_base"] - 1e-6) > 0.8, name


def test_bundled_biventricle_matches_the_generator(comm, mpi_tmp_path, monkeypatch):
    """Without the file, load_biventricle warns and generates a mesh with the bundled counts."""
    monkeypatch.setattr(deepnum_fem.io, "MESH_DIR", mpi_tmp_path)
    with pytest.warns(UserWarning, match=r"biventricle\.msh is missing.*make_biv_mesh\.py"):
        data = load_biventricle(comm)
    assert data.mesh.geometry.index_map().size_global == BUNDLED_VERTICES
    assert data.mesh.topology.index_map(3).size_global == BUNDLED_CELLS
    counts = {name: comm.allreduce(_owned(data.facet_tags, tag).size) for name, tag in BIV_TAGS.items()}
    assert counts == BUNDLED_FACETS


def test_biventricle_rejects_a_bad_size(comm):
    for h in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"expected a mesh size h > 0 \(mm\), got"):
            biventricle(h, comm)


# -- LDRB coordinates and frames ---------------------------------------------------------------


def test_ldrb_coordinates(biv, coordinates, comm):
    V = coordinates["epi"].function_space
    x = V.tabulate_dof_coordinates()
    values = {name: u.x.array for name, u in coordinates.items()}
    assert set(values) == {"epi", "lv", "rv", "apex_base"}
    for u in values.values():   # P1 on tetrahedra keeps the maximum principle only nearly (measured: -3.4e-8)
        assert u.min(initial=0.0) >= -1e-6 and u.max(initial=1.0) <= 1 + 1e-6
    # the three transmural solutions are 1 together on every wall and free at the base: they sum to 1
    assert np.abs(values["epi"] + values["lv"] + values["rv"] - 1).max(initial=0.0) < 1e-8
    for surface, ones in (("lv_endo", "lv"), ("rv_endo", "rv"), ("epi", "epi")):
        dofs = dolfinx.fem.locate_dofs_topological(V, 2, biv.facet_tags.find(SURFACES[surface]))
        assert comm.allreduce(dofs.size) > 0 and np.all(values[ones][dofs] == 1.0)
    base = dolfinx.fem.locate_dofs_topological(V, 2, biv.facet_tags.find(SURFACES["base"]))
    assert np.all(values["apex_base"][base] == 1.0)
    # the apex: the epicardial vertex farthest from the base, (0, 0, -20)
    at_apex = np.linalg.norm(x - (0.0, 0.0, -20.0), axis=1) < 1e-9
    assert comm.allreduce(int(at_apex.sum())) >= 1
    assert np.all(values["apex_base"][at_apex] == 0.0)
    # ψ rises from the apex to the base
    low, high = x[:, 2] < -15, x[:, 2] > 0
    assert values["apex_base"][low].max(initial=0.0) < values["apex_base"][high].min(initial=1.0)


@pytest.mark.parametrize("space", ["DG0", "P1"])
def test_ldrb_frames_are_orthonormal(biv, coordinates, space):
    frame = ldrb_fibres(biv.mesh, biv.facet_tags, **SURFACES, coordinates=coordinates, space=space)
    f, s, n = (u.x.array.reshape(-1, 3) for u in frame)
    assert frame.fibre.function_space.dofmap.index_map.size_global == (
        BUNDLED_CELLS if space == "DG0" else BUNDLED_VERTICES)
    for v in (f, s, n):
        assert np.abs(np.linalg.norm(v, axis=1) - 1).max(initial=0.0) < 1e-10
    for a, b in ((f, s), (f, n), (s, n)):
        assert np.abs(np.sum(a * b, axis=1)).max(initial=0.0) < 1e-10
    assert np.abs(np.cross(f, s) - n).max(initial=0.0) < 1e-10


def _surface_vertices(biv, V) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """P1 dofs of each tagged wall, away from the apex, the base and the curves where two walls
    meet, with the unit normal there that points away from the cavity (out of the epicardium)."""
    x = V.tabulate_dof_coordinates()
    on = {name: np.abs(_ellipsoid(x, name) - 1) < 1e-6 for name in ELLIPSOIDS}
    single = sum(on.values()) == 1
    band = (x[:, 2] > -10.0) & (x[:, 2] < 2.0)
    out = {}
    for name in ("LV_ENDO", "EPI", "RV_ENDO"):
        dofs = dolfinx.fem.locate_dofs_topological(V, 2, biv.facet_tags.find(BIV_TAGS[name]))
        dofs = dofs[single[dofs] & band[dofs]]
        p = x[dofs]
        if name == "LV_ENDO":
            normal = _outward(p, "lv_endo")
        elif name == "EPI":
            normal = np.where(on["lv_epi"][dofs, None], _outward(p, "lv_epi"), _outward(p, "rv_epi"))
        else:   # away from the right cavity: into its free wall, or into the septum
            normal = np.where(on["rv_endo"][dofs, None], _outward(p, "rv_endo"), -_outward(p, "lv_epi"))
        out[name] = (dofs, normal)
    return out


def _angle(v: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Angles (degrees, in [-90, 90)) of the lines along the rows of ``v`` from ``first`` towards ``second``."""
    a = np.degrees(np.arctan2(np.sum(v * second, axis=1), np.sum(v * first, axis=1)))
    return (a + 90.0) % 180.0 - 90.0


def _mean(values: np.ndarray, comm) -> tuple[float, int]:
    total, count = comm.allreduce(np.array([values.sum(), values.size]), op=MPI.SUM)
    return total / count, int(count)


def test_ldrb_helix_and_sheet_angles_at_the_walls(biv, coordinates, comm):
    """At the walls' vertices the fibres and sheets make the configured angles: exactly with the
    method's own axes (its frame for zero angles); the helix angle to within a degree about the
    walls' exact normals; and on average with the meridians of the walls' ellipsoids."""
    common = {**SURFACES, "coordinates": coordinates, "space": "P1"}
    zero = ldrb_fibres(biv.mesh, biv.facet_tags, **common, alpha_endo=0, alpha_epi=0, beta_endo=0, beta_epi=0)
    frame = ldrb_fibres(biv.mesh, biv.facet_tags, **common, **ANGLES)
    V = frame.fibre.function_space
    expected = {"LV_ENDO": (ANGLES["alpha_endo"], ANGLES["beta_endo"]),
                "EPI": (ANGLES["alpha_epi"], ANGLES["beta_epi"]),
                "RV_ENDO": (ANGLES["alpha_endo_rv"], ANGLES["beta_endo_rv"])}
    tolerance = 1.0 * BUNDLED_BIV_H   # degrees (measured: at most 0.6° at h = 2, 1.5, 1.2 and 1 mm)
    for name, (dofs, normal) in _surface_vertices(biv, V).items():
        alpha, beta = expected[name]
        f, s = (u.x.array.reshape(-1, 3)[dofs] for u in frame[:2])
        # the method's axes, signed: transmural away from the cavity, longitudinal towards the base
        _, e_l, e_t = (u.x.array.reshape(-1, 3)[dofs] for u in zero)
        e_t = e_t * np.sign(np.sum(e_t * normal, axis=1))[:, None]
        e_l = e_l * np.sign(e_l[:, 2:3])
        e_c = np.cross(e_l, e_t)
        assert np.abs(_angle(f, e_c, e_l) - alpha).max(initial=0.0) < 1e-6, name
        along = np.cos(np.radians(alpha)) * e_c + np.sin(np.radians(alpha)) * e_l
        f = f * np.sign(np.sum(f * along, axis=1))[:, None]   # the sheet angle's sign needs the fibre's
        assert np.abs(_angle(s, np.cross(e_t, f), -e_t) - beta).max(initial=0.0) < 1e-6, name

        # the transmural axis is the wall's normal, to the error of the gradients recovered at
        # the vertices (measured: 0.6-0.9° on average, at most 5-8°)
        tilt = np.degrees(np.arccos(np.sum(e_t * normal, axis=1).clip(max=1)))
        assert _mean(tilt, comm)[0] < 1.5 and tilt.max(initial=0.0) < 10.0, name
        # about the exact normal, with the method's apex-to-base direction
        e_n = e_l - np.sum(e_l * normal, axis=1)[:, None] * normal
        e_n /= np.linalg.norm(e_n, axis=1, keepdims=True)
        assert np.abs(_angle(f, np.cross(e_n, normal), e_n) - alpha).max(initial=0.0) < tolerance, name
        # about the exact normal and meridian (the method's apex-to-base direction is not the
        # meridian, where the right ventricle breaks the symmetry: ±6° on the left, ±13° on the right)
        meridian = np.array([0.0, 0.0, 1.0]) - normal[:, 2:3] * normal
        meridian /= np.linalg.norm(meridian, axis=1, keepdims=True)
        mean, count = _mean(_angle(f, np.cross(meridian, normal), meridian), comm)
        assert count > 100 and abs(mean - alpha) < 1.0, name


def test_ldrb_fibres_lie_in_the_walls(biv, coordinates, comm):
    """Inside the free walls the fibres run nearly along the transmural coordinate's level
    surfaces (Bayer's axes are orthogonal to the apex-to-base direction, not to ∇φ_epi itself).
    The right wall's frames meet the epicardial frame turned by π, which the quaternion
    interpolation must see as the same frame: interpolated the long way round (measured), the
    fibres there tilt by 23° (median) instead of 5°."""
    frame = ldrb_fibres(biv.mesh, biv.facet_tags, **SURFACES, coordinates=coordinates)
    mesh = biv.mesh
    n = mesh.topology.index_map(3).size_local
    V = coordinates["epi"].function_space
    dofs = V.dofmap.list[:n]
    x = V.tabulate_dof_coordinates()[dofs]

    def on_cells(u):   # ∇u and u at the midpoint, from the four vertex values (numpy only)
        values = u.x.array[dofs]
        grad = np.linalg.solve(x[:, 1:] - x[:, :1], (values[:, 1:] - values[:, :1])[..., None])[..., 0]
        return grad, values.mean(axis=1)

    g, _ = on_cells(coordinates["epi"])
    _, psi = on_cells(coordinates["apex_base"])
    f = frame.fibre.x.array.reshape(-1, 3)[frame.fibre.function_space.dofmap.list[:n, 0]]
    tilt = np.degrees(np.arcsin(np.abs(np.sum(f * g, axis=1)) / np.linalg.norm(g, axis=1)))
    centre = x.mean(axis=1)
    between = (psi > 0.2) & (psi < 0.95)
    for name, wall in (("right", _ellipsoid(centre, "lv_epi") > 1), ("left", _ellipsoid(centre, "rv_epi") > 1)):
        tilts = np.concatenate(comm.allgather(tilt[wall & between]))
        assert tilts.size > 1000
        assert np.median(tilts) < 8.0 and np.percentile(tilts, 95) < 15.0, name   # measured: 5°, 8°


def test_ldrb_angles_change_the_field_where_they_apply(biv, coordinates):
    """A new endocardial helix angle turns the fibres inside the wall and leaves those on the
    epicardium, where only the epicardial angle counts, as they were."""
    common = {**SURFACES, "coordinates": coordinates, "space": "P1"}
    before = ldrb_fibres(biv.mesh, biv.facet_tags, **common).fibre.x.array.reshape(-1, 3)
    after = ldrb_fibres(biv.mesh, biv.facet_tags, **common, alpha_endo=70.0).fibre.x.array.reshape(-1, 3)
    turned = np.degrees(np.arcsin(np.linalg.norm(np.cross(before, after), axis=1).clip(max=1)))
    epi = coordinates["epi"].x.array
    assert biv.mesh.comm.allreduce(turned[(epi > 0.1) & (epi < 0.5)].max(initial=0.0), op=MPI.MAX) > 10.0
    assert turned[epi == 1.0].max(initial=0.0) < 1e-9


def test_ldrb_on_a_left_ventricle(comm):
    """With no right ventricle: the helix angle against the exact normal and meridian of the
    (axisymmetric) Land ventricle is α_endo on the endocardium and α_epi on the epicardium."""
    lv = left_ventricle(h=2.0, comm=comm)
    frame = ldrb_fibres(lv.mesh, lv.facet_tags, lv_endo=LV_TAGS["ENDO"], rv_endo=None, epi=LV_TAGS["EPI"],
                        base=LV_TAGS["BASE"], space="P1", alpha_endo=55.0, alpha_epi=-45.0)
    V = frame.fibre.function_space
    x = V.tabulate_dof_coordinates()
    f = frame.fibre.x.array.reshape(-1, 3)
    for tag, radii, alpha in ((LV_TAGS["ENDO"], (7.0, 7.0, 17.0), 55.0), (LV_TAGS["EPI"], (10.0, 10.0, 20.0), -45.0)):
        dofs = dolfinx.fem.locate_dofs_topological(V, 2, lv.facet_tags.find(tag))
        dofs = dofs[(x[dofs, 2] > -10.0) & (x[dofs, 2] < 2.0)]
        normal = x[dofs] / np.array(radii) ** 2
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        meridian = np.array([0.0, 0.0, 1.0]) - normal[:, 2:3] * normal
        meridian /= np.linalg.norm(meridian, axis=1, keepdims=True)
        assert comm.allreduce(dofs.size) > 50
        assert np.abs(_angle(f[dofs], np.cross(meridian, normal), meridian) - alpha).max(initial=0.0) < 1.5


def _gathered(comm, V, arrays) -> tuple[np.ndarray, list[np.ndarray]]:
    """Owned dof coordinates and values of ``V`` from all ranks of ``comm``, sorted by position."""
    n = V.dofmap.index_map.size_local
    x = np.concatenate(comm.allgather(V.tabulate_dof_coordinates()[:n]))
    values = [np.concatenate(comm.allgather(a[:n])) for a in arrays]
    x = np.round(x, 8) + 0.0   # the same point in the last bits, and -0.0 folded
    order = np.lexsort(x.T[::-1])
    return x[order], [v[order] for v in values]


def test_ldrb_one_rank_and_two_ranks_give_the_same_fields(comm):
    """The bundled mesh on all ranks (COMM_WORLD) and on each rank alone (COMM_SELF): the
    coordinates, and the fibre, sheet and normal lines (f ⊗ f: a direction has no sign), at the
    same cells (DG0, by midpoint) and vertices (P1)."""
    results = []
    for c in (comm, MPI.COMM_SELF):
        data = load_biventricle(c)
        coords = ldrb_coordinates(data.mesh, data.facet_tags, **SURFACES)
        V = coords["epi"].function_space
        out = [_gathered(c, V, [u.x.array for u in coords.values()])]
        for space in ("DG0", "P1"):
            frame = ldrb_fibres(data.mesh, data.facet_tags, **SURFACES, coordinates=coords, space=space, **ANGLES)
            lines = [np.einsum("ni,nj->nij", v, v).reshape(-1, 9)
                     for v in (u.x.array.reshape(-1, 3) for u in frame)]
            out.append(_gathered(c, frame.fibre.function_space, lines))
        results.append(out)
    for (x_world, world), (x_self, alone) in zip(*results, strict=True):
        np.testing.assert_allclose(x_world, x_self, rtol=0, atol=1e-8)
        for a, b in zip(world, alone, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-9)
    assert len(results[0][1][0]) == BUNDLED_CELLS and len(results[0][2][0]) == BUNDLED_VERTICES


def test_ldrb_bad_input_raises_on_every_rank(biv, coordinates):
    mesh, tags = biv.mesh, biv.facet_tags
    with pytest.raises(ValueError, match=r"no facet carries the rv_endo tags \[9\]; the facet tags are \[1, 2, 3, 4\]"):
        ldrb_fibres(mesh, tags, **{**SURFACES, "rv_endo": 9})
    with pytest.raises(ValueError, match=r"the lv_endo and epi surfaces share the facet tags \[2\]"):
        ldrb_coordinates(mesh, tags, **{**SURFACES, "epi": [2, 3]})
    for name, value in (("alpha_endo", 95.0), ("beta_epi", -91.0), ("alpha_epi", float("nan")),
                        ("alpha_endo_rv", "40")):
        with pytest.raises(ValueError, match=rf"{name} must be an angle in \[-90, 90\] degrees, got"):
            ldrb_fibres(mesh, tags, **SURFACES, coordinates=coordinates, **{name: value})
    with pytest.raises(ValueError, match=r"space must be one of \['DG0', 'P1'\], got 'P2'"):
        ldrb_fibres(mesh, tags, **SURFACES, coordinates=coordinates, space="P2")
    with pytest.raises(ValueError, match=r"expected the apex as a point \(x, y, z\), got \(0, 0\)"):
        ldrb_coordinates(mesh, tags, **SURFACES, apex=(0, 0))


def test_activation_runs_faster_along_ldrb_fibres(biv, coordinates, comm):
    """Aliev–Panfilov paced on the left free wall at mid-height, D = (2.4, 0.3) mm²/ms: with
    circumferential fibres (helix 0°) the wave reaches points 7 mm round the wall before points
    7 mm up and down it; with longitudinal fibres (90°) the other way round."""
    r = 0.5 * (7 * np.sqrt(1 - 25 / 289) + 10 * np.sqrt(1 - 25 / 400))   # mid-wall radius at z = -5
    site, theta = np.array([-r, 0.0, -5.0]), 7.0 / r
    round_the_wall = [[-r * np.cos(theta), r * np.sin(theta), -5.0], [-r * np.cos(theta), -r * np.sin(theta), -5.0]]
    up_and_down = [[-0.97 * r, 0.0, -12.0], [-0.99 * r, 0.0, 2.0]]
    probes = np.array(round_the_wall + up_and_down)
    times = {}
    for alpha in (0.0, 90.0):
        frame = ldrb_fibres(biv.mesh, biv.facet_tags, **SURFACES, coordinates=coordinates,
                            alpha_endo=alpha, alpha_epi=alpha)
        model = Monodomain(biv, AlievPanfilov(), dt=0.5, diffusivity=(2.4, 0.3), fibres=frame.fibre,
                           stimuli=[Stimulus(centre=site, radius=3.0, duration=3.0, amplitude=1.0)])
        W = model.point_weights(probes)
        with torch.no_grad():
            _, obs = model.simulate(100, observe=lambda state, k, W=W: W @ state[0])
        times[alpha] = activation_times(dnf.parallel.sum(obs, comm), model.dt).numpy()
        model.destroy()
    circumferential, longitudinal = times[0.0], times[90.0]
    assert circumferential.max() < 45.0 and longitudinal.max() < 45.0    # every probe activated
    # measured: 9.9, 10.9 | 35.0, 36.7 ms and 28.6, 29.2 | 7.5, 7.0 ms (h = 1.2 mm)
    assert circumferential[:2].max() < 0.6 * circumferential[2:].min()
    assert longitudinal[2:].max() < 0.6 * longitudinal[:2].min()
