"""Coastal shallow water: learn the bottom-drag law a 2D tidal model gets wrong, from tide gauges.

The bundled idealised bay (20 km x 12 km, an island, two headlands, here over a shallow shelf
that shoals to 3 m at the head) is forced by the tide on its open boundary. A hidden "true" sea makes the data:
its bed friction follows Manning's law, ``c_d = g n² / H^(1/3)`` with n = 0.035 s/m^(1/3),
about four times the usual drag where the water is shallow. The model we train has the textbook constant
drag coefficient c_d = 0.0025 times a learned correction,

    τ_b / (ρ H) = c_d(|u|, H) |u| u / H,     c_d = 0.0025 · exp(N_θ(|u|, H)),

where N_θ is an MLP inside the UFL weak form (``dnf.ml_operator``): every Newton step of the
implicit (θ = 0.6) Taylor–Hood scheme evaluates it and its Jacobian at the quadrature points.
L-BFGS fits θ to six tide gauges under two tidal forcings, through the whole rollout (one
adjoint solve per step, a vector-Jacobian product for θ). The trained model then predicts the
gauges under a tide it never saw (another period, plus an overtide).

    mpirun -n 2 python demos/coastal_closure.py          # a few minutes on 2 cores
    python demos/coastal_closure.py --quick              # the tests' version
    python demos/coastal_closure.py --resume             # continue from out/coast/checkpoint.pt

Writes to --out: metrics.json, bathymetry.png (mesh and depth, gauges), snapshot.png (elevation
and currents of the truth and the trained model), gauges.png (held-out series: truth, prior,
trained), drag.png (true, prior and learned c_d against depth), loss.png, eta.xdmf,
checkpoint.pt.
"""

from __future__ import annotations

import math
import time

from _common import COMM, log, training_parser  # demos/ is on sys.path when a script there runs

import dolfinx.fem
import numpy as np
import torch

import deepnum_fem as dnf
from deepnum_fem.bathymetry import bathymetry_function, shelf_bathymetry
from deepnum_fem.geometry import BAY_COASTLINE, BAY_ISLANDS, BAY_OPEN_SEA, coastal_domain
from deepnum_fem.io import write_frames
from deepnum_fem.models.shallow_water import LearnedDragLaw, ShallowWater, speed
from deepnum_fem.training import finish, fit, plot_loss, resume, rmse

G, MANNING_N, C0 = 9.81, 0.035, 0.0025
#: a shallow shelf (m): 3 m at the head, 12 m across the bay, 40 m offshore, so that friction matters
SHELF = {"depth_coast": 3.0, "depth_shelf": 12.0, "depth_ocean": 40.0}
U_SCALE, H_SCALE = 0.5, 30.0               # m/s, m: the network's input scales
M2 = 44712.0                               # s, the principal lunar semi-diurnal period
# (amplitude m, period s, phase rad); phase -π/2: each constituent starts at mean level, rising
TRAIN_TIDES = [[(0.8, M2, -math.pi / 2)], [(1.2, 0.8 * M2, -math.pi / 2)]]
TEST_TIDE = [(1.0, 0.9 * M2, -math.pi / 2), (0.15, 0.45 * M2, -math.pi / 2)]
GAUGES = np.array([[1500.0, 6000.0], [3000.0, 8800.0], [3500.0, 3000.0], [6000.0, 10000.0],
                   [12000.0, 8000.0], [12500.0, 5000.0]])


def manning(u, H):
    """The truth's friction acceleration: Manning's c_d = g n² / H^(1/3)."""
    return G * MANNING_N**2 / H ** (1.0 / 3.0) * speed(u) * u / H


def run(model: ShallowWater, tide, steps: int, gauges, *, checkpoint_every=None, keep_every: int = 0):
    """Roll out from rest under ``tide``; return the (steps, n_gauges) series and kept states."""
    model.tide = [tuple(map(float, c)) for c in tide]
    frames = []

    def observe(w, k):
        if keep_every and (k + 1) % keep_every == 0:
            frames.append((model.time(k), w.detach().clone()))
        return gauges.local(w)

    _, local = model.simulate(steps, observe=observe, checkpoint_every=checkpoint_every)
    return dnf.parallel.sum(local, COMM), frames


