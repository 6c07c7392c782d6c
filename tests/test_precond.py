"""Torch-backed PETSc preconditioners: TorchPC and the learned FSAI."""

from __future__ import annotations

from mpi4py import MPI
from petsc4py import PETSc

import dolfinx
import dolfinx.fem
import dolfinx.mesh
import numpy as np
import pytest
import torch
import ufl

import deepnum_fem as dnf
from deepnum_fem.precond import (
    FSAINet,
    LearnedFSAI,
    TorchPC,
    TwoLevel,
    block_icc,
    fsai_loss,
    ksp_type_for,
    solve,
    train,
    two_level_loss,
)
from deepnum_fem.precond.family import diffusion_operator, training_family

COMM = MPI.COMM_WORLD
HELD_OUT_SEED = 987654   # not among the training seeds (1000 k + s, s < 6)


@pytest.fixture(scope="module")
def held_out():
    msh = dolfinx.mesh.create_unit_square(COMM, 32, 32, diagonal=dolfinx.mesh.DiagonalType.crossed)
    A = diffusion_operator(msh, seed=HELD_OUT_SEED)
    b = A.createVecLeft()
    b.getArray()[:] = np.random.default_rng(COMM.rank).normal(size=b.getLocalSize())
    yield A, b
    A.destroy()
    b.destroy()


def _krylov(A, ksp_type, setup_pc, rtol=1e-10):
    ksp = PETSc.KSP().create(A.getComm())
    ksp.setOperators(A)
    ksp.setType(ksp_type)
    ksp.setTolerances(rtol=rtol, atol=1e-50, max_it=5000)
    setup_pc(ksp.getPC())
    return ksp


def _direct(A, b):
    ksp = PETSc.KSP().create(A.getComm())
    ksp.setOperators(A)
    ksp.setType("preonly")
    ksp.getPC().setType("lu")
    ksp.getPC().setFactorSolverType("mumps")
    x = A.createVecRight()
    ksp.solve(b, x)
    return x


def _python_pc(ctx):
    def setup(pc):
        pc.setType("python")
        pc.setPythonContext(ctx)
    return setup


def _relative_difference(x, y) -> float:
    d = x.copy()
    d.axpy(-1.0, y)
    return d.norm() / y.norm()


def _cg_matching_direct(A, b, ctx) -> int:
    """CG iterations with the preconditioner ``ctx``, after checking that CG is its Krylov
    method and that the solution matches MUMPS's to 1e-8."""
    assert ksp_type_for(ctx) == "cg"
    x = A.createVecRight()
    its = solve(_krylov(A, "cg", _python_pc(ctx)), b, x)
    assert _relative_difference(x, _direct(A, b)) < 1e-8
    return its


def test_learned_fsai_cg_matches_direct_and_beats_jacobi(held_out):
    A, b = held_out
    its = _cg_matching_direct(A, b, LearnedFSAI())
    its_jacobi = solve(_krylov(A, "cg", lambda pc: pc.setType("jacobi")), b, A.createVecRight())
    assert its < 0.6 * its_jacobi, (its, its_jacobi)


@pytest.mark.parametrize("python_type, kind", [("deepnum_fem.precond.fsai.LearnedFSAI", LearnedFSAI),
                                               ("deepnum_fem.precond.TwoLevel", TwoLevel)])
def test_learned_preconditioners_by_options(held_out, python_type, kind):
    A, b = held_out
    ksp = PETSc.KSP().create(A.getComm())
    ksp.setOperators(A)
    ksp.setOptionsPrefix("dnf_precond_test_")
    opts = PETSc.Options("dnf_precond_test_")
    values = {"ksp_type": "cg", "pc_type": "python", "ksp_rtol": 1e-10, "pc_python_type": python_type}
    for k, v in values.items():
        opts[k] = v
    ksp.setFromOptions()
    for k in values:
        opts.delValue(k)
    x = A.createVecRight()
    solve(ksp, b, x)
    assert isinstance(ksp.getPC().getPythonContext(), kind)
    assert _relative_difference(x, _direct(A, b)) < 1e-8


