"""Coastal shallow water: learn the bed-friction law of the Rade de Brest from tide gauges.

The bay is real: the Rade de Brest, its Goulet and the Iroise approach, from the GSHHG
shoreline (``dnf.io.load_brest_bay_outline``), meshed here at 2 km offshore and 600 m at the
coast. Its depth is a *model* (``bathymetry.shore_bathymetry``: 2 m at the land, 40 m far from
it), not a survey, and the tide at the mouth is M2 + S2 from an editable table of placeholder
harmonic constants of Brest's size (spring range about 5.6 m): so the experiment is a twin
experiment on real geometry. Tidal flats dry and flood (``wetting_drying=1 m``).

The hidden "true" sea has Manning friction, ``c_d = g n² / H^(1/3)`` with n = 0.035 s/m^(1/3)
(two to five times the textbook drag). The model starts from that textbook drag, c_d = 0.0025,
times a learned correction,

    τ_b / (ρ H) = c_d(|u|, H) |u| u / H,     c_d = 0.0025 · exp(N_θ(|u|, H)),

with N_θ an MLP inside the UFL weak form (``dnf.ml_operator``): every Newton step of the
implicit (θ = 0.6) Taylor–Hood scheme evaluates it at the quadrature points. L-BFGS fits θ
to eight gauges (places of the bay; Brest's is near the real tide gauge) over one M2 period
at spring tide and one at neap tide, through the whole rollouts (one adjoint solve per step).
The trained model then predicts the gauges over a period it never saw, between spring and
neap. Each period starts at high water at the mouth, from rest at that level.

    ./dnf demo coastal_closure                           # ~10 min on 2 cores
    python demos/coastal_closure.py --quick              # the tests' version
    python demos/coastal_closure.py --resume             # continue from out/coast/checkpoint.pt

Writes to --out: metrics.json, bathymetry.png (mesh, depth, gauges), snapshot.png (elevation
and currents of the truth and the trained model), gauges.png (held-out series: truth, prior,
trained), drag.png (true, prior and learned c_d against depth), loss.png, eta.xdmf,
checkpoint.pt.
"""

from __future__ import annotations

import time

from _common import COMM, log, training_parser  # demos/ is on sys.path when a script there runs

import dolfinx.fem
import numpy as np
import torch

import deepnum_fem as dnf
from deepnum_fem.bathymetry import bathymetry_function, shore_bathymetry
from deepnum_fem.geometry import coastal_domain
from deepnum_fem.io import write_frames
from deepnum_fem.models.shallow_water import (
    TIDAL_PERIODS,
    LearnedDragLaw,
    ShallowWater,
    speed,
    tidal_elevation,
    tide_constituents,
)
from deepnum_fem.training import finish, fit, plot_loss, resume, rmse

G, MANNING_N, C0 = 9.81, 0.035, 0.0025
#: the tide at the mouth, {constituent: (amplitude m, phase lag in degrees)}: placeholders of the
#: size of Brest's M2 and S2, not constants from a tide-gauge analysis; edit freely
TIDE_TABLE = {"M2": (2.05, 0.0), "S2": (0.75, 0.0)}
#: the depth model (m): 2 m at the land, 40 m from about 3 km off it (no survey ships offline)
DEPTH_MODEL = {"depth_shore": 2.0, "depth_offshore": 40.0, "length": 1500.0}
WETTING_DRYING = 1.0                        # m, the Kärnä et al. depth scale α
U_SCALE, H_SCALE = 1.0, 40.0                # m/s, m: the network's input scales
M2 = TIDAL_PERIODS["M2"]
SPRING_NEAP = 1.0 / (1.0 / TIDAL_PERIODS["S2"] - 1.0 / M2)   # 14.77 days
#: nominal start of each period (s after the table's phase origin, a spring tide): each starts
#: at the high water nearest to it
WINDOWS = {"spring": 0.0, "neap": SPRING_NEAP / 2, "held-out": SPRING_NEAP / 4}
TRAIN = ("spring", "neap")
SNAPSHOT = 1                                # the kept state (every quarter period) drawn: low water
#: gauges (lon, lat in degrees): places of the bay, Brest's near the harbour's tide gauge
GAUGES_LONLAT = {"Brest": (-4.495, 48.378), "Goulet": (-4.560, 48.345), "Bertheaume": (-4.690, 48.335),
                 "Camaret": (-4.590, 48.283), "Le Fret": (-4.508, 48.287), "Lanvéoc": (-4.460, 48.296),
                 "Plougastel": (-4.370, 48.330), "Landévennec": (-4.270, 48.295)}