def main() -> None:
    p = training_parser(__doc__.split("\n")[0], out="out/coast", epochs=6, iterations=4, save_every=2, target=3.0,
                        checkpoint_every=None, quick="h = 3 km, half a period, 3 epochs of 3 iterations")
    p.add_argument("--h", type=float, default=2000.0, help="mesh size offshore (m); h/4 at the coast")
    p.add_argument("--dt", type=float, default=900.0, help="s")
    p.add_argument("--periods", type=float, default=1.0, help="length of each run, in M2 periods")
    p.add_argument("--viscosity", type=float, default=50.0, help="m²/s (Galerkin advection on coarse "
                   "meshes needs it: cell Reynolds number |u| h / ν of order 10)")
    args = p.parse_args()
    if args.quick:
        args.h, args.periods, args.epochs, args.iterations = 3000.0, 0.5, min(args.epochs, 3), 3
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    data = coastal_domain(BAY_COASTLINE, BAY_OPEN_SEA, islands=BAY_ISLANDS, h=args.h, comm=COMM)
    mesh = data.mesh
    depth = bathymetry_function(dolfinx.fem.functionspace(mesh, ("Lagrange", 1)),
                                lambda x: shelf_bathymetry(x, **SHELF))
    common = {"dt": args.dt, "coriolis": 1e-4, "viscosity": args.viscosity}
    truth = ShallowWater(data, depth, drag=manning, **common)
    correction = LearnedDragLaw(C0, speed_scale=U_SCALE, depth_scale=H_SCALE)
    dnf.parallel.broadcast_parameters(correction)
    hybrid = ShallowWater(data, depth, drag=correction.drag(quadrature_degree=4), **common)
    steps = round(args.periods * M2 / args.dt)
    n_dofs = hybrid.W.dofmap.index_map.size_global
    log(f"bay: {n_dofs} dofs (P2-P1), {mesh.topology.index_map(2).size_global} triangles, {COMM.size} rank(s); "
        f"{steps} steps of {args.dt:.0f} s per run")
    gauges = {m: m.sensors(GAUGES) for m in (truth, hybrid)}

    # -- data from the hidden truth --------------------------------------------------------------
    with torch.no_grad():
        observed = [run(truth, tide, steps, gauges[truth])[0] for tide in TRAIN_TIDES]
        test_truth, truth_frames = run(truth, TEST_TIDE, steps, gauges[truth], keep_every=steps // 2)
        test_prior, _ = run(hybrid, TEST_TIDE, steps, gauges[hybrid])      # N_θ = 0: the prior
    scales = [float(o.pow(2).mean()) for o in observed]

    params = list(correction.parameters())
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=args.iterations, history_size=20,
                            line_search_fn="strong_wolfe")
    ckpt = args.out / "checkpoint.pt"
    start, history, _ = resume(ckpt, enabled=args.resume, optimizer=opt, state={"correction": correction})

    def closure():
        opt.zero_grad()
        total = torch.zeros((), dtype=torch.float64)
        for tide, obs, scale in zip(TRAIN_TIDES, observed, scales, strict=True):
            series, _ = run(hybrid, tide, steps, gauges[hybrid], checkpoint_every=args.checkpoint_every)
            loss = ((series - obs) ** 2).mean() / scale / len(TRAIN_TIDES)
            loss.backward()
            total += loss.detach()
        dnf.parallel.allreduce_gradients(params)
        return total

    progress = fit(optimizer=opt, closure=closure, epochs=args.epochs, start=start, history=history,
                   checkpoint=ckpt, every=args.save_every, state={"correction": correction})

    # -- held-out tide ------------------------------------------------------------------------------
    with torch.no_grad():
        test_trained, frames = run(hybrid, TEST_TIDE, steps, gauges[hybrid], keep_every=steps // 2)
    rmse_prior, rmse_trained = rmse(test_prior, test_truth), rmse(test_trained, test_truth)
    reduction = rmse_prior / max(rmse_trained, 1e-30)
    log(f"held-out tide, gauge RMSE: {100 * rmse_prior:.3f} cm (constant drag) -> {100 * rmse_trained:.3f} cm "
        f"(learned), {reduction:.1f}x")

    # the learned law against the truth over the depths and speeds the runs visit
    depths = np.linspace(2.0, 40.0, 39)
    speeds = np.linspace(0.05, 0.6, 12)
    S, D = np.meshgrid(speeds, depths)
    true_cd = G * MANNING_N**2 / D ** (1.0 / 3.0)
    learned_cd = correction.coefficient(S, D)
    law_error = float(np.linalg.norm(learned_cd - true_cd) / np.linalg.norm(true_cd))
    prior_error = float(np.linalg.norm(C0 - true_cd) / np.linalg.norm(true_cd))

    write_frames(args.out / "eta.xdmf", hybrid.Q, [(t, hybrid.elevation(w)) for t, w in frames], "elevation")
    plot_loss(args.out / "loss.png", history, "coastal closure: training loss", COMM)
    _figures(args, hybrid, depth, truth_frames, frames, (test_truth, test_prior, test_trained), history,
             (depths, true_cd, correction.coefficient(np.full_like(depths, 0.3), depths)))

    metrics = {
        "ranks": COMM.size, "dofs": n_dofs, "steps": steps, "dt_s": args.dt, "epochs": args.epochs,
        "lbfgs_iterations_per_epoch": args.iterations, "gauges": len(GAUGES),
        "test_rmse_prior_m": rmse_prior, "test_rmse_trained_m": rmse_trained, "test_rmse_reduction": reduction,
        "drag_law_relative_error_prior": prior_error, "drag_law_relative_error_learned": law_error,
        "seconds_per_epoch": progress.seconds_per_epoch, "wall_seconds": time.perf_counter() - t_start,
        "final_loss": history[-1]["loss"] if history else None,
    }
    finish(args.out, metrics, reduction=reduction, target=args.target, comm=COMM)


def _figures(args, model, depth, truth_frames, frames, series, history, law) -> None:
    """bathymetry.png, snapshot.png, gauges.png, drag.png, loss.png (rank 0 draws)."""
    from deepnum_fem.viz import gather_grid
    arrays = {"depth": model.h_b_nodes}
    for name, kept in (("truth", truth_frames), ("trained", frames)):
        arrays.update({f"eta {name} {i}": model.elevation(w).numpy() for i, (_, w) in enumerate(kept)})
    grid = gather_grid(model.Q, arrays)
    x_u = model.V.tabulate_dof_coordinates()[: model.n_u // 2, :2]
    arrows = {name: COMM.gather((x_u, model.velocity(kept[-1][1]).numpy()), root=0)
              for name, kept in (("truth", truth_frames), ("trained", frames))}
    if COMM.rank != 0:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.tri as mtri
    import pyvista

    x = np.asarray(grid.points)[:, :2]
    tri = mtri.Triangulation(x[:, 0] / 1e3, x[:, 1] / 1e3, grid.cells_dict[pyvista.CellType.TRIANGLE])

    fig, ax = plt.subplots(figsize=(7, 4.4))
    im = ax.tripcolor(tri, grid.point_data["depth"], shading="gouraud", cmap="Blues")
    ax.triplot(tri, lw=0.2, color="0.3")
    ax.plot(GAUGES[:, 0] / 1e3, GAUGES[:, 1] / 1e3, "o", color="tab:red", ms=5, label="tide gauges")
    ax.set_aspect("equal")
    ax.set_xlabel("x (km)")
    ax.set_ylabel("y (km)")
    ax.legend(loc="lower left", fontsize=7)
    fig.colorbar(im, ax=ax, label="depth (m)")
    ax.set_title("bay mesh and bathymetry (open sea at x = 20 km)")
    fig.tight_layout()
    fig.savefig(args.out / "bathymetry.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    last = len(frames) - 1
    values = [grid.point_data[f"eta {name} {last}"] for name in ("truth", "trained")]
    lim = max(float(np.abs(v).max()) for v in values)
    for ax, name, v in zip(axes, ("truth", "trained"), values, strict=True):
        im = ax.tripcolor(tri, v, shading="gouraud", cmap="RdBu_r", vmin=-lim, vmax=lim)
        xs, us = (np.concatenate(a) for a in zip(*arrows[name], strict=True))
        step = max(len(xs) // 300, 1)
        ax.quiver(xs[::step, 0] / 1e3, xs[::step, 1] / 1e3, us[::step, 0], us[::step, 1], scale=8)
        ax.set_aspect("equal")
        ax.set_title(f"{name}: elevation and currents, t = {frames[last][0] / 3600:.1f} h", fontsize=9)
    fig.colorbar(im, ax=axes, label="η (m)")
    fig.savefig(args.out / "snapshot.png", dpi=110)
    plt.close(fig)

    truth, prior, trained = (s.numpy() for s in series)
    t = model.dt * np.arange(1, len(truth) + 1) / 3600
    fig, axes = plt.subplots(2, 3, figsize=(12, 5.5), sharex=True)
    for i, ax in enumerate(axes.flat):
        ax.plot(t, truth[:, i], "k", label="truth (Manning)")
        ax.plot(t, prior[:, i], "--", color="tab:blue", label="constant c_d")
        ax.plot(t, trained[:, i], color="tab:red", label="learned c_d")
        ax.set_title(f"gauge at ({GAUGES[i, 0] / 1e3:.1f}, {GAUGES[i, 1] / 1e3:.1f}) km", fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("t (h)")
    axes[0, 0].set_ylabel("η (m)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("held-out tide")
    fig.tight_layout()
    fig.savefig(args.out / "gauges.png", dpi=110)
    plt.close(fig)

    depths, true_cd, learned_cd = law
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(depths, true_cd, "k", label=f"truth: Manning, n = {MANNING_N}")
    ax.plot(depths, np.full_like(depths, C0), "--", color="tab:blue", label="prior: 0.0025")
    ax.plot(depths, learned_cd, color="tab:red", label="learned, |u| = 0.3 m/s")
    ax.set_xlabel("depth H (m)")
    ax.set_ylabel("drag coefficient c_d")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "drag.png", dpi=120)
    plt.close(fig)



if __name__ == "__main__":
    main()
