"""Mesh convergence of the Niederer benchmark's tissue (TT2006, its conductivities): plane waves
along and across the fibres, at the benchmark's coarse dt = 0.05 ms.

The full benchmark (``bench/niederer.py``) is minutes per run; here the slab is cut down to
thin bars, one cell thick, paced over their whole end, so the front is a plane wave along x
(the fibres, D_l) or along y (across them, D_t). What is measured is the conduction time
between two points of the bar (at 40 % and 90 % of its length): unlike the activation time
at a point near the stimulus, it does not depend on how the stimulated region is discretised.

The runs are independent and small, so under mpirun each rank runs its share of them alone
(COMM_SELF) and the times are gathered: the assertions are the same on any number of ranks.
"""

from __future__ import annotations

import math

from mpi4py import MPI

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import pytest
import torch

from deepnum_fem.models import Monodomain, Stimulus, TenTusscherPanfilov2006

CHI, CM = 140.0, 0.01      # 1/mm, µF/mm²
DT = 0.05                  # ms


def _harmonic(i: float, e: float) -> float:
    return i * e / (i + e)


#: D_l, D_t (mm²/ms) from the benchmark's conductivities (S/m), as bench/niederer.py
D_L = _harmonic(0.17, 0.62) / (CHI * CM)
D_T = _harmonic(0.019, 0.24) / (CHI * CM)


def conduction_time(axis: int, length: float, dx: float, lumped: bool = False) -> float:
    """Time (ms) for a plane wave to go from 0.4 to 0.9 of a bar ``length`` mm along ``axis``
    (0: along the fibres, 1: across), cells of ``dx`` mm, one cell thick."""
    extent, cells = [dx, dx, dx], [1, 1, 1]
    extent[axis], cells[axis] = length, round(length / dx)
    mesh = dolfinx.mesh.create_box(MPI.COMM_SELF, [[0.0, 0.0, 0.0], extent], cells,
                                   dolfinx.mesh.CellType.tetrahedron)
    fibres = dolfinx.fem.Function(dolfinx.fem.functionspace(mesh, ("DG", 0, (3,))))
    fibres.x.array.reshape(-1, 3)[:] = (1.0, 0.0, 0.0)
    paced = 0.075 * length
    stimulus = Stimulus(start=0.0, duration=2.0, amplitude=50_000 * 1e-3 / (CHI * CM),
                        marker=lambda x: x[axis] <= paced + 1e-9)
    model = Monodomain(mesh, TenTusscherPanfilov2006(), dt=DT, diffusivity=(D_L, D_T), fibres=fibres,
                       stimuli=[stimulus], lumped_mass=lumped)
    points = np.zeros((2, 3))
    points[:, axis] = (0.4 * length, 0.9 * length)
    sensors = model.sensors(points)
    state = model.initial_state()
    previous = sensors(state).numpy()
    crossing = np.full(2, np.nan)
    with torch.no_grad():
        for k in range(round(40.0 / DT)):
            state = model.step(state, k)
            v = sensors(state).numpy()
            up = np.isnan(crossing) & (previous <= 0.0) & (v > 0.0)
            crossing[up] = (k + (0.0 - previous[up]) / (v[up] - previous[up])) * DT
            previous = v
            if not np.isnan(crossing).any():
                break
    model.destroy()
    assert not np.isnan(crossing).any(), f"no propagation to both points (axis {axis}, dx {dx}, lumped {lumped})"
    return float(crossing[1] - crossing[0])


def _assert_converges(times: list[float], what: str, *, rate: float) -> None:
    """``times`` on meshes halved each time (the last the finest): monotone, and the distance to
    the finest falling by at least ``rate`` per halving."""
    steps = np.diff(times)
    assert np.all(steps > 0) or np.all(steps < 0), f"{what}: not monotone in dx: {times}"
    errors = [abs(t - times[-1]) for t in times[:-1]]
    for coarse, fine in zip(errors, errors[1:], strict=False):
        assert fine * rate <= coarse, f"{what}: error to the finest {errors} falls by less than {rate} per halving"


ALONG = [(0, 4.0, dx, False) for dx in (0.2, 0.1, 0.05, 0.025)]
ACROSS = {lumped: [(1, 2.0, dx, lumped) for dx in (0.1, 0.05, 0.025, 0.0125)] for lumped in (False, True)}


@pytest.fixture(scope="module")
def times() -> dict[tuple, float]:
    """The conduction time of every case, each run by one rank."""
    comm = MPI.COMM_WORLD
    cases = ALONG + ACROSS[False] + ACROSS[True]
    mine = {}
    for case in cases[comm.rank::comm.size]:
        try:
            mine[case] = conduction_time(*case)
        except Exception as e:  # noqa: BLE001  (reported on every rank, so that none waits alone)
            mine[case] = f"{type(e).__name__}: {e}"
    gathered = {case: t for share in comm.allgather(mine) for case, t in share.items()}
    failed = {case: t for case, t in gathered.items() if isinstance(t, str)}
    if failed:
        pytest.fail(f"cases (axis, length, dx, lumped) failed: {failed}")
    return gathered


@pytest.fixture(scope="module")
def along(times) -> list[float]:
    return [times[case] for case in ALONG]


@pytest.fixture(scope="module")
def across(times) -> dict[str, list[float]]:
    return {"consistent": [times[case] for case in ACROSS[False]], "lumped": [times[case] for case in ACROSS[True]]}


def test_conduction_along_the_fibres_converges_in_dx(along):
    """dx 0.2 → 0.025 mm, 2 mm of a 4 mm bar: the conduction time rises monotonically (the
    consistent-mass front is too fast on coarse meshes) and its distance to the finest mesh's
    falls by at least 2 per halving (measured: 2.8, then 4.3), toward a speed of 0.5–0.6 mm/ms
    (measured 0.553 at dx 0.025)."""
    _assert_converges(along, "along the fibres", rate=2.0)
    assert along[0] < along[-1]
    speed = 2.0 / along[-1]
    assert 0.5 < speed < 0.6, f"conduction velocity along the fibres {speed:.3f} mm/ms"


def test_conduction_across_the_fibres_converges_from_both_sides(across):
    """dx 0.1 → 0.0125 mm, 1 mm of a 2 mm bar across the fibres, with the consistent and the
    lumped mass matrix: both conduction times converge (distance to their finest falling by at
    least 1.8 per halving; measured 2.2 and 4.5 consistent, 3.6 and 4.6 lumped), the consistent
    one from below (fronts too fast), the lumped one from above (too slow), so that the two
    bracket the limit; on the finest mesh they are within 1 % of each other."""
    consistent, lumped = across["consistent"], across["lumped"]
    _assert_converges(consistent, "across, consistent mass", rate=1.8)
    _assert_converges(lumped, "across, lumped mass", rate=1.8)
    assert consistent[0] < consistent[-1] and lumped[0] > lumped[-1]
    assert all(c < m for c, m in zip(consistent, lumped, strict=True)), f"no bracket: {consistent} vs {lumped}"
    assert lumped[-1] - consistent[-1] < 0.01 * consistent[-1], f"{consistent[-1]} vs {lumped[-1]}"


def test_speed_ratio_is_the_square_root_of_the_diffusivity_ratio(along, across):
    """A plane wave's speed scales as sqrt(D) for the same cells, so on the finest meshes the
    speed along over the speed across is sqrt(D_l / D_t) = 2.75, to 2 % (measured 2.76)."""
    ratio = (2.0 / along[-1]) / (1.0 / across["consistent"][-1])
    assert ratio == pytest.approx(math.sqrt(D_L / D_T), rel=0.02)
