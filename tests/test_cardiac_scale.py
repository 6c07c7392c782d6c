"""bench/cardiac_scale.py's measurements on a tiny biventricle (h = 2 mm, 1,423 nodes): the
gradient of a checkpointed rollout is the one without checkpoints (the recomputed steps are
the same operations), and the step-time breakdown's shares are fractions of the step."""

from __future__ import annotations

import sys
from pathlib import Path

from mpi4py import MPI

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import cardiac_scale  # noqa: E402  (bench/ first on sys.path)

from deepnum_fem.geometry import biventricle  # noqa: E402


@pytest.fixture(scope="module")
def tissue():
    data = biventricle(2.0, MPI.COMM_WORLD)
    return data, cardiac_scale.fibres_of(data)


def test_checkpointed_gradient_is_the_full_one(tissue):
    result = cardiac_scale.run_gradient(*tissue, steps=6, every=2, rtol=1e-8, theta=0.5, repeats=1)
    assert result["gradient_checkpointed_relative_difference"] <= 1e-10
    assert all(abs(g) > 0 for g in result["gradient"].values())
    assert result["ratio_vs_nograd"] > 1.0


@pytest.mark.parametrize("name", ["icc0", "two-level"])
def test_breakdown_shares_are_fractions_of_the_step(tissue, name):
    pc = cardiac_scale.preconditioners(MPI.COMM_WORLD.size)[name]
    result = cardiac_scale.run_ours(*tissue, name, pc, steps=6, rtol=1e-8, theta=0.5)
    shares = result["breakdown"]
    measured = sum(v for k, v in shares.items() if k != "rest")
    assert all(v >= 0 for v in shares.values())
    assert 0 < measured <= 1.0 and shares["ionic"] > 0 and shares["ksp_solve"] > 0
    assert result["cg_iterations_mean"] >= 1