def manning(u, H):
    """The truth's friction acceleration: Manning's c_d = g n² / H^(1/3)."""
    return G * MANNING_N**2 / H ** (1.0 / 3.0) * speed(u) * u / H


def high_water(tide, near: float) -> float:
    """The time (s) of the highest open-sea elevation within half an M2 period of ``near``."""
    times = near + np.arange(-M2 / 2, M2 / 2, 60.0)
    return float(times[np.argmax([tidal_elevation(tide, t) for t in times])])


def run(model: ShallowWater, t0: float, steps: int, gauges, *, checkpoint_every=None, keep_every: int = 0,
        dry_area: list | None = None):
    """Roll out from rest at the tide's level at ``t0``; return the (steps, n_gauges) series and
    the kept states. ``dry_area`` collects the area (m²) where ``h_b + η < 0`` after each step."""
    model.t0 = t0
    state0 = model.initial_state(tidal_elevation(model.tide, t0))
    frames = []
    weights = model.eta_weights[model.eta_dofs].numpy()

    def observe(w, k):
        if keep_every and (k + 1) % keep_every == 0:
            frames.append((model.time(k), w.detach().clone()))
        if dry_area is not None:
            dry = model.h_b_nodes + model.elevation(w.detach()).numpy() < 0
            dry_area.append(COMM.allreduce(float(weights[dry].sum())))
        return gauges.local(w)

    _, local = model.simulate(steps, state0, observe=observe, checkpoint_every=checkpoint_every)
    return dnf.parallel.sum(local, COMM), frames


