"""Personalisation from the ECG: a biventricular heart's conductivities and scar learned from leads.

A biventricular heart (the bundled gmsh mesh, Laplace–Dirichlet rule-based fibres) is paced
from endocardial sites. A hidden "true" tissue generates the data: Aliev–Panfilov cells,
fibre and cross-fibre diffusivities D_l = 2.4 and D_t = 0.6 mm²/ms, and a scar in the left
ventricle's lateral wall whose conductivity is a tenth of the healthy tissue's. What is
observed is only the pseudo-ECG (infinite homogeneous volume conductor) at nine electrodes
placed like the 12-lead's around the heart: limb leads I, II, III and precordial V1–V6.

The model knows the cells and the fibres and learns, from the leads of the training pacing
sites alone (no activation map, no intramural trace),

    D_l, D_t                 (two numbers; started from random guesses),
    s(x) = exp(m(x))         (a P1 conductivity-scale field, m = 0 at the start; penalty
                              (α ∫ |∇m|² dx + γ ∫ m² dx) / |Ω|: smoothness, and most tissue
                              healthy, which is what separates s from D: a uniform s is a
                              rescaled D and the leads cannot tell them apart),

through the whole split monodomain rollout and the pseudo-ECG's weights (both differentiable
in D_l, D_t and s). Several random starts are trained; the demo reports how well each
unknown is identified from each, how far apart the starts' activation maps are where their
ECGs agree, and how well each start predicts the ECG of pacing sites it never saw.

    mpirun -n 2 python demos/ecg_personalisation.py     # ~15 min on 2 cores
    python demos/ecg_personalisation.py --quick         # the tests' version
    python demos/ecg_personalisation.py --resume        # continue from out/ecg/checkpoint_*.pt

Writes to --out: metrics.json, ecg.png (leads of a held-out site: truth, first guess, each
start), scar.png (true and learned conductivity scale), loss.png, checkpoint_start*.pt.
"""

from __future__ import annotations

import math
import time

# demos/ is on sys.path when a script there runs
from _common import COMM, ReplicatedField, log, owned_rmse, training_parser
from mpi4py import MPI

import dolfinx.fem
import dolfinx.la
import numpy as np
import torch
import ufl

import deepnum_fem as dnf
from deepnum_fem.geometry import BIV_TAGS, biventricle
from deepnum_fem.io import load_biventricle
from deepnum_fem.models.ionic import AlievPanfilov
from deepnum_fem.models.ldrb import ldrb_fibres
from deepnum_fem.models.monodomain import Monodomain, Stimulus, activation_times
from deepnum_fem.training import fit, plot_loss, resume

D_TRUE = (2.4, 0.6)           # mm²/ms along / across the fibres
D_GUESS = (1.5, 0.4)          # the centre of the random first guesses (each ×/÷ up to 1.6)
SCAR_SCALE = 0.1              # conductivity of the scar relative to healthy tissue
SCAR_CENTRE, SCAR_RADIUS = np.array([-8.5, 0.0, -7.0]), 5.0   # the left ventricle's lateral wall
SCAR_THRESHOLD = 0.5          # s < 0.5: counted as scar (Dice)
THRESHOLD = 0.5               # activation: v crosses 0.5


def _on_ellipsoid(radii, centre, polar_deg, azimuth_deg):
    """A point on an ellipsoid about ``centre``; polar angle from its apex (-z)."""
    th, ph = math.radians(polar_deg), math.radians(azimuth_deg)
    return np.array([centre[0] + radii[0] * math.sin(th) * math.cos(ph), centre[1] + radii[1] * math.sin(th)
                     * math.sin(ph), centre[2] - radii[2] * math.cos(th)])


def lv_site(polar, azimuth):
    return _on_ellipsoid((7.0, 7.0, 17.0), (0.0, 0.0, 0.0), polar, azimuth)


def rv_site(polar, azimuth):
    return _on_ellipsoid((9.0, 12.0, 15.0), (5.0, 0.0, 0.0), polar, azimuth)


TRAIN_SITES = {"LV apex": lv_site(15, 0), "RV free wall": rv_site(70, 20), "LV base, anterior": lv_site(100, 90)}
TEST_SITES = {"LV base, posterior": lv_site(95, 250), "RV outflow": rv_site(110, 330)}