def _assembled_preconditioner(ctx, A) -> np.ndarray:
    pc = PETSc.PC().create(MPI.COMM_SELF)
    pc.setOperators(A)
    pc.setType("python")
    pc.setPythonContext(ctx)
    pc.setUp()
    n = A.getSize()[0]
    M = np.zeros((n, n))
    e, y = A.createVecRight(), A.createVecLeft()
    for j in range(n):
        e.set(0.0)
        e.setValue(j, 1.0)
        e.assemble()
        pc.apply(e, y)
        M[:, j] = y.getArray()
    return M


def test_learned_fsai_is_symmetric_positive_definite():
    """M assembled column by column on a small serial operator: symmetric, eigenvalues > 0."""
    A = diffusion_operator(dolfinx.mesh.create_unit_square(MPI.COMM_SELF, 6, 6), seed=HELD_OUT_SEED)
    M = _assembled_preconditioner(LearnedFSAI(), A)
    np.testing.assert_allclose(M, M.T, atol=1e-12 * np.abs(M).max())
    assert np.linalg.eigvalsh(M).min() > 0


def test_training_lowers_the_loss_and_resumes_exactly(mpi_tmp_path):
    mats = training_family(sizes=(6, 8), seeds=range(2))
    torch.manual_seed(0)
    net = FSAINet().double()
    gen = torch.Generator().manual_seed(5)
    before = float(fsai_loss(net, mats[0], 64, gen).detach())
    straight = train(net, mats, steps=40, checkpoint=None, every=20, log=lambda m: None)
    gen = torch.Generator().manual_seed(5)
    assert float(fsai_loss(net, mats[0], 64, gen).detach()) < 0.7 * before
    # stop after 20 steps, resume from the checkpoint: the same 40-step history
    torch.manual_seed(0)
    net2 = FSAINet().double()
    ckpt = mpi_tmp_path / f"fsai-rank{COMM.rank}.pt"   # each rank trains its own serial copy
    first = train(net2, mats, steps=20, checkpoint=ckpt, every=10, log=lambda m: None)
    net3 = FSAINet().double()
    second = train(net3, mats, steps=40, checkpoint=ckpt, every=10, log=lambda m: None)
    np.testing.assert_allclose(first + second, straight, rtol=1e-10)


class _Scale(torch.nn.Module):
    def forward(self, r):
        return 0.5 * r


def test_torch_pc_converges_to_the_direct_solution(held_out):
    A, b = held_out
    ctx = TorchPC(_Scale(), linear=True, symmetric=True)
    x = A.createVecRight()
    solve(_krylov(A, ksp_type_for(ctx), _python_pc(ctx)), b, x)
    assert ctx.applications > 1
    assert _relative_difference(x, _direct(A, b)) < 1e-8
    assert ksp_type_for(TorchPC(_Scale())) == "fgmres"


def test_torch_pc_wrong_shape_fails_on_every_rank(held_out):
    A, b = held_out

    class Longer(torch.nn.Module):
        def forward(self, r):
            return torch.cat([r, r[:1]]) if COMM.rank == COMM.size - 1 else r

    with pytest.raises(dnf.DeepnumFemError, match=r"residual's shape"):
        solve(_krylov(A, "fgmres", _python_pc(TorchPC(Longer()))), b, A.createVecRight())


def test_torch_pc_nan_fails_on_every_rank(held_out):
    A, b = held_out

    class Poisoned(torch.nn.Module):
        def forward(self, r):
            return r * float("nan") if COMM.rank == 0 else r

    with pytest.raises(dnf.DeepnumFemError, match="NaN/Inf"):
        solve(_krylov(A, "fgmres", _python_pc(TorchPC(Poisoned()))), b, A.createVecRight())


# -- two-level method with the learned smoother --------------------------------------------

def test_two_level_cg_matches_direct_and_beats_jacobi_and_icc(held_out):
    A, b = held_out
    ctx = TwoLevel()
    its = _cg_matching_direct(A, b, ctx)
    assert 0 < ctx.coarse_size < A.getSize()[0] / 4     # a real coarse space
    its_jacobi = solve(_krylov(A, "cg", lambda pc: pc.setType("jacobi")), b, A.createVecRight())
    icc_ksp = _krylov(A, "cg", lambda pc: None)
    block_icc(icc_ksp)
    its_icc = solve(icc_ksp, b, A.createVecRight())
    assert its < 0.5 * its_icc and its < 0.25 * its_jacobi, (its, its_icc, its_jacobi)