def main() -> None:
    p = training_parser(__doc__.split("\n")[0], out="out/coast", epochs=3, iterations=3, save_every=1, target=3.0,
                        checkpoint_every=None, quick="h = 3 km, a quarter of each period, 2 epochs of 2 iterations")
    p.add_argument("--h", type=float, default=2000.0, help="mesh size offshore (m)")
    p.add_argument("--h-coast", type=float, default=600.0, help="mesh size at the land (m)")
    p.add_argument("--dt", type=float, default=600.0, help="s")
    p.add_argument("--periods", type=float, default=1.0, help="length of each run, in M2 periods")
    p.add_argument("--viscosity", type=float, default=50.0, help="m²/s (Galerkin advection on coarse "
                   "meshes needs it: cell Reynolds number |u| h / ν of order 10)")
    args = p.parse_args()
    if args.quick:
        args.h, args.h_coast, args.periods = 3000.0, 1000.0, 0.25
        args.epochs, args.iterations = min(args.epochs, 2), min(args.iterations, 2)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    outline = dnf.io.load_brest_bay_outline()
    data = coastal_domain(outline["coastline"], outline["open_sea"], islands=outline["islands"],
                          h=args.h, h_coast=args.h_coast, comm=COMM)
    mesh = data.mesh
    depth = bathymetry_function(dolfinx.fem.functionspace(mesh, ("Lagrange", 1)),
                                shore_bathymetry(outline["coastline"], outline["open_sea"], outline["islands"],
                                                 **DEPTH_MODEL))
    tide = tide_constituents(TIDE_TABLE)
    common = {"dt": args.dt, "coriolis": 1.1e-4, "viscosity": args.viscosity, "tide": tide,
              "wetting_drying": WETTING_DRYING}
    truth = ShallowWater(data, depth, drag=manning, **common)
    correction = LearnedDragLaw(C0, speed_scale=U_SCALE, depth_scale=H_SCALE)
    dnf.parallel.broadcast_parameters(correction)
    hybrid = ShallowWater(data, depth, drag=correction.drag(quadrature_degree=4), **common)
    steps = round(args.periods * M2 / args.dt)
    starts = {name: high_water(tide, t) for name, t in WINDOWS.items()}
    (kx, ky), (lon0, lat0) = outline["metres_per_degree"], outline["origin"]
    gauge_xy = np.array([[kx * (lon - lon0), ky * (lat - lat0)] for lon, lat in GAUGES_LONLAT.values()])
    n_dofs = hybrid.W.dofmap.index_map.size_global
    log(f"Rade de Brest: {n_dofs} dofs (P2-P1), {mesh.topology.index_map(2).size_global} triangles, "
        f"{COMM.size} rank(s); {steps} steps of {args.dt:.0f} s per run; {len(gauge_xy)} gauges")
    gauges = {m: m.sensors(gauge_xy) for m in (truth, hybrid)}

    # -- data from the hidden truth --------------------------------------------------------------
    dry: list[float] = []
    with torch.no_grad():
        observed = {}
        for name in TRAIN:
            dry_area = dry if name == "spring" else None
            observed[name] = run(truth, starts[name], steps, gauges[truth], dry_area=dry_area)[0]
        test_truth, truth_frames = run(truth, starts["held-out"], steps, gauges[truth], keep_every=steps // 4)
        test_prior, _ = run(hybrid, starts["held-out"], steps, gauges[hybrid])      # N_θ = 0: the prior
    scales = {name: float((o - o.mean(0)).pow(2).mean()) for name, o in observed.items()}
    log("  tidal range at the gauges (truth): " + ", ".join(
        f"{name} {float((o.max(0).values - o.min(0).values).mean()):.2f} m" for name, o in observed.items()))

    params = list(correction.parameters())
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=args.iterations, history_size=20,
                            line_search_fn="strong_wolfe")
    ckpt = args.out / "checkpoint.pt"
    start, history, _ = resume(ckpt, enabled=args.resume, optimizer=opt, state={"correction": correction})

    def closure():
        opt.zero_grad()
        total = torch.zeros((), dtype=torch.float64)
        for name in TRAIN:
            series, _ = run(hybrid, starts[name], steps, gauges[hybrid], checkpoint_every=args.checkpoint_every)
            loss = ((series - observed[name]) ** 2).mean() / scales[name] / len(TRAIN)
            loss.backward()
            total += loss.detach()
        dnf.parallel.allreduce_gradients(params)
        return total

    progress = fit(optimizer=opt, closure=closure, epochs=args.epochs, start=start, history=history,
                   checkpoint=ckpt, every=args.save_every, state={"correction": correction})

    # -- the held-out period ------------------------------------------------------------------------
    with torch.no_grad():
        test_trained, frames = run(hybrid, starts["held-out"], steps, gauges[hybrid], keep_every=steps // 4)
    rmse_prior, rmse_trained = rmse(test_prior, test_truth), rmse(test_trained, test_truth)
    reduction = rmse_prior / max(rmse_trained, 1e-30)
    tidal_range = float((test_truth.max(0).values - test_truth.min(0).values).mean())
    log(f"held-out period (mean tidal range {tidal_range:.2f} m), gauge RMSE: {100 * rmse_prior:.2f} cm "
        f"(textbook drag: the effect of the friction law) -> {100 * rmse_trained:.2f} cm (learned), {reduction:.1f}x")

    # the learned law against the truth over the depths and speeds the runs visit
    depths = np.linspace(1.0, 40.0, 40)
    speeds = np.linspace(0.05, 1.0, 20)
    S, D = np.meshgrid(speeds, depths)
    true_cd = G * MANNING_N**2 / D ** (1.0 / 3.0)
    law_error = float(np.linalg.norm(correction.coefficient(S, D) - true_cd) / np.linalg.norm(true_cd))
    prior_error = float(np.linalg.norm(C0 - true_cd) / np.linalg.norm(true_cd))

    write_frames(args.out / "eta.xdmf", hybrid.Q, [(t, hybrid.elevation(w)) for t, w in frames], "elevation")
    plot_loss(args.out / "loss.png", history, "coastal closure (Rade de Brest): training loss", COMM)
    _figures(args, hybrid, gauge_xy, truth_frames, frames, (test_truth, test_prior, test_trained),
             (depths, true_cd, correction.coefficient(np.full_like(depths, 0.5), depths)))

    metrics = {
        "ranks": COMM.size, "dofs": n_dofs, "triangles": mesh.topology.index_map(2).size_global,
        "steps": steps, "dt_s": args.dt, "epochs": args.epochs, "lbfgs_iterations_per_epoch": args.iterations,
        "gauges": len(gauge_xy), "tide_table": TIDE_TABLE,
        "period_starts_days": {name: t / 86400 for name, t in starts.items()},
        "training_mean_tidal_range_m": {name: float((o.max(0).values - o.min(0).values).mean())
                                        for name, o in observed.items()},
        "held_out_mean_tidal_range_m": tidal_range,
        "largest_dry_area_spring_km2": max(dry) / 1e6, "water_area_km2": float(
            COMM.allreduce(float(hybrid.eta_weights[hybrid.eta_dofs].sum()))) / 1e6,
        "test_rmse_prior_m": rmse_prior, "test_rmse_trained_m": rmse_trained, "test_rmse_reduction": reduction,
        "test_max_error_prior_m": float((test_prior - test_truth).abs().max()),
        "test_max_error_trained_m": float((test_trained - test_truth).abs().max()),
        "drag_law_relative_error_prior": prior_error, "drag_law_relative_error_learned": law_error,
        "seconds_per_epoch": progress.seconds_per_epoch, "wall_seconds": time.perf_counter() - t_start,
        "final_loss": history[-1]["loss"] if history else None,
    }
    finish(args.out, metrics, reduction=reduction, target=args.target, comm=COMM)


def _figures(args, model, gauge_xy, truth_frames, frames, series, law) -> None:
    """bathymetry.png, snapshot.png (low water), gauges.png, drag.png (rank 0 draws)."""
    starts_h = model.t0 / 3600
    from deepnum_fem.viz import gather_grid
    arrays = {"depth": model.h_b_nodes}
    for name, kept in (("truth", truth_frames), ("trained", frames)):
        arrays.update({f"eta {name} {i}": model.elevation(w).numpy() for i, (_, w) in enumerate(kept)})
    grid = gather_grid(model.Q, arrays)
    x_u = model.V.tabulate_dof_coordinates()[: model.n_u // 2, :2]
    arrows = {name: COMM.gather((x_u, model.velocity(kept[SNAPSHOT][1]).numpy()), root=0)
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
    names = list(GAUGES_LONLAT)

    fig, ax = plt.subplots(figsize=(8, 4.6))
    im = ax.tripcolor(tri, grid.point_data["depth"], shading="gouraud", cmap="Blues")
    ax.triplot(tri, lw=0.15, color="0.3")
    ax.plot(gauge_xy[:, 0] / 1e3, gauge_xy[:, 1] / 1e3, "o", color="tab:red", ms=4)
    for name, (gx, gy) in zip(names, gauge_xy, strict=True):
        ax.annotate(name, (gx / 1e3, gy / 1e3), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_aspect("equal")
    ax.set_xlabel("x (km east of 4.45° W)")
    ax.set_ylabel("y (km north of 48.34° N)")
    fig.colorbar(im, ax=ax, label="model depth (m)", shrink=0.8)
    ax.set_title("Rade de Brest (GSHHG coast): mesh, depth model, gauges", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out / "bathymetry.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(2, 1, figsize=(8, 7.5))
    values = [grid.point_data[f"eta {name} {SNAPSHOT}"] for name in ("truth", "trained")]
    lim = max(float(np.abs(v).max()) for v in values)
    for ax, name, v in zip(axes, ("truth", "trained"), values, strict=True):
        im = ax.tripcolor(tri, v, shading="gouraud", cmap="RdBu_r", vmin=-lim, vmax=lim)
        dry = grid.point_data["depth"] + v < 0       # where h_b + η < 0: the tidal flats, dry
        ax.tricontourf(tri, dry.astype(float), levels=[0.5, 1.5], colors=["0.6"])
        xs, us = (np.concatenate(a) for a in zip(*arrows[name], strict=True))
        step = max(len(xs) // 400, 1)
        ax.quiver(xs[::step, 0] / 1e3, xs[::step, 1] / 1e3, us[::step, 0], us[::step, 1], scale=25)
        ax.set_aspect("equal")
        ax.set_title(f"{name}: elevation, currents, dry flats (grey), "
                     f"{frames[SNAPSHOT][0] / 3600 - starts_h:.1f} h after high water", fontsize=9)
    fig.colorbar(im, ax=axes, label="η (m)", shrink=0.7)
    fig.savefig(args.out / "snapshot.png", dpi=110)
    plt.close(fig)

    truth, prior, trained = (s.numpy() for s in series)
    t = model.dt * np.arange(1, len(truth) + 1) / 3600
    fig, axes = plt.subplots(2, 4, figsize=(13, 5.5), sharex=True)
    for i, ax in enumerate(axes.flat[: len(names)]):
        ax.plot(t, truth[:, i], "k", label="truth (Manning)")
        ax.plot(t, prior[:, i], "--", color="tab:blue", label="c_d = 0.0025")
        ax.plot(t, trained[:, i], color="tab:red", label="learned c_d")
        ax.set_title(names[i], fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("t (h from high water)")
    axes[0, 0].set_ylabel("η (m)")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("held-out period (between spring and neap)")
    fig.tight_layout()
    fig.savefig(args.out / "gauges.png", dpi=110)
    plt.close(fig)

    depths, true_cd, learned_cd = law
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(depths, true_cd, "k", label=f"truth: Manning, n = {MANNING_N}")
    ax.plot(depths, np.full_like(depths, C0), "--", color="tab:blue", label=f"prior: {C0}")
    ax.plot(depths, learned_cd, color="tab:red", label="learned, |u| = 0.5 m/s")
    ax.set_xlabel("depth H (m)")
    ax.set_ylabel("drag coefficient c_d")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "drag.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
