"""Lifetime: a destroyed operator lets its mesh go, and 1,000 operators on new meshes stay bounded."""

from __future__ import annotations

import gc
import resource
import time
import weakref

from mpi4py import MPI

import dolfinx.fem as fem
import dolfinx.mesh
import numpy as np
import pytest
import torch
import ufl

import deepnum_fem as dnf

COMM = MPI.COMM_WORLD


def free_communicators(comm: MPI.Comm = COMM, *, cap: int = 4096) -> int:
    """How many more communicators this process can make, at most ``cap`` (collective).

    Duplicates ``comm`` until MPI refuses, then frees the duplicates: about 5 ms on one rank and
    25 ms on two. MPICH has 2,046 context ids per process and agrees on a new one over the
    parent communicator, so every rank is refused at the same duplicate. No other thread may
    make communicators meanwhile.
    """
    base = comm.Dup()
    base.Set_errhandler(MPI.ERRORS_RETURN)   # a refusal raises MPI.Exception, whatever comm's handler
    dups = [base]
    try:
        while len(dups) < cap:
            dups.append(base.Dup())
    except MPI.Exception:
        pass
    finally:
        for d in reversed(dups):
            d.Free()
    return comm.allreduce(len(dups), op=MPI.MIN)


def _rss_mb() -> float:
    """Resident set size now (Linux), else the peak so far, in MB."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def _cycle(control: str = "function", *, newton: bool = False, backward: bool = False) -> weakref.ref:
    """New mesh, an operator on it, one call, destroy; returns a weak reference to the mesh."""
    msh = dolfinx.mesh.create_unit_square(COMM, 4, 4)
    V = fem.functionspace(msh, ("Lagrange", 1))
    u, v = fem.Function(V), ufl.TestFunction(V)
    m = fem.Function(V, name="f") if control == "function" else fem.Constant(msh, 1.0)
    a = (1 + u**2) if newton else 1.0
    F = a * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx + u * v * ufl.dx - m * v * ufl.dx
    op = dnf.fem_operator(F, u, controls=[m])
    shape = (V.dofmap.index_map.size_local,) if control == "function" else ()
    m_t = torch.ones(shape, dtype=torch.float64, requires_grad=backward)
    if backward:
        loss = dnf.functional(u**2 * ufl.dx, inputs=[u])
        loss(op(m_t)).backward()
    else:
        op(m_t)
    op.destroy()
    return weakref.ref(msh)


@pytest.mark.parametrize("control", ["constant", "function"])
@pytest.mark.parametrize("newton", [False, True], ids=["linear", "newton"])
def test_destroyed_operator_releases_its_mesh(control, newton):
    # CPython 3.13.0's singledispatchmethod cache kept every UFL traverser, and through the forms
    # it visited every operator's mesh, alive to exit
    mesh_ref = _cycle(control, newton=newton, backward=True)
    gc.collect()
    assert mesh_ref() is None, "the mesh of a destroyed operator is still alive"


def test_thousand_operators_on_new_meshes_stay_bounded():
    # Before, each cycle kept its mesh: 6 communicators and 140 kB (11 and 260 kB per rank on 2
    # ranks), so MPICH's 2,046 ran out after about 340 cycles (190 on 2 ranks). Communicators are
    # checked every 50 cycles, so a leak fails here early and on every rank alike, not in MPI.
    cycles, rss_from, check_every = 1000, 200, 50
    start = time.perf_counter()
    for i in range(1, cycles + 1):
        _cycle("function" if i % 2 else "constant")
        if i == 10:   # warm: forms compiled, PETSc's communicator pool filled
            gc.collect()
            free_ref = free_communicators()
        elif i % check_every == 0:
            gc.collect()
            free = free_communicators()
            assert free >= free_ref - 5, (
                f"{free_ref - free} communicators lost over cycles 10 to {i} ({free} left of MPICH's "
                f"2,046): destroyed operators' meshes are kept alive")
        if i == rss_from:
            gc.collect()
            rss_ref = _rss_mb()
    gc.collect()
    growth = COMM.allreduce(_rss_mb() - rss_ref, op=MPI.MAX)
    seconds = time.perf_counter() - start
    if COMM.rank == 0:
        print(f"\n{cycles} cycles on {COMM.size} rank(s): {seconds:.1f} s, RSS +{growth:.1f} MB over "
              f"cycles {rss_from} to {cycles}, {free} communicators free ({free_ref} at cycle 10)")
    # 800 leaked cycles would add 110 MB; the bound is about 70 of them (40 on 2 ranks)
    assert growth < 10.0, f"RSS grew {growth:.1f} MB over cycles {rss_from} to {cycles}"


# -- destroy(): operators and the three models --------------------------------------------------
def _square(comm, n=6, size=1.0):
    return dolfinx.mesh.create_rectangle(comm, [[0.0, 0.0], [size, size]], [n, n])


def _monodomain(comm):
    from deepnum_fem.models import AlievPanfilov, Monodomain, Stimulus

    model = Monodomain(_square(comm), AlievPanfilov(), dt=0.1, diffusivity=0.1,
                       stimuli=[Stimulus(centre=(0.0, 0.0), radius=0.3)])
    return model, model.operator, lambda: model.step(model.initial_state(), 0)


def _transport(comm):
    from deepnum_fem.models import Transport

    model = Transport(_square(comm), (1.0, 0.0), dt=0.1, diffusivity=0.01)
    return model, model.operator, lambda: model.step(model.zeros())


def _shallow_water(comm):
    from deepnum_fem.models import ShallowWater

    mesh = _square(comm, 4, 1000.0)
    fdim = mesh.topology.dim - 1
    mesh.topology.create_connectivity(fdim, fdim + 1)
    facets = dolfinx.mesh.exterior_facet_indices(mesh.topology)
    tags = dolfinx.mesh.meshtags(mesh, fdim, facets, np.ones(len(facets), dtype=np.int32))
    model = ShallowWater(mesh, 10.0, facet_tags=tags, dt=20.0)
    return model, model.operator, lambda: model.step(model.initial_state())


@pytest.mark.parametrize("make", [_monodomain, _transport, _shallow_water], ids=["monodomain", "transport",
                                                                                "shallow_water"])
def test_a_destroyed_model_gives_back_its_solver_and_refuses_to_step(make):
    model, op, step = make(MPI.COMM_WORLD)
    with torch.no_grad():
        step()
    assert not (op.problem.destroyed or model.destroyed)
    model.destroy()
    assert op.problem.destroyed and model.destroyed
    with pytest.raises(dnf.DeepnumFemError, match="was destroyed"), torch.no_grad():
        step()
    model.destroy()   # twice is harmless


def test_a_destroyed_operator_refuses_its_backward():
    msh = _square(MPI.COMM_WORLD, 4)
    V = dolfinx.fem.functionspace(msh, ("Lagrange", 1))
    u, v, f = dolfinx.fem.Function(V), ufl.TestFunction(V), dolfinx.fem.Function(V)
    F = ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx + u * v * ufl.dx - f * v * ufl.dx
    op = dnf.fem_operator(F, u, controls=[f])
    m = torch.ones(V.dofmap.index_map.size_local, dtype=torch.float64, requires_grad=True)
    loss = dnf.parallel.sum(op(m).sum())
    op.destroy()
    with pytest.raises(dnf.DeepnumFemError, match="cannot be differentiated"):
        loss.backward()