@pytest.mark.parametrize("smoother", ["learned", "jacobi"])
def test_two_level_is_symmetric_positive_definite(smoother):
    """The cycle assembled column by column on a small serial operator (a jiggled cube, 3D):
    symmetric, eigenvalues > 0, so CG is valid."""
    from deepnum_fem.precond.family import jiggled_unit_cube

    A = diffusion_operator(jiggled_unit_cube(6, seed=77), seed=HELD_OUT_SEED)
    M = _assembled_preconditioner(TwoLevel(smoother=smoother), A)
    np.testing.assert_allclose(M, M.T, atol=1e-10 * np.abs(M).max())
    assert np.linalg.eigvalsh(0.5 * (M + M.T)).min() > 0


def test_learned_smoother_beats_damped_jacobi_in_the_cycle():
    """On held-out operators (other seeds and sizes than the training family's), the bundled
    smoother leaves less energy after two cycles than the damped-Jacobi smoother it starts
    from would (the network at initialisation scaled by 2/3 is exactly that)."""
    import math

    from deepnum_fem.precond.fsai import load_model
    from deepnum_fem.precond.twolevel import DEFAULT_SMOOTHER

    mats = training_family(sizes=(24,), sizes_3d=(10,), sizes_jiggled=(11,), seeds=[HELD_OUT_SEED],
                           pattern="A", coarse=True)
    learned = load_model(DEFAULT_SMOOTHER)
    jacobi = FSAINet(**learned.config).double()
    with torch.no_grad():   # Ĝ = √(2/3) I: Richardson with S = (2/3) D⁻¹
        jacobi.body[-1].bias[0] = math.log(math.expm1(math.sqrt(2.0 / 3.0))) - math.log(math.e - 1.0)
    for mat in mats:
        with torch.no_grad():
            ours = float(two_level_loss(learned, mat, 32, torch.Generator().manual_seed(3)))
            theirs = float(two_level_loss(jacobi, mat, 32, torch.Generator().manual_seed(3)))
        assert ours < theirs - 1.0, (ours, theirs)     # at least e× less energy after two cycles


def test_two_level_training_lowers_its_loss():
    mats = training_family(sizes=(12,), sizes_3d=(6,), sizes_jiggled=(), seeds=range(2), pattern="A",
                           coarse=True)
    torch.manual_seed(0)
    net = FSAINet(width=8, pattern="A", hidden=1).double()
    before = [float(two_level_loss(net, m, 32, torch.Generator().manual_seed(9)).detach()) for m in mats]
    train(net, mats, steps=60, loss=two_level_loss, log=lambda m: None)
    after = [float(two_level_loss(net, m, 32, torch.Generator().manual_seed(9)).detach()) for m in mats]
    assert all(a < b - 0.5 for a, b in zip(after, before, strict=True)), (before, after)


def test_two_level_refuses_a_wrong_network():
    with pytest.raises(dnf.DeepnumFemError, match="pattern 'A'"):
        TwoLevel(FSAINet())
    with pytest.raises(dnf.DeepnumFemError, match="smoother must be one of"):
        TwoLevel(smoother="ilu")


def test_learned_preconditioners_refuse_a_nonpositive_diagonal_on_every_rank(held_out):
    A, b = held_out
    B = A.duplicate(copy=True)
    if COMM.rank == 0:
        row = B.getOwnershipRange()[0]
        B.setValue(row, row, -1.0)
    B.assemble()
    for ctx in (LearnedFSAI(), TwoLevel()):
        with pytest.raises(dnf.DeepnumFemError, match="positive diagonal"):
            solve(_krylov(B, "cg", _python_pc(ctx)), b, B.createVecRight())
    B.destroy()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_two_level_network_on_cuda_matches_cpu(held_out):
    """The smoother's network evaluated on the GPU gives the CPU's iterations and solution."""
    A, b = held_out
    x_cpu, x_gpu = A.createVecRight(), A.createVecRight()
    its_cpu = solve(_krylov(A, "cg", _python_pc(TwoLevel())), b, x_cpu)
    its_gpu = solve(_krylov(A, "cg", _python_pc(TwoLevel(device="cuda"))), b, x_gpu)
    assert abs(its_gpu - its_cpu) <= 1
    assert _relative_difference(x_gpu, x_cpu) < 1e-8