# The heart's frame: +x anterior (the right ventricle faces the chest wall), +y the patient's
# left, +z towards the head. Precordial electrodes on an arc 45 mm from the long axis at
# mid-ventricle, from right of the sternum (V1) round to the left mid-axillary line (V6);
# limb electrodes far away (shoulders, left leg), as the 12-lead's.
ELECTRODES = {"RA": (20.0, -150.0, 120.0), "LA": (20.0, 150.0, 120.0), "LL": (0.0, 40.0, -250.0),
              **{f"V{i + 1}": (45.0 * math.cos(math.radians(a)), 45.0 * math.sin(math.radians(a)), -6.0)
                 for i, a in enumerate((-25.0, 5.0, 30.0, 50.0, 70.0, 95.0))}}


def build(args):
    data = biventricle(args.h, COMM) if args.h else load_biventricle(COMM)
    mesh, facets = data.mesh, data.facet_tags
    fibres = ldrb_fibres(mesh, facets, lv_endo=BIV_TAGS["LV_ENDO"], rv_endo=BIV_TAGS["RV_ENDO"],
                         epi=BIV_TAGS["EPI"], base=BIV_TAGS["BASE"]).fibre
    scale = dolfinx.fem.Function(dolfinx.fem.functionspace(mesh, ("Lagrange", 1)), name="conductivity_scale")
    scale.x.array[:] = 1.0
    model = Monodomain(data, AlievPanfilov(), dt=args.dt, diffusivity=D_TRUE, fibres=fibres,
                       conductivity_scale=scale, diffusivity_control=True)
    ecg = model.pseudo_ecg(ELECTRODES)
    return model, ecg


def true_scale(model) -> torch.Tensor:
    """1 in healthy tissue, SCAR_SCALE in the ball, a 1 mm smooth edge (owned P1 dofs)."""
    r = np.linalg.norm(model.coordinates - SCAR_CENTRE, axis=1)
    edge = 0.5 * (1.0 + np.tanh((r - SCAR_RADIUS) / 1.0))
    return torch.from_numpy(SCAR_SCALE + (1.0 - SCAR_SCALE) * edge)


def stimulus(site) -> list[Stimulus]:
    return [Stimulus(centre=site, radius=3.0, start=0.0, duration=3.0, amplitude=1.0)]


