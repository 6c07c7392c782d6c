"""The ten Tusscher–Panfilov (2006) cell against gotranx's generated code (tests/reference/),
its dt-convergence, its gradients, the singular point of I_CaL, the hybrid and monodomain uses,
and CUDA."""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

from mpi4py import MPI

import dolfinx.mesh
import numpy as np
import pytest
import torch

import deepnum_fem as dnf
from deepnum_fem.models import HybridIonic, Monodomain, Stimulus, TenTusscherPanfilov2006, activation_times
from deepnum_fem.models.tentusscher import action_potential_features

REFERENCE = Path(__file__).resolve().parent / "reference" / "tentusscher_panfilov_2006_epi_gotranx.py"
DT = 0.01
#: The reference's AP features of beat 1 at dt = 0.01 ms (its own run script, 4-6 digits).
REFERENCE_BEAT_1 = {"rest": -85.2435, "peak": 38.6179, "dvdt_max": 370.711, "apd90": 291.409}


@functools.cache
def _reference():
    spec = importlib.util.spec_from_file_location("tt2006_gotranx", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reference_stimulus(t: float) -> float:
    """The .ode's stimulus as an applied current: 52 pA/pF while 10 <= t mod 1000 <= 11 ms,
    evaluated at ``t = k dt`` as the reference does."""
    phase = t - 1000.0 * math.floor(t / 1000.0)
    return 52.0 if 10.0 <= phase <= 11.0 else 0.0


@functools.cache
def _reference_beat() -> np.ndarray:
    """The reference's states (rows in our order) at every step of beat 1, ``(n + 1, 19)``."""
    ref = _reference()
    order = [ref.state_index(name) for name in TenTusscherPanfilov2006.state_names]
    p, y = ref.init_parameter_values(), ref.init_state_values()
    n = int(round(1000.0 / DT))
    out = np.empty((n + 1, 19))
    out[0] = y[order]
    for k in range(n):
        y = ref.hybrid_rush_larsen(y, k * DT, DT, p)
        out[k + 1] = y[order]
    return out


@pytest.mark.skip_in_parallel   # a serial computation (each rank would repeat it)
def test_one_beat_matches_the_generated_reference_to_round_off():
    """Beat 1 at 1 Hz, dt = 0.01 ms, cut into 20 windows of 50 ms that run side by side (a (19, 20)
    state), each from the reference's state at its start: every step of the beat is compared, in
    5,000 steps of ours rather than 100,000 (a whole beat in one column takes ~1 min; its figures
    are in docs/applications/cardiac.md, from bench/tt2006_cell.py). Window 1 runs from rest
    through the stimulus and the upstroke."""
    ref = _reference_beat()
    n_windows, per = 20, ref.shape[0] // 20                       # 5,000 steps each
    cell = TenTusscherPanfilov2006()
    assert cell.rest == tuple(ref[0])
    state = torch.from_numpy(ref[::per][:n_windows].T.copy())     # (19, 20)
    ours = np.empty((per, 19, n_windows))
    with torch.inference_mode():
        for j in range(per):
            k = np.arange(n_windows) * per + j                    # each window's global step
            stim = torch.tensor([_reference_stimulus(kk * DT) for kk in k], dtype=torch.float64)
            state = cell.step(state, DT, stim)
            ours[j] = state.numpy()
    ours = np.concatenate([ref[:1], ours.transpose(2, 0, 1).reshape(-1, 19)])   # steps 0..100,000
    assert ours.shape == ref.shape

    mine, theirs = action_potential_features(ours[:, 0], DT, 1000), action_potential_features(ref[:, 0], DT, 1000)
    amplitude = theirs["peak"] - theirs["rest"]
    dV = np.abs(ours[:, 0] - ref[:, 0]).max() / amplitude
    per_state = np.abs(ours - ref).max(axis=0) / np.abs(ref).max(axis=0)
    print(f"\nmax |ΔV| / AP amplitude ({amplitude:.2f} mV): {dV:.2e}")
    print("max |Δx| / max |x|: " + ", ".join(f"{n} {r:.1e}" for n, r in zip(cell.state_names, per_state,
                                                                             strict=True)))
    print("AP features (ours / reference): " + ", ".join(f"{k} {mine[k]:.6f} / {theirs[k]:.6f}" for k in mine))
    assert dV < 1e-12
    assert per_state.max() < 1e-11, dict(zip(cell.state_names, per_state, strict=True))
    for key, value in REFERENCE_BEAT_1.items():
        assert mine[key] == pytest.approx(theirs[key], rel=1e-9, abs=1e-9), key
        digits = len(str(value).split(".")[1])
        assert abs(mine[key] - value) <= 0.5 * 10.0 ** -digits, (key, mine[key], value)


def test_the_m_cell_is_the_reference_with_its_g_ks_and_initial_values():
    """The M cell differs from the epicardial one only in g_Ks and its initial values: the
    reference with those, over 20 ms through the upstroke."""
    ref = _reference()
    cell = TenTusscherPanfilov2006("M")
    assert cell.g_Ks == 0.098
    order = [ref.state_index(name) for name in cell.state_names]
    p = ref.init_parameter_values(g_Ks=0.098, stim_start=1.0)
    y = ref.init_state_values(**dict(zip(cell.state_names, cell.rest, strict=True)))
    state = cell.initial_state(1)
    worst, peak = 0.0, -100.0
    with torch.inference_mode():
        for k in range(2000):
            y = ref.hybrid_rush_larsen(y, k * DT, DT, p)
            state = cell.step(state, DT, 52.0 if 1.0 <= k * DT <= 2.0 else 0.0)
            worst = max(worst, float(np.max(np.abs(state[:, 0].numpy() - y[order]) / np.abs(y[order]))))
            peak = max(peak, y[ref.state_index("V")])
    assert peak > 30.0                           # it fired
    assert worst < 1e-11, worst


@pytest.mark.skip_in_parallel   # a serial computation
def test_the_rush_larsen_step_converges_at_first_order_in_dt():
    """V(t) over the first 40 ms (stimulus 1-2 ms, upstroke, notch, plateau) at dt = 0.02, 0.01,
    0.005 ms, in one run with a dt per column; the stimulus is its exact time average over each
    step (the same charge for every dt). The successive differences (max over t) halve."""
    cell = TenTusscherPanfilov2006()
    dts = torch.tensor([0.02, 0.01, 0.005], dtype=torch.float64)
    state = cell.initial_state(3)
    grid = 0.02                                                  # the common sample times
    samples = {c: [state[0, c].item()] for c in range(3)}
    every = [int(round(grid / d)) for d in dts.tolist()]
    with torch.inference_mode():
        for k in range(int(round(40.0 / 0.005))):
            a, b = k * dts, (k + 1) * dts
            on = torch.clamp(torch.clamp(b, max=2.0) - torch.clamp(a, min=1.0), min=0.0) / dts
            state = cell.step(state, dts, 52.0 * on)
            for c in range(3):
                if (k + 1) % every[c] == 0 and len(samples[c]) <= 2000:
                    samples[c].append(state[0, c].item())
    V = np.array([samples[c] for c in range(3)])                 # (3, 2001): t = 0, 0.02, ..., 40
    e1, e2 = np.abs(V[0] - V[1]).max(), np.abs(V[1] - V[2]).max()
    order = math.log2(e1 / e2)
    order_end = math.log2(abs(V[0, -1] - V[1, -1]) / abs(V[1, -1] - V[2, -1]))
    print(f"\nmax_t |V_dt - V_dt/2|: {e1:.3f} mV (dt = 0.02), {e2:.3f} mV (0.01): order {order:.3f}; "
          f"V(40 ms): order {order_end:.3f}")
    assert V[2].max() > 30.0                                      # it fired
    assert order == pytest.approx(1.0, abs=0.15)
    assert order_end == pytest.approx(1.0, abs=0.25)


def _paced(cell: TenTusscherPanfilov2006, state0: torch.Tensor, steps: int = 300, dt: float = 0.05) -> torch.Tensor:
    """A loss of a short paced run: the mean of V² (V/100 mV) and of Ca_i (µM) over 15 ms, a 1 ms
    stimulus from 1 ms on (the upstroke and the start of the plateau)."""
    state, loss = state0, 0.0
    for k in range(steps):
        state = cell.step(state, dt, 52.0 if 1.0 <= k * dt < 2.0 else 0.0)
        loss = loss + ((state[0] / 100.0) ** 2).mean() + (1e3 * state[14]).mean()
    return loss / steps


def test_taylor_in_learnable_conductances_and_in_the_initial_state():
    cell = TenTusscherPanfilov2006(learnable=("g_Ks", "g_CaL"))
    assert {name for name, _ in cell.named_parameters()} == {"g_Ks", "g_CaL"}
    state0 = cell.initial_state(2)
    state0[0, 1] = -80.0
    direction = [0.1 * cell.g_Ks.detach(), 0.1 * cell.g_CaL.detach()]
    rates = dnf.taylor_test_parameters(lambda: _paced(cell, state0), cell, direction=direction,
                                       comm=MPI.COMM_SELF)
    print(f"\nTaylor rates, (g_Ks, g_CaL): {list(rates)}")
    assert min(rates) >= 1.9, rates
    assert cell.g_Ks.item() == 0.392 and cell.g_CaL.item() == 0.0398      # restored

    dm = state0 * (0.01 * torch.rand(state0.shape, dtype=torch.float64))   # relative to each row's scale
    rates = dnf.taylor_test(lambda s: _paced(cell, s), state0, dm, reduce_gradient=False)
    print(f"Taylor rates, initial state: {list(rates)}")
    assert min(rates) >= 1.9, rates


def test_gradcheck_of_a_few_steps_in_the_state_and_a_conductance_field():
    """Through 3 steps, one node at rest and stimulated, one in the upstroke; g_Ks a per-node
    field (a tensor value), differentiated through. The state is checked in units of each row's
    resting magnitude (Ca_i ~ 1e-4 mM and K_i ~ 137 mM alike O(1)), so that gradcheck's
    perturbation is relative."""
    scale = TenTusscherPanfilov2006().initial_state(1).abs()
    u0 = torch.ones(19, 2, dtype=torch.float64)
    u0[0, 1] = 30.0 / 85.23                                      # V = -30 mV
    u0 = u0.requires_grad_()
    g_Ks = torch.tensor([0.392, 0.3], dtype=torch.float64, requires_grad=True)

    def run(u, g_Ks):
        cell = TenTusscherPanfilov2006(g_Ks=g_Ks)
        state = u * scale * torch.where(torch.arange(19)[:, None] == 0, -1.0, 1.0)   # V < 0
        for _ in range(3):
            state = cell.step(state, 0.05, torch.tensor([20.0, 0.0], dtype=torch.float64))
        return state / scale

    assert torch.autograd.gradcheck(run, (u0, g_Ks), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_i_cal_is_finite_and_smooth_at_its_removable_singularity():
    """At V = 15 mV, I_CaL's GHK factor is 0/0: the value is its limit, the current and the
    step have finite gradients, and both are continuous across the series' band."""
    cell = TenTusscherPanfilov2006()
    w = cell.initial_state(1)[1:].repeat(1, 5)
    w[3:7] = 0.5                                                        # open the d, f, f2, fCass gates
    band = 0.1 * cell.R * cell.T / (2 * cell.F)                          # |V - 15| of the series' edge
    V = torch.tensor([15.0, 15.0 + 1e-9, 15.0 - band * (1 - 1e-12), 15.0 - band * (1 + 1e-12), 15.0 + 3.0],
                     dtype=torch.float64, requires_grad=True)
    i_cal = cell.currents(V, w)["i_CaL"]
    limit = 2 * cell.F * cell.g_CaL * 0.5 ** 4 * (0.25 * w[15, 0] - cell.Ca_o)
    assert i_cal[0].item() == pytest.approx(limit.item(), rel=1e-14)
    assert i_cal[1].item() == pytest.approx(i_cal[0].item(), rel=1e-9)
    assert i_cal[2].item() == pytest.approx(i_cal[3].item(), rel=1e-11)  # the two sides of the band's edge
    (grad,) = torch.autograd.grad(i_cal.sum(), V)
    assert torch.isfinite(grad).all()
    h = 1e-5                                                             # central differences, closed form away from 15
    for k in range(5):
        Vp, Vm = V.detach().clone(), V.detach().clone()
        Vp[k] += h
        Vm[k] -= h
        fd = (cell.currents(Vp, w)["i_CaL"][k] - cell.currents(Vm, w)["i_CaL"][k]) / (2 * h)
        assert grad[k].item() == pytest.approx(fd.item(), rel=1e-6), k

    state = torch.cat([V.detach()[None], w]).requires_grad_()
    out = cell.step(state, 0.01)
    assert torch.isfinite(out).all()
    (g,) = torch.autograd.grad(out.sum(), state)
    assert torch.isfinite(g).all()


def test_the_stimulus_is_carried_by_potassium():
    """The applied current enters dK_i/dt (charge conservation): with it, ΔK_i ∝ stimulus."""
    cell = TenTusscherPanfilov2006()
    state = cell.initial_state(2)
    out = cell.step(state, 0.01, torch.tensor([0.0, 52.0], dtype=torch.float64))
    dK = (out[18, 1] - out[18, 0]).item()
    assert dK == pytest.approx(0.01 * 52.0 * cell.Cm / (cell.V_c * cell.F), rel=1e-9)
    assert (out[0, 1] - out[0, 0]).item() == pytest.approx(0.52, rel=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="endocardial"):
        TenTusscherPanfilov2006("endo")
    with pytest.raises(ValueError, match="unknown parameters"):
        TenTusscherPanfilov2006(learnable=("g_kr",))
    with pytest.raises(ValueError, match="constants"):
        TenTusscherPanfilov2006(constants="textbook")
    with pytest.raises(ValueError, match=r"state of shape \(1 \+ 18, n\)"):
        TenTusscherPanfilov2006().step(torch.zeros(2, 3, dtype=torch.float64), 0.01)
    paper = TenTusscherPanfilov2006(constants="paper")
    assert (paper.R, paper.F) == (8.314472, 96.4853415)


def _zero_network(inputs: int) -> torch.nn.Module:
    net = torch.nn.Sequential(torch.nn.Linear(inputs, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    with torch.no_grad():
        net[2].weight.zero_()
        net[2].bias.zero_()
    return net


def test_hybrid_with_a_zero_network_is_the_model_and_the_network_sees_19_columns():
    cell = TenTusscherPanfilov2006()
    seen = []
    net = _zero_network(19)
    net.register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    hybrid = HybridIonic(cell, net)
    assert hybrid.n_slow == 18 and hybrid.stimulus_in_slow and hybrid.state_names == cell.state_names
    state = cell.initial_state(3)
    stim = torch.tensor([0.0, 52.0, 10.0], dtype=torch.float64)
    for _ in range(5):
        a, b = cell.step(state, 0.01, stim), hybrid.step(state, 0.01, stim)
        assert torch.allclose(a, b, rtol=1e-14, atol=0.0)
        state = a
    assert seen and all(shape == (3, 19) for shape in seen)


def test_monodomain_with_the_hybrid_cell_on_a_small_cable(comm):
    """A 4 mm cable (V in mV): the stimulus in mV/ms (pA/pF), the activation threshold in mV."""
    mesh = dolfinx.mesh.create_interval(comm, 16, [0.0, 4.0])
    net = _zero_network(19)
    with torch.no_grad():
        net[2].weight.fill_(0.01)
    dnf.parallel.broadcast_parameters(net)
    stim = Stimulus(marker=lambda x: x[0] <= 0.5 + 1e-9, start=0.0, duration=1.0, amplitude=60.0)
    model = Monodomain(mesh, HybridIonic(TenTusscherPanfilov2006(), net), dt=0.02, diffusivity=0.1,
                       stimuli=[stim])
    assert model.state_shape == (19, model.n)
    W = model.point_weights(np.array([[0.0], [4.0]]))
    with torch.no_grad():
        state, traces = model.simulate(600, observe=lambda s, k: W @ s[0])     # 12 ms
    traces = dnf.parallel.sum(traces, comm)
    t = activation_times(traces, model.dt, threshold=-40.0)
    print(f"\nactivation at x = 0 and 4 mm: {t.tolist()} ms")
    assert torch.isfinite(state).all()
    assert 0.5 < t[0] < 2.0 and t[0] < t[1] < 12.0              # the stimulated end fires, and the wave travels
    assert traces[:, 0].max() > 20.0                            # an upstroke to the overshoot


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: the GPU run is checked where one is")
def test_runs_on_cuda_as_on_the_cpu():
    cpu = TenTusscherPanfilov2006(learnable=("g_CaL",))
    gpu = TenTusscherPanfilov2006(learnable=("g_CaL",)).to("cuda")
    state = cpu.initial_state(64)
    state[0] += torch.linspace(0.0, 110.0, 64, dtype=torch.float64)
    results = []
    for cell, device in ((cpu, "cpu"), (gpu, "cuda")):
        s = state.to(device)
        for k in range(200):
            s = cell.step(s, 0.02, 52.0 if k < 50 else 0.0)
        s[0].sum().backward()
        results.append((s.detach().cpu(), cell.g_CaL.grad.cpu()))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-8, atol=0.0)
    s32 = state.to("cuda", torch.float32)
    for _ in range(200):
        s32 = gpu.step(s32, 0.02, 52.0)
    assert s32.dtype == torch.float32 and torch.isfinite(s32).all()


def test_float32_on_the_cpu_follows_float64_through_the_upstroke():
    cell = TenTusscherPanfilov2006()
    s64 = cell.initial_state(1)
    s32 = s64.float()
    for k in range(600):                                        # 30 ms at dt = 0.05
        stim = 52.0 if 1.0 <= k * 0.05 < 2.0 else 0.0
        s64, s32 = cell.step(s64, 0.05, stim), cell.step(s32, 0.05, stim)
    assert s32.dtype == torch.float32
    assert abs(s32[0, 0].item() - s64[0, 0].item()) < 0.5       # mV, on the plateau