@pytest.mark.parametrize("dim", [2, 3])
def test_refine_hands_cell_values_to_the_children(dim):
    """Each refined cell inherits its parent's value: with the parents' midpoints as values,
    every child's midpoint lies within half a parent cell of the value it got (1 and 2 ranks)."""
    from deepnum_fem.precond.family import refine

    msh = (dolfinx.mesh.create_unit_square(COMM, 5, 5) if dim == 2 else dolfinx.mesh.create_unit_cube(COMM, 3, 3, 3))
    owned = msh.topology.index_map(dim).size_local
    midpoints = dolfinx.mesh.compute_midpoints(msh, dim, np.arange(owned, dtype=np.int32))
    fine, inherited = refine(msh, 2, midpoints)
    fine_owned = fine.topology.index_map(dim).size_local
    assert inherited.shape == (fine_owned, 3)
    children = dolfinx.mesh.compute_midpoints(fine, dim, np.arange(fine_owned, dtype=np.int32))
    h = 1.0 / (5 if dim == 2 else 3)
    assert np.linalg.norm(children - inherited, axis=1).max() < 0.5 * h * np.sqrt(dim)
    assert COMM.allreduce(fine_owned) == 16 * COMM.allreduce(owned) * (4 if dim == 3 else 1)


# -- failures in user models and model files: a clear error on every rank ----------------------------
def _raises_on_last_rank(r):
    if COMM.rank == COMM.size - 1:
        raise RuntimeError("boom")
    return r


class _BoomModel(torch.nn.Module):
    def forward(self, r):
        return _raises_on_last_rank(r)


class _BoomFSAINet(FSAINet):
    def forward(self, features):
        return _raises_on_last_rank(super().forward(features))


def _assert_boom(error: BaseException) -> None:
    assert isinstance(error, dnf.DeepnumFemError), repr(error)
    assert "boom" in str(error) and "RuntimeError" in str(error), str(error)


@pytest.mark.timeout(60, method="thread")   # a hang in MPI: end the process
def test_torch_pc_model_raising_on_one_rank_fails_on_every_rank(held_out):
    from deepnum_fem.errors import NetworkError

    A, b = held_out
    with pytest.raises(NetworkError, match=r"TorchPC model _BoomModel \(preconditioner apply\) raised "
                                           r"RuntimeError: boom") as info:
        solve(_krylov(A, "fgmres", _python_pc(TorchPC(_BoomModel()))), b, A.createVecRight())
    assert isinstance(info.value.__cause__, RuntimeError) == (COMM.rank == COMM.size - 1)
    # a plain KSP solve: PETSc's error, with the NetworkError as its cause on every rank
    with pytest.raises(PETSc.Error) as info:
        _krylov(A, "fgmres", _python_pc(TorchPC(_BoomModel()))).solve(b, A.createVecRight())
    _assert_boom(info.value.__cause__)


@pytest.mark.timeout(60, method="thread")   # a hang in MPI: end the process
@pytest.mark.parametrize("kind", ["fsai", "two-level"])
def test_learned_preconditioner_network_raising_on_one_rank_fails_on_every_rank(held_out, kind):
    A, b = held_out
    ctx = LearnedFSAI(_BoomFSAINet().double()) if kind == "fsai" else TwoLevel(_BoomFSAINet(pattern="A").double())
    with pytest.raises(dnf.DeepnumFemError) as info:
        solve(_krylov(A, "cg", _python_pc(ctx)), b, A.createVecRight())
    _assert_boom(info.value)
    assert ("LearnedFSAI's network" if kind == "fsai" else "TwoLevel's smoother's network") in str(info.value)