def run(model, ecg, site, scale, D_l, D_t, steps, *, checkpoint_every=None, activation=False):
    """Pace from ``site``: the leads ``(steps, n_leads)`` (every rank) and, with
    ``activation``, the activation times of the owned nodes."""
    W = ecg.weights(scale=scale, D_l=D_l, D_t=D_t)
    n_e = len(ecg.names)

    def observe(state, k):
        v = state[0]
        return torch.cat([W @ v, v]) if activation else W @ v

    _, obs = model.simulate(steps, scale=scale, D_l=D_l, D_t=D_t, stimuli=stimulus(site), observe=observe,
                            checkpoint_every=checkpoint_every)
    leads = ecg.leads(dnf.parallel.sum(obs[:, :n_e], COMM))
    times = activation_times(obs[:, n_e:], model.dt, THRESHOLD) if activation else None
    return leads, times


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a - b‖ / ‖b‖ over all leads and times (replicated tensors)."""
    return float((a - b).norm() / b.norm())


def dice(a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor) -> float:
    """Volume-weighted Dice of two owned node masks (``weights``: lumped mass)."""
    both = dnf.parallel.sum((weights * (a & b)).sum())
    total = dnf.parallel.sum((weights * a).sum() + (weights * b).sum())
    return float(2.0 * both / total) if float(total) > 0 else 1.0


class Penalty:
    """(α ∫ |∇m|² dx + γ ∫ m² dx) / |Ω| of the P1 field m, as a torch op (``dnf.functional``)."""

    def __init__(self, model, alpha, gamma):
        self.m = dolfinx.fem.Function(model.V, name="log_scale")
        one = dolfinx.fem.form(dolfinx.fem.Constant(model.mesh, 1.0) * ufl.dx)
        volume = COMM.allreduce(dolfinx.fem.assemble_scalar(one))
        m = self.m
        self.op = dnf.functional((alpha * ufl.inner(ufl.grad(m), ufl.grad(m)) + gamma * m**2) / volume * ufl.dx, [m])

    def __call__(self, m: torch.Tensor) -> torch.Tensor:
        return self.op(m)


def deficit_centre(s: torch.Tensor, x: np.ndarray, mass: torch.Tensor) -> np.ndarray:
    """The centre (mm) of the conductivity deficit: the mean of the nodes ``x`` weighted by
    ``mass · max(1 - s, 0)``."""
    w = mass * torch.clamp(1.0 - s, min=0.0)
    moment = dnf.parallel.sum(w @ torch.from_numpy(x))
    return (moment / dnf.parallel.sum(w.sum())).numpy()


def lumped_mass(model) -> torch.Tensor:
    phi = ufl.TestFunction(model.V)
    vec = dolfinx.fem.assemble_vector(dolfinx.fem.form(phi * ufl.dx))
    vec.scatter_reverse(dolfinx.la.InsertMode.add)
    return torch.from_numpy(vec.array[: model.n].copy())


def main() -> None:
    p = training_parser(__doc__.split("\n")[0], out="out/ecg", epochs=8, iterations=4, save_every=2,
                        target=3.0, checkpoint_every=None, quick="h = 2 mm, 100 steps, 2 starts, 4 epochs")
    p.add_argument("--steps", type=int, default=120, help="time steps per beat (the QRS: the last node "
                   "activates at 113 ms)")
    p.add_argument("--dt", type=float, default=1.0, help="ms")
    p.add_argument("--starts", type=int, default=3, help="random first guesses")
    p.add_argument("--alpha", type=float, default=0.1, help="weight of the smoothness penalty")
    p.add_argument("--gamma", type=float, default=0.005, help="weight of the healthy-tissue penalty")
    p.add_argument("--train-steps", type=int, default=100, help="time steps of the training beats (the "
                   "training sites' last nodes activate by 91 ms)")
    p.add_argument("--h", type=float, default=None, help="generate the heart with this size (mm) "
                   "instead of loading the bundled mesh")
    args = p.parse_args()
    if args.quick:
        args.h = args.h or 2.0
        args.steps, args.starts = min(args.steps, 100), min(args.starts, 2)
        args.epochs, args.iterations = min(args.epochs, 4), min(args.iterations, 4)
    args.train_steps = min(args.train_steps, args.steps)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    model, ecg = build(args)
    n_dofs = model.V.dofmap.index_map.size_global
    log(f"biventricle: {n_dofs} P1 dofs, {model.mesh.topology.index_map(3).size_global} tetrahedra, "
        f"{COMM.size} rank(s); {args.steps} steps of {args.dt} ms per beat; leads {', '.join(ecg.lead_names)}")
    f64 = torch.float64
    s_true = true_scale(model)
    D_l_true, D_t_true = (torch.tensor(d, dtype=f64) for d in D_TRUE)

    # -- the observed leads, from the hidden truth ------------------------------------------
    with torch.no_grad():
        observed = {name: run(model, ecg, site, s_true, D_l_true, D_t_true, args.steps, activation=True)
                    for name, site in {**TRAIN_SITES, **TEST_SITES}.items()}
    field = ReplicatedField(model.V)
    penalty = Penalty(model, args.alpha, args.gamma)
    mass = lumped_mass(model)
    scar_true = s_true < SCAR_THRESHOLD

    results = [train(start, model, ecg, observed, field, penalty, args) for start in range(args.starts)]
    centre_true = deficit_centre(s_true, model.coordinates, mass)
    for r in results:
        r["scar_dice"] = dice(r["scar"], scar_true, mass)
        r["deficit_centre_error_mm"] = float(np.linalg.norm(deficit_centre(r["scale"], model.coordinates, mass)
                                                            - centre_true))
        r["scale_min"] = COMM.allreduce(float(r["scale"].min()) if r["scale"].numel() else math.inf, op=MPI.MIN)
    report(model, ecg, observed, results, s_true, args, n_dofs, time.perf_counter() - t_start)


def train(start, model, ecg, observed, field, penalty, args) -> dict:
    """Train from random first guess number ``start`` (resuming from its checkpoint); return
    what :func:`evaluate` measures of the result."""
    f64 = torch.float64
    gen = torch.Generator().manual_seed(1000 + start)    # the same guesses on every rank
    log_D = torch.tensor([math.log(d) for d in D_GUESS], dtype=f64)
    log_D = (log_D + math.log(1.6) * (2.0 * torch.rand(2, generator=gen, dtype=f64) - 1.0)).requires_grad_(True)
    m = torch.zeros(field.size, dtype=f64, requires_grad=True)   # replicated (see ReplicatedField)
    guess = [float(d) for d in torch.exp(log_D.detach())]
    params = [log_D, m]
    # L-BFGS: a deterministic, smooth objective, identical on every rank, as are the
    # parameters and their (allreduced) gradients: every rank takes the same steps
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=args.iterations, history_size=20,
                            line_search_fn="strong_wolfe")
    ckpt = args.out / f"checkpoint_start{start}.pt"
    trained = {"log_D": log_D, "m": m}
    done, history, _ = resume(ckpt, enabled=args.resume, optimizer=opt, state=trained)

    def closure():
        opt.zero_grad()
        D_l, D_t = torch.exp(log_D)
        m_owned = field.owned(m)
        s = torch.exp(m_owned)
        misfit = torch.zeros((), dtype=f64)
        for name, site in TRAIN_SITES.items():
            leads, _ = run(model, ecg, site, s, D_l, D_t, args.train_steps, checkpoint_every=args.checkpoint_every)
            obs = observed[name][0][: args.train_steps]
            misfit = misfit + ((leads - obs) ** 2).sum() / (obs ** 2).sum() / len(TRAIN_SITES)
        loss = misfit + penalty(m_owned)
        loss.backward()
        dnf.parallel.allreduce_gradients(params)    # each rank's share of D's and its dofs of m
        return loss.detach()

    log(f"start {start + 1}/{args.starts}: first guess D_l = {guess[0]:.2f}, D_t = {guess[1]:.2f} mm²/ms")
    progress = fit(optimizer=opt, closure=closure, epochs=args.epochs, start=done, history=history,
                   checkpoint=ckpt, every=args.save_every, state=trained,
                   monitor=lambda: dict(zip(("D_l", "D_t"), (float(d) for d in torch.exp(log_D.detach())),
                                            strict=True)))
    r = evaluate(model, ecg, observed, log_D.detach(), torch.exp(field.owned(m.detach())), guess, args)
    r.update({"history": history, "seconds_per_epoch": progress.seconds_per_epoch,
              "guess_D_l": guess[0], "guess_D_t": guess[1]})
    log(f"start {start + 1}: D_l {r['D_l']:.3f} (true {D_TRUE[0]}), D_t {r['D_t']:.3f} (true {D_TRUE[1]}); "
        f"held-out ECG error {r['test_ecg_error_guess']:.3f} (first guess) -> {r['test_ecg_error']:.3f}")
    return r


def evaluate(model, ecg, observed, log_D, s, guess, args) -> dict:
    """One start's learned values (``s``: the owned scale), its ECG errors (training and
    held-out sites) and its held-out activation maps."""
    D_l, D_t = torch.exp(log_D)
    out = {"D_l": float(D_l), "D_t": float(D_t), "scale": s, "scar": s < SCAR_THRESHOLD, "leads": {}, "times": {}}
    with torch.no_grad():
        for sites, key in ((TRAIN_SITES, "train"), (TEST_SITES, "test")):
            errors, errors_guess, t_err = [], [], []
            for name, site in sites.items():
                leads, times = run(model, ecg, site, s, D_l, D_t, args.steps, activation=True)
                out["leads"][name], out["times"][name] = leads, times
                errors.append(relative_error(leads, observed[name][0]))
                t_err.append(owned_rmse(times, observed[name][1]))
                if key == "test":
                    first, _ = run(model, ecg, site, torch.ones_like(s), *(torch.tensor(g) for g in guess), args.steps)
                    out["leads"][name + " (first guess)"] = first
                    errors_guess.append(relative_error(first, observed[name][0]))
            out[f"{key}_ecg_error"] = float(np.mean(errors))
            out[f"{key}_activation_rmse_ms"] = float(np.mean(t_err))
            if key == "test":
                out["test_ecg_error_guess"] = float(np.mean(errors_guess))
    return out


def report(model, ecg, observed, results, s_true, args, n_dofs, wall) -> None:
    """Metrics (flat), the figures, and the demo's own check."""
    D_l = [r["D_l"] for r in results]
    D_t = [r["D_t"] for r in results]
    # how far apart the starts are: ECGs and activation maps of the held-out sites, pairwise
    ecg_apart, maps_apart = [], []
    for i in range(len(results)):
        for j in range(i + 1, len(results)):
            for name in TEST_SITES:
                a, b = results[i], results[j]
                ecg_apart.append(relative_error(a["leads"][name], b["leads"][name]))
                maps_apart.append(owned_rmse(a["times"][name], b["times"][name]))
    scale_err = [owned_rmse(r["scale"], s_true) for r in results]
    guess_err = [r["test_ecg_error_guess"] for r in results]
    test_err = [r["test_ecg_error"] for r in results]
    reduction = float(np.median(guess_err) / max(np.median(test_err), 1e-12))
    by_start = [{
        "start": i + 1, "D_l_guess": r["guess_D_l"], "D_t_guess": r["guess_D_t"], "D_l": r["D_l"], "D_t": r["D_t"],
        "D_l_relative_error": abs(r["D_l"] - D_TRUE[0]) / D_TRUE[0],
        "D_t_relative_error": abs(r["D_t"] - D_TRUE[1]) / D_TRUE[1],
        "scar_dice": r["scar_dice"], "scale_min": r["scale_min"],
        "deficit_centre_error_mm": r["deficit_centre_error_mm"], "scale_rmse": scale_err[i],
        "train_ecg_error": r["train_ecg_error"], "test_ecg_error_first_guess": r["test_ecg_error_guess"],
        "test_ecg_error": r["test_ecg_error"], "test_activation_rmse_ms": r["test_activation_rmse_ms"],
        "final_loss": r["history"][-1]["loss"] if r["history"] else None,
    } for i, r in enumerate(results)]
    metrics = {
        "ranks": COMM.size, "dofs": n_dofs, "steps": args.steps, "train_steps": args.train_steps,
        "dt_ms": args.dt, "epochs": args.epochs,
        "lbfgs_iterations_per_epoch": args.iterations, "starts": len(results), "alpha": args.alpha, "gamma": args.gamma,
        "leads": ", ".join(ecg.lead_names), "train_sites": ", ".join(TRAIN_SITES),
        "test_sites": ", ".join(TEST_SITES),
        "D_l_true": D_TRUE[0], "D_t_true": D_TRUE[1], "scar_scale_true": SCAR_SCALE,
        "by_start": by_start,
        "D_l_learned_median": float(np.median(D_l)), "D_t_learned_median": float(np.median(D_t)),
        "scar_dice_median": float(np.median([r["scar_dice"] for r in results])),
        "deficit_centre_error_mm_median": float(np.median([r["deficit_centre_error_mm"] for r in results])),
        "test_ecg_error_reduction": reduction,
        "D_l_spread_between_starts": (max(D_l) - min(D_l)) / D_TRUE[0],
        "D_t_spread_between_starts": (max(D_t) - min(D_t)) / D_TRUE[1],
        "between_starts_test_ecg_difference_max": max(ecg_apart, default=0.0),
        "between_starts_test_activation_rmse_ms_max": max(maps_apart, default=0.0),
        "seconds_per_epoch": float(np.mean([r["seconds_per_epoch"] for r in results])),
        "wall_seconds": wall,
        "final_loss": [row["final_loss"] for row in by_start],
    }
    plot_loss(args.out / "loss.png", results[0]["history"], "ECG personalisation: training loss (start 1)", COMM)
    ecg_png(args.out / "ecg.png", ecg, observed, results, args)
    from deepnum_fem.viz import surface_maps_png
    surface_maps_png(args.out / "scar.png", model.V,
                     {"true scale": s_true.numpy(), **{f"start {i + 1}": r["scale"].numpy()
                                                       for i, r in enumerate(results)}},
                     label="conductivity scale s", clim=(0.0, 1.2), cmap="viridis",
                     camera_position=[(-80, -40, -5), (0, 0, -7), (0, 0, 1)])
    dnf.training.finish(args.out, metrics, reduction=reduction, target=args.target, comm=COMM)


def ecg_png(path, ecg, observed, results, args) -> None:
    if COMM.rank != 0:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = next(iter(TEST_SITES))
    t = args.dt * np.arange(1, args.steps + 1)
    names = ecg.lead_names
    fig, axes = plt.subplots(3, 3, figsize=(11, 7), sharex=True)
    for k, ax in enumerate(axes.flat[: len(names)]):
        ax.plot(t, observed[name][0][:, k], "k", lw=2.0, label="truth")
        ax.plot(t, results[0]["leads"][name + " (first guess)"][:, k], "C3--", lw=1.0, label="first guess (start 1)")
        for i, r in enumerate(results):
            ax.plot(t, r["leads"][name][:, k], f"C{i}", lw=1.0, label=f"learned, start {i + 1}")
        ax.set_title(names[k], fontsize=9)
    axes.flat[0].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("t (ms)")
    fig.suptitle(f"ECG of a held-out pacing site ({name}): pseudo-ECG, infinite medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
