"""Pseudo-ECG and conductivity controls of the monodomain model: the leads' algebra, the
weights against direct assembly, exact gradients (gradcheck, Taylor rates ≈ 2) of the leads
of a rollout in ``D_l``, ``D_t`` and a P1 conductivity field, 1 rank against 2, bad input."""

from __future__ import annotations

import math

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

L = 6.0   # the slab [0, L]^2 x [0, L/3] (mm)
ELECTRODES = {"RA": (-8.0, 9.0, 1.0), "LA": (14.0, 9.0, 1.0), "LL": (3.0, -9.0, 1.0),
              "V1": (1.0, 3.0, 6.0), "V2": (3.0, 3.0, 6.0), "V4": (5.0, 1.0, 6.0)}


def _slab(comm, *, n: int = 6, diffusivity_control: bool = True, dt: float = 0.5):
    mesh = dolfinx.mesh.create_box(comm, [[0.0, 0.0, 0.0], [L, L, L / 3]], [n, n, max(n // 3, 1)])
    fibres = dolfinx.fem.Function(dolfinx.fem.functionspace(mesh, ("DG", 0, (3,))))
    fibres.interpolate(lambda x: np.vstack([np.cos(0.3 * x[2]), np.sin(0.3 * x[2]), 0.0 * x[0]]))
    scale = dolfinx.fem.Function(dolfinx.fem.functionspace(mesh, ("Lagrange", 1)), name="scale")
    scale.x.array[:] = 1.0
    model = Monodomain(mesh, AlievPanfilov(), dt=dt, diffusivity=(1.2, 0.3), fibres=fibres,
                       conductivity_scale=scale, diffusivity_control=diffusivity_control,
                       stimuli=[Stimulus(centre=(0.0, 0.0, 0.0), radius=2.0, duration=2.0, amplitude=1.0)])
    return model


def test_leads_are_einthoven_and_wilson_differences(comm):
    model = _slab(comm, n=3)
    ecg = model.pseudo_ecg(ELECTRODES)
    assert ecg.lead_names == ("I", "II", "III", "V1", "V2", "V4")
    phi = torch.tensor([[1.0, 2.5, -0.5, 4.0, 3.0, -2.0]], dtype=torch.float64)
    leads = ecg.leads(phi)[0]
    assert torch.allclose(leads[:3], torch.tensor([1.5, -1.5, -3.0], dtype=torch.float64))
    assert float(leads[0] + leads[2] - leads[1]) == pytest.approx(0.0, abs=1e-15)   # I + III = II
    wct = (1.0 + 2.5 - 0.5) / 3.0
    assert torch.allclose(leads[3:], torch.tensor([4.0 - wct, 3.0 - wct, -2.0 - wct], dtype=torch.float64))
    with pytest.raises(dnf.errors.ShapeError, match="6 electrodes"):
        ecg.leads(phi[:, :4])


def test_weights_reproduce_the_integral_with_given_controls(comm):
    """parallel.sum(W(s, D_l, D_t) @ v) equals ∫ s D(D_l, D_t) ∇v·∇(1/r) dx assembled directly
    with those values, on any number of ranks; the model's own values are left as they were."""
    model = _slab(comm, n=4)
    ecg = model.pseudo_ecg(ELECTRODES)
    s = model.control("scale")
    s_new = 1.0 + 0.5 * torch.from_numpy(np.sin(model.coordinates[:, 0]))
    D_l, D_t = torch.tensor(2.0, dtype=torch.float64), torch.tensor(0.4, dtype=torch.float64)
    W = ecg.weights(scale=s_new, D_l=D_l, D_t=D_t)
    v = dolfinx.fem.Function(model.V)
    v.interpolate(lambda x: np.exp(-((x[0] - 2.0) ** 2 + (x[1] - 4.0) ** 2) / 4.0))
    phi = ecg.potentials(dnf.to_torch(v), W)
    # direct assembly with the same values
    f = model.control_objects
    f["scale"].x.array[: model.n] = s_new.numpy()
    f["scale"].x.scatter_forward()
    f["D_l"].value, f["D_t"].value = 2.0, 0.4
    x = ufl.SpatialCoordinate(model.mesh)
    for i, p in enumerate(ELECTRODES.values()):
        r = ufl.sqrt(ufl.inner(x - ufl.as_vector(p), x - ufl.as_vector(p)))
        form = dolfinx.fem.form(ufl.inner(model.D * ufl.grad(v), ufl.grad(1.0 / r)) * ufl.dx)
        exact = comm.allreduce(dolfinx.fem.assemble_scalar(form), op=MPI.SUM)
        assert float(phi[i]) == pytest.approx(exact, rel=1e-11)
    # uniform tissue is electrically silent
    silent = ecg.potentials(torch.ones(model.n, dtype=torch.float64), W)
    assert float(silent.abs().max()) < 1e-10 * float(phi.abs().max())
    assert torch.equal(model.control("scale"), s_new)   # weights set the Functions they assemble with
    ecg.weights(scale=s)   # ... and so back


def test_weights_gradcheck_in_scale_and_diffusivities(comm):
    model = _slab(comm, n=2)
    ecg = model.pseudo_ecg(ELECTRODES)
    gen = torch.Generator().manual_seed(3 + comm.rank)
    probe = torch.rand(len(ELECTRODES), model.n, generator=gen, dtype=torch.float64)

    def pairing(scale, D_l, D_t):
        return dnf.parallel.sum((ecg.weights(scale=scale, D_l=D_l, D_t=D_t) * probe).sum(), comm)

    s0 = (1.0 + 0.1 * torch.rand(model.n, generator=gen, dtype=torch.float64)).requires_grad_(True)
    Dl = torch.tensor(1.1, dtype=torch.float64, requires_grad=True)
    Dt = torch.tensor(0.35, dtype=torch.float64, requires_grad=True)
    J = pairing(s0, Dl, Dt)
    g_s, g_l, g_t = torch.autograd.grad(J, [s0, Dl, Dt])
    g_l, g_t = dnf.parallel.sum(g_l, comm), dnf.parallel.sum(g_t, comm)   # shares of a Constant's gradient
    # W is linear in D_l and D_t at fixed s, and linear in s at fixed D: central differences exact
    with torch.no_grad():
        for g, at in ((g_l, lambda h: pairing(s0, Dl + h, Dt)), (g_t, lambda h: pairing(s0, Dl, Dt + h))):
            fd = (at(1e-3) - at(-1e-3)) / 2e-3
            assert float(g) == pytest.approx(float(fd), rel=1e-8)
        ds = torch.rand(model.n, generator=gen, dtype=torch.float64)
        fd = (pairing(s0 + 1e-3 * ds, Dl, Dt) - pairing(s0 - 1e-3 * ds, Dl, Dt)) / 2e-3
        assert float(dnf.parallel.sum((g_s * ds).sum(), comm)) == pytest.approx(float(fd), rel=1e-8)


def _lead_loss(model, ecg, steps=24, checkpoint_every=8):
    """A misfit of the leads of a rollout to fixed synthetic targets, as a function of
    (scale, D_l, D_t)."""
    t = torch.arange(1, steps + 1, dtype=torch.float64)[:, None]
    target = 0.02 * torch.sin(t / 5.0 + torch.arange(len(ecg.lead_names), dtype=torch.float64))

    def loss(scale, D_l, D_t):
        W = ecg.weights(scale=scale, D_l=D_l, D_t=D_t)
        _, obs = model.simulate(steps, scale=scale, D_l=D_l, D_t=D_t, observe=lambda s, k: W @ s[0],
                                checkpoint_every=checkpoint_every)
        leads = ecg.leads(dnf.parallel.sum(obs, model.comm))
        return ((leads - target) ** 2).mean()

    return loss


def test_lead_misfit_taylor_rates_in_every_learned_quantity(comm):
    """The demo's unknowns: log D_l, log D_t (replicated) and a P1 log-scale field
    (distributed), through a checkpointed rollout and the differentiable weights."""
    model = _slab(comm, n=6)
    ecg = model.pseudo_ecg(ELECTRODES)
    loss = _lead_loss(model, ecg)
    m0 = torch.from_numpy(0.2 * np.cos(model.coordinates[:, 0] / 2.0))
    logD = torch.tensor([math.log(1.2), math.log(0.3)], dtype=torch.float64)
    dm = torch.from_numpy(np.sin(model.coordinates[:, 1]) + np.cos(model.coordinates[:, 2]))

    rates = dnf.verification.taylor_test(lambda logD: loss(torch.exp(m0), *torch.exp(logD)), logD,
                                         torch.tensor([1.0, -0.7], dtype=torch.float64), h0=0.05, comm=comm)
    assert min(rates) > 1.9, rates
    rates = dnf.verification.taylor_test(lambda m: loss(torch.exp(m), *torch.exp(logD)), m0, dm,
                                         h0=0.05, comm=comm)
    assert min(rates) > 1.9, rates


def test_diffusivity_controls_match_a_model_built_with_those_values(comm):
    model = _slab(comm, n=6)
    other = Monodomain(model.mesh, AlievPanfilov(), dt=0.5, diffusivity=(2.0, 0.5), fibres=model.fibres,
                       conductivity_scale=model.conductivity_scale, stimuli=model.stimuli)
    D = {"D_l": torch.tensor(2.0, dtype=torch.float64), "D_t": torch.tensor(0.5, dtype=torch.float64)}
    with torch.no_grad():
        a, _ = model.simulate(12, **D)
        b, _ = other.simulate(12)
        c, _ = model.simulate(12)            # the defaults again (1.2, 0.3): a different front
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    assert float((a - c).abs().max()) > 1e-3
    assert torch.equal(model.control("D_l"), torch.tensor(1.2, dtype=torch.float64))


def test_bad_controls_and_electrodes_raise_on_every_rank(comm):
    model = _slab(comm, n=3)
    with pytest.raises(ValueError, match="D_t must be a positive number"):
        model.simulate(1, D_t=torch.tensor(-0.1, dtype=torch.float64))
    with pytest.raises(ValueError, match="inside: V9"):
        model.pseudo_ecg({"RA": (-5.0, 0.0, 0.0), "V9": (3.0, 3.0, 1.0)})
    with pytest.raises(TypeError, match="unknown control"):
        model.pseudo_ecg(ELECTRODES).weights(sigma=torch.ones(()))
    mesh = model.mesh
    with pytest.raises(ValueError, match="needs a fibre field"):
        Monodomain(mesh, AlievPanfilov(), dt=0.5, diffusivity=1.0, diffusivity_control=True)
