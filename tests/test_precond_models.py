"""The learned preconditioners chosen by options inside the models, forward and adjoint, against
MUMPS: FSAI in the monodomain diffusion step (CG) and the shallow-water Newton steps (GMRES), and
the two-level method on the elevation's Schur complement of a shallow-water block preconditioner."""

from __future__ import annotations

from mpi4py import MPI

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import pytest
import torch
import ufl

import deepnum_fem as dnf
from deepnum_fem.models.ionic import AlievPanfilov
from deepnum_fem.models.monodomain import Monodomain, Stimulus
from deepnum_fem.models.shallow_water import ShallowWater
from deepnum_fem.precond import LearnedFSAI, TwoLevel

FSAI = {"pc_type": "python", "pc_python_type": "deepnum_fem.precond.fsai.LearnedFSAI"}
TWO_LEVEL = {"pc_type": "python", "pc_python_type": "deepnum_fem.precond.TwoLevel"}
# A one-level factorisation preconditioner for comparison (block Jacobi's sub-PC is ILU(0))
ILU = {"pc_type": "ilu" if MPI.COMM_WORLD.size == 1 else "bjacobi"}
CG = {"ksp_type": "cg", "ksp_rtol": 1e-12}
# The shallow-water Jacobian is far from the SPD diffusion operators FSAI was trained on:
# GMRES needs a long restart (hundreds of iterations per Newton step here, ILU(0) about 20)
GMRES = {"ksp_type": "gmres", "ksp_gmres_restart": 300, "ksp_rtol": 1e-12, "ksp_max_it": 3000}


def _relative(a: torch.Tensor, b: torch.Tensor, comm) -> float:
    """Global ``‖a - b‖ / ‖b‖`` of owned-dof tensors."""
    return float(dnf.parallel.sum(((a - b) ** 2).sum(), comm).sqrt() / dnf.parallel.sum((b**2).sum(), comm).sqrt())


def _python_pc_applications(ksp, kind=LearnedFSAI) -> int:
    """How often the KSP's ``kind`` preconditioner was applied; fails unless the KSP uses one."""
    pc = ksp.getPC()
    assert pc.getType() == "python"
    ctx = pc.getPythonContext()
    assert isinstance(ctx, kind), type(ctx)
    return ctx.applications


# -- monodomain ----------------------------------------------------------------------------------
def _scale(n: int) -> torch.Tensor:
    """A conductivity scale that varies over the owned cells (0.5 to 1.5)."""
    return 0.5 + torch.linspace(0.0, 1.0, n, dtype=torch.float64)


def _monodomain_rollout(comm, petsc_options, steps=6):
    """A 10 mm sheet with a DG0 conductivity scale as control: the model, the potentials after
    each step, the scale's tensor and the potentials' sum of squares."""
    mesh = dolfinx.mesh.create_rectangle(comm, [[0.0, 0.0], [10.0, 10.0]], [10, 10])
    s = dolfinx.fem.Function(dolfinx.fem.functionspace(mesh, ("DG", 0)))
    model = Monodomain(mesh, AlievPanfilov(), dt=0.5, diffusivity=1.0, conductivity_scale=s,
                       stimuli=[Stimulus(centre=(0.0, 0.0), radius=3.5, duration=2.0, amplitude=1.0)],
                       petsc_options=petsc_options)
    scale = _scale(dnf.convert.n_owned(s)).requires_grad_()
    _, v = model.simulate(steps, scale=scale, observe=lambda state, k: state[0])
    return model, v, scale, dnf.parallel.sum((v**2).sum(), comm)


@pytest.mark.parametrize("options, kind", [(FSAI, LearnedFSAI), (TWO_LEVEL, TwoLevel)], ids=["fsai", "two-level"])
def test_monodomain_with_a_learned_preconditioner_matches_the_direct_solver(comm, options, kind):
    _, v_ref, scale_ref, loss_ref = _monodomain_rollout(comm, None)
    loss_ref.backward()
    model, v, scale, loss = _monodomain_rollout(comm, {**CG, **options})
    ksp = model.operator.problem.ksp
    assert ksp.getType() == "cg"
    forward = _python_pc_applications(ksp, kind)
    loss.backward()
    assert forward > 0 and _python_pc_applications(ksp, kind) > forward     # the adjoint used it too
    assert _relative(v.detach(), v_ref.detach(), comm) < 1e-8
    assert _relative(scale.grad, scale_ref.grad, comm) < 1e-6
    assert float(loss_ref.detach()) > 1.0                            # a wave, not rest


def test_monodomain_takes_any_factorisation_preconditioner(comm):
    """Options naming a PC replace the default MUMPS LU entirely (no MUMPS option is left over)."""
    with torch.no_grad():
        model, v, _, _ = _monodomain_rollout(comm, {**CG, **ILU}, steps=2)
        _, v_ref, _, _ = _monodomain_rollout(comm, None, steps=2)
    assert model.operator.problem.ksp.getPC().getType() == ILU["pc_type"]
    assert _relative(v.detach(), v_ref.detach(), comm) < 1e-8


