"""Training-loop helpers: fit, its checkpoints and resume, progress lines, and the figures'
rendering without a display."""

from __future__ import annotations

import warnings

from mpi4py import MPI

import numpy as np
import pytest
import torch

import deepnum_fem as dnf
from deepnum_fem.training import fit, load_checkpoint, resume, save_checkpoint

COMM = MPI.COMM_WORLD


def _problem():
    """A replicated least-squares fit (the same on every rank) and its L-BFGS optimiser."""
    net = torch.nn.Linear(2, 1).double()
    torch.nn.init.zeros_(net.weight)
    torch.nn.init.zeros_(net.bias)
    x = torch.linspace(-1.0, 1.0, 16, dtype=torch.float64).reshape(8, 2)
    y = x @ torch.tensor([[1.5], [-0.5]], dtype=torch.float64) + 0.25
    opt = torch.optim.LBFGS(net.parameters(), lr=1.0, max_iter=2, history_size=5)

    def closure():
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        return loss            # not detached: fit must not warn about converting it

    return net, opt, closure, lambda: float(((net(x) - y) ** 2).mean().detach())


def test_fit_takes_its_arguments_by_keyword_and_positionally(mpi_tmp_path):
    net, opt, closure, loss_now = _problem()
    initial = loss_now()
    history = []
    fit(optimizer=opt, closure=closure, epochs=2, start=0, history=history, checkpoint=mpi_tmp_path / "kw.pt",
        every=1, state={"net": net})
    # the loss reported for an epoch is L-BFGS's first evaluation in it: before the epoch's update
    assert history[0]["loss"] == pytest.approx(initial, rel=1e-14)
    assert history[1]["loss"] < history[0]["loss"]
    payload = load_checkpoint(mpi_tmp_path / "kw.pt")
    assert sorted(payload) == ["epoch", "history", "net", "optimizer"]
    net2, opt2, closure2, _ = _problem()
    fit(opt2, closure2, epochs=2, start=0, history=[], checkpoint=mpi_tmp_path / "pos.pt", every=1,
        state={"net": net2})
    torch.testing.assert_close(net2.weight, net.weight)
    with pytest.raises(ValueError, match="optimizer="):
        fit(opt2, closure2, epochs=1, start=0, history=[], checkpoint=mpi_tmp_path / "x.pt", every=1,
            state={"optimizer": opt2})


def test_fit_converts_the_loss_without_a_requires_grad_warning(mpi_tmp_path):
    """torch's "Converting a tensor with requires_grad=True to a scalar" warning is a warn-once:
    ``set_warn_always`` makes it show whichever test triggered it first."""
    net, opt, closure, _ = _problem()
    always = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fit(optimizer=opt, closure=closure, epochs=2, start=0, history=[], checkpoint=mpi_tmp_path / "w.pt",
                every=1, state={"net": net})
            assert dnf.training.rmse(net(torch.ones(3, 2, dtype=torch.float64)), torch.zeros(3, 1)) > 0
    finally:
        torch.set_warn_always(always)


def test_resumed_fit_counts_epochs_of_the_whole_run_and_matches_a_straight_run(mpi_tmp_path, capsys):
    net, opt, closure, _ = _problem()
    ckpt = mpi_tmp_path / "ckpt.pt"
    fit(optimizer=opt, closure=closure, epochs=4, start=0, history=[], checkpoint=ckpt, every=2,
        state={"net": net})
    capsys.readouterr()
    net, opt, closure, _ = _problem()               # a new process, as it were
    start, history, _ = resume(ckpt, optimizer=opt, state={"net": net})
    assert start == 4 and [h["epoch"] for h in history] == [1, 2, 3, 4]
    fit(optimizer=opt, closure=closure, epochs=8, start=start, history=history, checkpoint=ckpt, every=2,
        state={"net": net})
    out = capsys.readouterr().out
    if COMM.rank == 0:
        lines = [line.split("  ")[0] for line in out.splitlines() if line.startswith("epoch")]
        assert lines == ["epoch 5/8", "epoch 6/8", "epoch 7/8", "epoch 8/8"], out
    straight, opt_s, closure_s, _ = _problem()
    straight_history = []
    fit(optimizer=opt_s, closure=closure_s, epochs=8, start=0, history=straight_history,
        checkpoint=mpi_tmp_path / "straight.pt", every=8, state={"net": straight})
    np.testing.assert_allclose([h["loss"] for h in history], [h["loss"] for h in straight_history], rtol=1e-10)
    # resuming a finished run trains nothing and says so
    capsys.readouterr()
    fit(optimizer=opt, closure=closure, epochs=8, start=8, history=history, checkpoint=ckpt, every=2)
    assert len(history) == 8
    assert ("nothing to train" in capsys.readouterr().out) == (COMM.rank == 0)


