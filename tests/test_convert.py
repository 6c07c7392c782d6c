"""to_torch / from_torch: owned dofs, block size, ghosts, and bad input, on 1 and 2 ranks."""

from __future__ import annotations

from mpi4py import MPI

import dolfinx
import dolfinx.fem
import dolfinx.mesh
import numpy as np
import pytest
import torch

import deepnum_fem as dnf

SPACES = [("Lagrange", 1, ()), ("Lagrange", 2, ()), ("Lagrange", 2, (2,)), ("DG", 0, ())]


def _field(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A smooth field with a distinct value at every dof: (n_points,) or (n_points, 2)."""
    base = 1.0 + x[:, 0] + 2.0 * x[:, 1] ** 2 + 0.5 * x[:, 0] * x[:, 1]
    return base if shape == () else np.stack([base, np.sin(3 * x[:, 0]) - x[:, 1]], axis=1)


@pytest.fixture(scope="module")
def mesh():
    return dolfinx.mesh.create_unit_square(MPI.COMM_WORLD, 7, 5,
                                           ghost_mode=dolfinx.mesh.GhostMode.shared_facet)


@pytest.fixture(params=SPACES, ids=lambda p: f"{p[0]}{p[1]}{'v' if p[2] else ''}")
def space(request, mesh):
    family, degree, shape = request.param
    return dolfinx.fem.functionspace(mesh, (family, degree, shape)), shape


def test_to_torch_gives_owned_dofs_in_dolfinx_order(space):
    V, shape = space
    u = dolfinx.fem.Function(V)
    x = V.tabulate_dof_coordinates()  # owned dofs first, then ghosts
    u.x.array[:] = _field(x, shape).reshape(-1)
    t = dnf.to_torch(u)
    imap, bs = V.dofmap.index_map, V.dofmap.index_map_bs
    assert t.shape == (imap.size_local * bs,)
    assert t.dtype == torch.float64
    np.testing.assert_array_equal(t.numpy(), _field(x[: imap.size_local], shape).reshape(-1))
    # a copy, not a view
    t[:] = np.nan
    assert not np.any(np.isnan(u.x.array))


def test_owned_dofs_partition_the_global_space(space):
    V, _ = space
    u = dolfinx.fem.Function(V)
    u.x.array[:] = 1.0
    total = dnf.parallel.sum(dnf.to_torch(u).sum())
    imap = V.dofmap.index_map
    assert total.item() == imap.size_global * V.dofmap.index_map_bs


def test_from_torch_writes_owned_dofs_and_refreshes_ghosts(space, comm):
    V, shape = space
    x = V.tabulate_dof_coordinates()
    imap, bs = V.dofmap.index_map, V.dofmap.index_map_bs
    n = imap.size_local
    u = dolfinx.fem.Function(V)
    u.x.array[:] = np.nan  # ghosts must be overwritten by the owners' values
    owned = _field(x[:n], shape).reshape(n, bs)
    returned = dnf.from_torch(torch.from_numpy(owned.reshape(-1)), u)
    assert returned is u
    np.testing.assert_array_equal(u.x.array[: n * bs], owned.reshape(-1))
    # a ghost holds its owner's value, bit for bit (owned ranges are contiguous, in rank order;
    # recomputing it from the ghost's own coordinates could differ in the last bit)
    everyone = np.concatenate(comm.allgather(owned))
    np.testing.assert_array_equal(u.x.array[n * bs:], everyone[imap.ghosts].reshape(-1))
    # the round trip is exact
    np.testing.assert_array_equal(dnf.to_torch(u).numpy(), u.x.array[: n * V.dofmap.index_map_bs])


def test_float32_cuda_like_options(space):
    V, shape = space
    u = dolfinx.fem.Function(V)
    u.x.array[:] = _field(V.tabulate_dof_coordinates(), shape).reshape(-1)
    t32 = dnf.to_torch(u, dtype=torch.float32)
    assert t32.dtype == torch.float32
    np.testing.assert_allclose(t32.numpy(), dnf.to_torch(u).numpy(), rtol=1e-6)
    w = dolfinx.fem.Function(V)
    dnf.from_torch(t32.requires_grad_(), w)   # float32 with history: cast, detached
    np.testing.assert_allclose(w.x.array, u.x.array, rtol=1e-6)


def test_from_torch_shape_error_on_one_rank_raises_everywhere(mesh, comm):
    V = dolfinx.fem.functionspace(mesh, ("Lagrange", 2, (2,)))
    u = dolfinx.fem.Function(V)
    n = dnf.to_torch(u).numel()
    bad = n + 1 if comm.rank == comm.size - 1 else n   # only the last rank is wrong
    with pytest.raises(dnf.ShapeError, match=rf"expected a tensor of shape|\[rank {comm.size - 1}\]"):
        dnf.from_torch(torch.zeros(bad, dtype=torch.float64), u)
    if comm.rank == comm.size - 1:
        with pytest.raises(dnf.ShapeError, match=rf"shape \({n},\).*got \({n + 1},\)"):
            dnf.from_torch(torch.zeros(n + 1, dtype=torch.float64), u)
    else:
        with pytest.raises(dnf.ShapeError):
            dnf.from_torch(torch.zeros(n, dtype=torch.float64), u)


def test_from_torch_rejects_a_2d_tensor(mesh):
    V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1, (2,)))
    u = dolfinx.fem.Function(V)
    n = V.dofmap.index_map.size_local
    with pytest.raises(dnf.ShapeError, match=r"block size 2"):
        dnf.from_torch(torch.zeros((n, 2), dtype=torch.float64), u)


@pytest.mark.parametrize("bad", [torch.int64, torch.bool, torch.complex128])
def test_from_torch_rejects_non_real_float(mesh, bad):
    V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
    u = dolfinx.fem.Function(V)
    n = V.dofmap.index_map.size_local
    with pytest.raises(dnf.DTypeError, match=rf"got dtype {bad}"):
        dnf.from_torch(torch.zeros(n, dtype=bad), u)


def test_from_torch_rejects_meta_device_and_non_tensors(mesh):
    V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
    u = dolfinx.fem.Function(V)
    n = V.dofmap.index_map.size_local
    with pytest.raises(dnf.DeviceError, match="meta"):
        dnf.from_torch(torch.zeros(n, dtype=torch.float64, device="meta"), u)
    with pytest.raises(TypeError, match="expects a torch.Tensor, got ndarray"):
        dnf.from_torch(np.zeros(n), u)


def test_to_torch_rejects_bad_options(mesh):
    u = dolfinx.fem.Function(dolfinx.fem.functionspace(mesh, ("Lagrange", 1)))
    with pytest.raises(dnf.DTypeError, match="int32"):
        dnf.to_torch(u, dtype=torch.int32)
    with pytest.raises(dnf.DeviceError, match="unknown device"):
        dnf.to_torch(u, device="nonsense")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_round_trip(mesh):
    V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
    u = dolfinx.fem.Function(V)
    u.x.array[:] = _field(V.tabulate_dof_coordinates(), ())
    t = dnf.to_torch(u, device="cuda")
    assert t.is_cuda
    w = dolfinx.fem.Function(V)
    dnf.from_torch(t, w)
    np.testing.assert_array_equal(w.x.array, u.x.array)