# -- shallow water --------------------------------------------------------------------------------
def _basin_rollout(comm, petsc_options, steps=3):
    """A closed 1000 x 800 m basin on a sloping bed, a 0.5 m hump released from rest: the states
    after each step and the gradient of the summed squared elevations in the drag coefficient."""
    mesh = dolfinx.mesh.create_rectangle(comm, [[0.0, 0.0], [1000.0, 800.0]], [6, 4])
    hb = dolfinx.fem.Function(dolfinx.fem.functionspace(mesh, ("Lagrange", 1)))
    hb.interpolate(lambda x: 6.0 + 6.0 * x[0] / 1000.0)
    model = ShallowWater(mesh, hb, dt=20.0, coriolis=1e-4, viscosity=1.0, petsc_options=petsc_options)
    state0 = model.initial_state(lambda x: 0.5 * np.exp(-((x[0] - 300) ** 2 + (x[1] - 400) ** 2) / (2 * 150.0**2)))
    drag = torch.tensor(0.0025, dtype=torch.float64, requires_grad=True)
    _, states = model.simulate(steps, state0, drag=drag, observe=lambda w, k: w)
    loss = dnf.parallel.sum((model.elevation(states) ** 2).sum(), comm)
    loss.backward()
    grad = dnf.parallel.sum(drag.grad, comm)      # a Constant's .grad is this rank's share
    return model, states.detach(), grad


@pytest.mark.parametrize("pc", ["fsai", "ilu"])
def test_shallow_water_newton_with_gmres_matches_mumps(comm, pc):
    _, ref, grad_ref = _basin_rollout(comm, None)
    model, states, grad = _basin_rollout(comm, {**GMRES, **(FSAI if pc == "fsai" else ILU)})
    problem = model.operator.problem
    newton_ksp = problem.solver.getKSP()
    assert newton_ksp.getType() == "gmres" and problem.adjoint_solver.getType() == "gmres"
    if pc == "fsai":
        assert _python_pc_applications(newton_ksp) > 0
        assert _python_pc_applications(problem.adjoint_solver) > 0          # the transposed adjoint solves
    else:
        assert newton_ksp.getPC().getType() == ILU["pc_type"]
    assert _relative(states, ref, comm) < 1e-8
    assert abs(float(grad - grad_ref)) < 1e-6 * abs(float(grad_ref))
    assert _relative(states[-1], states[0], comm) > 1e-3                 # the water moved


def _schur_twolevel(ksp) -> TwoLevel:
    """The TwoLevel preconditioning the Schur block of the KSP's PCFIELDSPLIT; fails unless there is one."""
    pc = ksp.getPC()
    assert pc.getType() == "fieldsplit"
    velocity, schur = pc.getFieldSplitSubKSP()
    assert velocity.getPC().getType() == "bjacobi"
    ctx = schur.getPC().getPythonContext()
    assert isinstance(ctx, TwoLevel), type(ctx)
    return ctx


def test_shallow_water_fieldsplit_with_a_learned_schur_preconditioner_matches_mumps(comm):
    """Schur-complement fieldsplit (Jacobi on the velocity, TwoLevel on selfp's Ŝ): the states and the
    drag gradient (transposed solves through the same preconditioner) of the direct solver."""
    _, ref, grad_ref = _basin_rollout(comm, None)
    model, states, grad = _basin_rollout(comm, ShallowWater.fieldsplit_options("learned"))
    problem = model.operator.problem
    newton, adjoint = problem.solver.getKSP(), problem.adjoint_solver
    u_field = newton.getPC().getFieldSplitSubIS("u")
    assert u_field.getSize() == comm.allreduce(model.n_u) and u_field.getLocalSize() == model.n_u
    twolevel = _schur_twolevel(newton)
    assert twolevel.smoother == "learned" and twolevel.applications > 0
    assert _schur_twolevel(adjoint).applications > 0
    assert _relative(states, ref, comm) < 1e-8
    assert abs(float(grad - grad_ref)) < 1e-6 * abs(float(grad_ref))
    assert _relative(states[-1], states[0], comm) > 1e-3


def test_shallow_water_fieldsplit_options_check_their_arguments():
    assert ShallowWater.fieldsplit_options("gamg")["fieldsplit_eta_pc_type"] == "gamg"
    with pytest.raises(ValueError, match="schur"):
        ShallowWater.fieldsplit_options("ilu")
    with pytest.raises(ValueError, match="factorization"):
        ShallowWater.fieldsplit_options(factorization="triangular")


def test_a_preconditioner_failure_is_a_clear_error_on_every_rank(comm):
    """LearnedFSAI refuses an operator without a positive diagonal; the solve raises its error
    (not PETSc's bare error code), on every rank."""
    mesh = dolfinx.mesh.create_unit_square(comm, 4, 4)
    V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
    u, v, f = dolfinx.fem.Function(V), ufl.TestFunction(V), dolfinx.fem.Function(V)
    F = -(ufl.inner(ufl.grad(u), ufl.grad(v)) + u * v + f * v) * ufl.dx
    op = dnf.fem_operator(F, u, controls=[f], petsc_options={**CG, **FSAI})
    with pytest.raises(dnf.DeepnumFemError, match="positive diagonal"):
        op(torch.ones(dnf.convert.n_owned(f), dtype=torch.float64))
    op.destroy()