def test_resume_restores_tensors_in_place(mpi_tmp_path):
    scale = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    save_checkpoint(mpi_tmp_path / "t.pt", epoch=1, history=[{"epoch": 1, "loss": 1.0}], log_s=scale * 3)
    target = torch.zeros((), dtype=torch.float64, requires_grad=True)
    start, _, payload = resume(mpi_tmp_path / "t.pt", state={"log_s": target})
    assert start == 1 and float(target.detach()) == 1.5 and target.requires_grad


# -- broken checkpoints: a clear error on every rank ----------------------------------------------
def _write(path, data: bytes) -> None:
    if COMM.rank == 0:
        path.write_bytes(data)
    COMM.Barrier()


def _valid_checkpoint_bytes(tmp) -> bytes:
    net, opt, closure, _ = _problem()
    fit(optimizer=opt, closure=closure, epochs=1, start=0, history=[], checkpoint=tmp, every=1,
        state={"net": net})
    return tmp.read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "empty", "text", "object"])
def test_a_corrupt_checkpoint_is_a_clear_error_on_every_rank(mpi_tmp_path, damage):
    good = _valid_checkpoint_bytes(mpi_tmp_path / "good.pt")
    path = mpi_tmp_path / "bad.pt"
    if damage == "object":   # a pickle of an arbitrary object: never unpickled
        if COMM.rank == 0:
            torch.save({"epoch": 1, "history": [], "hook": np.random.default_rng(0)}, path)
        COMM.Barrier()
    else:
        _write(path, {"truncated": good[: len(good) // 2], "empty": b"", "text": b"epoch 3\n"}[damage])
    net, opt, _, _ = _problem()
    with pytest.raises(dnf.DeepnumFemError, match="not a valid checkpoint") as info:
        resume(path, optimizer=opt, state={"net": net})
    message = str(info.value)
    assert str(path) in message and "delete it to start afresh" in message
    assert "weights_only" not in message and info.value.__cause__ is None
    reason = {"truncated": "truncated or damaged", "empty": "it is empty", "text": "truncated or damaged",
              "object": "not a torch.save file of tensors"}[damage]
    assert reason in message


def test_a_checkpoint_without_epoch_or_history_is_a_clear_error(mpi_tmp_path):
    net, opt, _, _ = _problem()
    save_checkpoint(mpi_tmp_path / "c.pt", net=net, optimizer=opt)
    with pytest.raises(dnf.DeepnumFemError, match=r"has no 'epoch' or 'history' entry .*not written by "
                                                  r"deepnum_fem.training.fit; delete it"):
        resume(mpi_tmp_path / "c.pt", optimizer=opt, state={"net": net})
    with pytest.raises(dnf.DeepnumFemError, match=r"has no entry 'other'"):
        load_checkpoint(mpi_tmp_path / "c.pt", other=net)


def test_a_checkpoint_broken_on_one_rank_only_fails_on_every_rank(mpi_tmp_path):
    """Per-rank files, rank 1's truncated (or rank 0's alone when serial): all ranks raise."""
    good = _valid_checkpoint_bytes(mpi_tmp_path / "good.pt")
    path = mpi_tmp_path / f"rank{COMM.rank}.pt"
    path.write_bytes(good[:100] if COMM.rank == COMM.size - 1 else good)
    COMM.Barrier()
    net, opt, _, _ = _problem()
    with pytest.raises(dnf.DeepnumFemError, match="is not a valid checkpoint: it is truncated"):
        resume(path, optimizer=opt, state={"net": net})


def test_a_checkpoint_on_some_ranks_only_fails_on_every_rank(mpi_tmp_path):
    good = _valid_checkpoint_bytes(mpi_tmp_path / "good.pt")
    path = mpi_tmp_path / f"only{COMM.rank}.pt"
    if COMM.rank == 0:
        path.write_bytes(good)
    COMM.Barrier()
    net, opt, _, _ = _problem()
    if COMM.size == 1:
        assert resume(path, optimizer=opt, state={"net": net})[0] == 1
        return
    with pytest.raises(dnf.DeepnumFemError, match=r"exists on rank\(s\) \[0\] only"):
        resume(path, optimizer=opt, state={"net": net})


# -- figures without a display -----------------------------------------------------------------------
def test_surface_figure_renders_without_a_display_and_without_x_errors(mpi_tmp_path, capfd, monkeypatch):
    pytest.importorskip("pyvista")
    import dolfinx.fem
    import dolfinx.mesh

    from deepnum_fem.viz import surface_maps_png

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("VTK_DEFAULT_OPENGL_WINDOW", raising=False)
    msh = dolfinx.mesh.create_unit_cube(COMM, 3, 3, 3)
    V = dolfinx.fem.functionspace(msh, ("Lagrange", 1))
    n = V.dofmap.index_map.size_local
    x = V.tabulate_dof_coordinates()[:n, 0]
    capfd.readouterr()
    surface_maps_png(mpi_tmp_path / "x.png", V, {"x": x, "2x": 2 * x}, label="x")
    err = capfd.readouterr().err
    assert "bad X server connection" not in err, err
    if COMM.rank == 0:
        assert (mpi_tmp_path / "x.png").stat().st_size > 1000