def _by_options(A, python_type: str) -> PETSc.KSP:
    ksp = PETSc.KSP().create(A.getComm())
    ksp.setOperators(A)
    ksp.setOptionsPrefix("dnf_precond_file_test_")
    opts = PETSc.Options("dnf_precond_file_test_")
    values = {"ksp_type": "cg", "pc_type": "python", "pc_python_type": python_type}
    for k, v in values.items():
        opts[k] = v
    ksp.setFromOptions()
    for k in values:
        opts.delValue(k)
    return ksp


_BY_OPTIONS = {"fsai": ("deepnum_fem.precond.fsai.LearnedFSAI", "DNF_FSAI_MODEL"),
               "two-level": ("deepnum_fem.precond.TwoLevel", "DNF_TWOLEVEL_MODEL")}


def _model_file(directory, damage: str, kind: str):
    """A missing, truncated or non-torch model file (shared by the ranks)."""
    from deepnum_fem.precond.fsai import DEFAULT_MODEL
    from deepnum_fem.precond.twolevel import DEFAULT_SMOOTHER

    path = directory / f"{kind}-{damage}.pt"
    if COMM.rank == 0 and damage != "missing":
        good = (DEFAULT_MODEL if kind == "fsai" else DEFAULT_SMOOTHER).read_bytes()
        path.write_bytes(good[: len(good) // 2] if damage == "truncated" else b"not a model\n")
    COMM.Barrier()
    return path


def _assert_names_the_file(error: BaseException, path, variable: str, damage: str) -> None:
    message = str(error)
    assert isinstance(error, dnf.DeepnumFemError), repr(error)
    assert str(path) in message and f"${variable}" in message, message
    expected = {"missing": "model at", "truncated": "is not a valid model file: it is truncated or damaged",
                "not-torch": "is not a valid model file: it is"}[damage]
    assert expected in message, message
    assert "weights_only" not in message


@pytest.mark.parametrize("damage", ["missing", "truncated", "not-torch"])
@pytest.mark.parametrize("kind", ["fsai", "two-level"])
def test_learned_preconditioner_by_options_with_a_bad_model_file(held_out, mpi_tmp_path, monkeypatch, kind,
                                                                  damage):
    A, b = held_out
    python_type, variable = _BY_OPTIONS[kind]
    path = _model_file(mpi_tmp_path, damage, kind)
    monkeypatch.setenv(variable, str(path))
    ksp = _by_options(A, python_type)
    with pytest.raises(dnf.DeepnumFemError) as info:
        solve(ksp, b, A.createVecRight())
    _assert_names_the_file(info.value, path, variable, damage)


@pytest.mark.parametrize("kind", ["fsai", "two-level"])
def test_fem_operator_with_a_missing_learned_model_is_a_clear_error(comm, mpi_tmp_path, monkeypatch, kind):
    python_type, variable = _BY_OPTIONS[kind]
    path = mpi_tmp_path / "missing.pt"
    monkeypatch.setenv(variable, str(path))
    msh = dolfinx.mesh.create_unit_square(comm, 4, 4)
    V = dolfinx.fem.functionspace(msh, ("Lagrange", 1))
    u, v, f = dolfinx.fem.Function(V), ufl.TestFunction(V), dolfinx.fem.Function(V)
    F = (ufl.inner(ufl.grad(u), ufl.grad(v)) + u * v - f * v) * ufl.dx
    op = dnf.fem_operator(F, u, controls=[f], petsc_options={"ksp_type": "cg", "pc_type": "python",
                                                             "pc_python_type": python_type})
    with pytest.raises(dnf.DeepnumFemError) as info:
        op(torch.ones(dnf.convert.n_owned(f), dtype=torch.float64))
    _assert_names_the_file(info.value, path, variable, "missing")
    op.destroy()


def test_a_krylov_solve_that_runs_out_of_iterations_names_its_reason(held_out):
    A, b = held_out
    ksp = _krylov(A, "cg", lambda pc: pc.setType("jacobi"))
    ksp.setTolerances(rtol=1e-14, max_it=2)
    with pytest.raises(dnf.SolverError, match=r"diverged: reason DIVERGED_MAX_IT \(-3\) after 2 iterations"):
        solve(ksp, b, A.createVecRight())
