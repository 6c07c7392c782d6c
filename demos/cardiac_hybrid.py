"""The main job: a hybrid cardiac model learns what its ionic model gets wrong.

A left ventricle (the bundled gmsh mesh of the Land et al. 2015 benchmark geometry, rule-based
fibres) is paced from several endocardial sites. A hidden "true" tissue generates the data:
Aliev–Panfilov cells with excitation threshold a = 0.15 and a scar on the lateral wall whose
conductivity is a quarter of the healthy tissue's. The model we train knows the physics but
has the wrong cells (a = 0.05: fronts ~30 % too fast) and does not know the scar's conductivity:

    I_ion = I_AP(v, w; a = 0.05) + N_θ(v, w),     D_scar = s · D,   s unknown,

and learns θ and s from activation times on the endocardial and epicardial surfaces and from
six intramural electrode traces, through the whole split monodomain rollout (adjoint diffusion
solves, autograd through the ionic steps, checkpointed blocks). It is then asked to predict
activation from pacing sites it never saw.

    mpirun -n 2 python demos/cardiac_hybrid.py            # ~5 min on 2 cores
    python demos/cardiac_hybrid.py --quick                # the test's version
    python demos/cardiac_hybrid.py --resume               # continue from out/cardiac/checkpoint.pt

Writes to --out: metrics.json, activation.png (true / prior / trained activation maps of a
held-out site), loss.png, v.xdmf (v(t) of the trained model, held-out site), checkpoint.pt.
"""

from __future__ import annotations

import math
import time

from _common import COMM, log, owned_rmse, training_parser  # demos/ is on sys.path when a script there runs

import dolfinx.fem
import numpy as np
import torch

import deepnum_fem as dnf
from deepnum_fem.geometry import LV_TAGS, left_ventricle
from deepnum_fem.io import load_left_ventricle
from deepnum_fem.models.fibres import rule_based_fibres
from deepnum_fem.models.ionic import AlievPanfilov, HybridIonic
from deepnum_fem.models.monodomain import Monodomain, Stimulus, activation_times, soft_activation_times
from deepnum_fem.training import finish, fit, plot_loss, resume

A_TRUE, A_PRIOR = 0.15, 0.05
SCAR_TRUE = 0.25
SCAR_CENTRE, SCAR_RADIUS = np.array([9.0, 0.0, -4.0]), 6.0
DIFFUSIVITY = (2.4, 0.6)   # mm²/ms along / across fibres: conduction ~0.6 / 0.3 mm/ms
THRESHOLD = 0.5


def endocardial_site(polar_deg: float, azimuth_deg: float) -> np.ndarray:
    """A point 0.5 mm inside the endocardial ellipsoid (radii 7, 7, 17), polar angle from the apex."""
    th, ph = math.radians(polar_deg), math.radians(azimuth_deg)
    return np.array([7.5 * math.sin(th) * math.cos(ph), 7.5 * math.sin(th) * math.sin(ph),
                     -17.5 * math.cos(th)])


TRAIN_SITES = [endocardial_site(20, 0), endocardial_site(70, 120), endocardial_site(90, 240)]
TEST_SITES = [endocardial_site(55, 300), endocardial_site(80, 60)]
ELECTRODES = np.array([[8.5 * math.cos(a), 8.5 * math.sin(a), z]
                       for a, z in [(0.0, -2.0), (2.1, -2.0), (4.2, -2.0), (1.0, -10.0), (3.1, -10.0), (5.2, -10.0)]])


class Correction(torch.nn.Module):
    """N_θ(v, w): a small MLP; its output is in units of the model's 1/time_scale."""

    def __init__(self, width: int = 16, time_scale: float = 12.9):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.Tanh(),
                                       torch.nn.Linear(width, width), torch.nn.Tanh(),
                                       torch.nn.Linear(width, 1)).double()
        with torch.no_grad():
            self.net[-1].weight.zero_()
            self.net[-1].bias.zero_()
        self.time_scale = time_scale

    def forward(self, vw: torch.Tensor) -> torch.Tensor:
        return self.net(vw) / self.time_scale


def build(args):
    data = left_ventricle(args.h, COMM) if args.h else load_left_ventricle(COMM)
    mesh, facets = data.mesh, data.facet_tags
    fibres = rule_based_fibres(mesh, facets, LV_TAGS["ENDO"], LV_TAGS["EPI"])
    Q = dolfinx.fem.functionspace(mesh, ("DG", 0))
    scale = dolfinx.fem.Function(Q, name="conductivity_scale")
    centres = Q.tabulate_dof_coordinates()[: dnf.convert.n_owned(scale)]
    in_scar = torch.from_numpy(np.linalg.norm(centres - SCAR_CENTRE, axis=1) <= SCAR_RADIUS)
    common = {"dt": args.dt, "diffusivity": DIFFUSIVITY, "fibres": fibres, "conductivity_scale": scale}
    truth = Monodomain(data, AlievPanfilov(a=A_TRUE), **common)
    correction = Correction()
    dnf.parallel.broadcast_parameters(correction)
    hybrid = Monodomain(data, HybridIonic(AlievPanfilov(a=A_PRIOR), correction), **common)
    surface = truth.boundary_nodes(["ENDO", "EPI"])
    W = truth.point_weights(ELECTRODES)
    return truth, hybrid, correction, fibres, in_scar, surface, W


def scale_field(in_scar: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
    return torch.where(in_scar, torch.exp(log_s), torch.ones((), dtype=torch.float64))


def run(model, site, scale, surface, W, steps, *, checkpoint_every=None, keep_every=0):
    """Pace from ``site``; return (surface traces, electrode traces, frames of v)."""
    stim = [Stimulus(centre=site, radius=4.0, start=0.0, duration=3.0, amplitude=1.0)]
    frames = []

    def observe(state, k):
        v = state[0]
        if keep_every and (k + 1) % keep_every == 0:
            frames.append(((k + 1) * model.dt, v.detach().clone()))
        return torch.cat([v[surface], W @ v])

    _, obs = model.simulate(steps, scale=scale, stimuli=stim, observe=observe,
                            checkpoint_every=checkpoint_every)
    n = surface.numel()
    return obs[:, :n], dnf.parallel.sum(obs[:, n:]), frames


def main() -> None:
    p = training_parser(__doc__.split("\n")[0], out="out/cardiac", epochs=12, iterations=3, save_every=2,
                        target=5.0, checkpoint_every=40, quick="h = 2 mm, dt = 1 ms, 8 epochs")
    p.add_argument("--steps", type=int, default=160, help="time steps per beat")
    p.add_argument("--dt", type=float, default=0.5, help="ms")
    p.add_argument("--h", type=float, default=None, help="generate the LV with this size (mm) "
                   "instead of loading the bundled mesh")
    args = p.parse_args()
    if args.quick:
        args.h = args.h or 2.0
        args.dt, args.steps, args.epochs = 1.0, min(args.steps, 75), min(args.epochs, 8)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    truth, hybrid, correction, fibres, in_scar, surface, W = build(args)
    mesh = truth.mesh
    n_dofs = truth.V.dofmap.index_map.size_global
    log(f"left ventricle: {n_dofs} P1 dofs, {mesh.topology.index_map(3).size_global} tetrahedra, "
        f"{COMM.size} rank(s); {args.steps} steps of {args.dt} ms per beat")

    # -- synthetic observations from the hidden truth --------------------------------------
    s_true = scale_field(in_scar, torch.tensor(math.log(SCAR_TRUE), dtype=torch.float64))
    with torch.no_grad():
        observed = {}
        for name, sites in (("train", TRAIN_SITES), ("test", TEST_SITES)):
            observed[name] = []
            for site in sites:
                traces, electrodes, _ = run(truth, site, s_true, surface, W, args.steps)
                observed[name].append((activation_times(traces, args.dt, THRESHOLD), electrodes))

    log_s = torch.zeros((), dtype=torch.float64, requires_grad=True)   # s = 1: scar unknown
    params = [*correction.parameters(), log_s]
    # L-BFGS: the objective is deterministic (full batch of pacing sites) and smooth, and
    # identical on every rank, so every rank takes the same steps.
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=args.iterations, history_size=20,
                            line_search_fn="strong_wolfe")
    ckpt = args.out / "checkpoint.pt"
    # what is checkpointed with the optimiser (and read back, in place, on --resume)
    trained = {"correction": correction, "log_s": log_s}
    start, history, state = resume(ckpt, enabled=args.resume, optimizer=opt, state=trained)

    def evaluate(sites_obs, sites):
        errors = []
        with torch.no_grad():
            s = scale_field(in_scar, log_s)
            for (t_obs, _), site in zip(sites_obs, sites, strict=True):
                traces, _, _ = run(hybrid, site, s, surface, W, args.steps)
                errors.append(owned_rmse(activation_times(traces, args.dt, THRESHOLD), t_obs))
        return float(np.sqrt(np.mean(np.square(errors))))

    def correction_error() -> float:
        v = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
        exact = 8.0 * (A_TRUE - A_PRIOR) * v * (1.0 - v) / 12.9    # I_true - I_prior at w = 0
        with torch.no_grad():
            learned = correction(torch.stack([v, torch.zeros_like(v)], dim=1)).reshape(-1)
        return float((learned - exact).norm() / exact.norm())

    rmse_prior = state["rmse_prior"] if start else evaluate(observed["test"], TEST_SITES)
    log(f"held-out activation RMSE with the prior model: {rmse_prior:.2f} ms")
    T = args.steps * args.dt
    def closure():
        opt.zero_grad()
        total = torch.zeros((), dtype=torch.float64)
        for (t_obs, e_obs), site in zip(observed["train"], TRAIN_SITES, strict=True):
            traces, electrodes, _ = run(hybrid, site, scale_field(in_scar, log_s), surface, W, args.steps,
                                        checkpoint_every=args.checkpoint_every)
            t_model = soft_activation_times(traces, args.dt, THRESHOLD, width=0.05)
            n = dnf.parallel.sum(torch.tensor(float(t_obs.numel()), dtype=torch.float64))
            loss = (dnf.parallel.sum((((t_model - t_obs) / T) ** 2).sum()) / n
                    + 0.1 * ((electrodes - e_obs) ** 2).mean()) / len(TRAIN_SITES)
            loss.backward()
            total += loss.detach()
        dnf.parallel.allreduce_gradients(params)
        return total

    progress = fit(optimizer=opt, closure=closure, epochs=args.epochs, start=start, history=history,
                   checkpoint=ckpt, every=args.save_every, state={**trained, "rmse_prior": rmse_prior},
                   monitor=lambda: {"scar_scale": math.exp(float(log_s.detach()))})

    rmse_trained = evaluate(observed["test"], TEST_SITES)
    rmse_train_sites = evaluate(observed["train"], TRAIN_SITES)
    reduction = rmse_prior / max(rmse_trained, 1e-12)
    log(f"held-out activation RMSE: {rmse_prior:.2f} ms (prior) -> {rmse_trained:.3f} ms (trained), "
        f"{reduction:.1f}x; scar conductivity scale {math.exp(float(log_s.detach())):.3f} (true {SCAR_TRUE})")

    # -- figures and fields of a held-out site ---------------------------------------------
    site = TEST_SITES[0]
    prior = Monodomain(truth.mesh, AlievPanfilov(a=A_PRIOR), dt=args.dt, diffusivity=DIFFUSIVITY,
                       fibres=fibres)
    everywhere = torch.arange(truth.n)
    maps = {}
    with torch.no_grad():
        for name, model, s in (("true tissue", truth, s_true), ("prior model", prior, None),
                               ("trained hybrid", hybrid, scale_field(in_scar, log_s))):
            traces, _, frames = run(model, site, s, everywhere, W, args.steps,
                                    keep_every=4 if model is hybrid else 0)
            maps[name] = activation_times(traces, args.dt, THRESHOLD).numpy()
    hybrid.write_xdmf(args.out / "v.xdmf", frames)
    from deepnum_fem.viz import surface_maps_png
    surface_maps_png(args.out / "activation.png", truth.V,
                     maps,
                     label="activation (ms)", camera_position=[(60, -60, -10), (0, 0, -7), (0, 0, 1)])
    plot_loss(args.out / "loss.png", history, "cardiac hybrid: training loss", COMM)

    metrics = {
        "ranks": COMM.size, "dofs": n_dofs, "steps": args.steps, "dt_ms": args.dt, "epochs": args.epochs,
        "test_rmse_prior_ms": rmse_prior, "test_rmse_trained_ms": rmse_trained,
        "test_rmse_reduction": reduction, "train_rmse_trained_ms": rmse_train_sites,
        "scar_scale_estimated": math.exp(float(log_s.detach())), "scar_scale_true": SCAR_TRUE,
        "scar_scale_relative_error": abs(math.exp(float(log_s.detach())) - SCAR_TRUE) / SCAR_TRUE,
        "correction_relative_l2_error": correction_error(),
        "seconds_per_epoch": progress.seconds_per_epoch,
        "wall_seconds": time.perf_counter() - t_start,
        "final_loss": history[-1]["loss"] if history else None,
    }
    finish(args.out, metrics, reduction=reduction, target=args.target, comm=COMM)


if __name__ == "__main__":
    main()
