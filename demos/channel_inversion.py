"""Recover a channel's Manning field from five tide stations: the twin experiment of Thetis's
`channel_inversion` example, through deepnum-fem's adjoint.

The setup is Thetis's (examples/channel_inversion/model_config.py): a channel 100 km long and
two cells wide (30 x 2 rectangles, here each cut into two triangles), depth falling linearly
from 10 m to 5 m, closed at both ends; Manning's n = 1e-3 s/m^(1/3) for x < 60 km and 1.5e-2
beyond (a P1 field); an initial elevation ramping from 6 m at x = 0 to 0 at 80 km; 8 h in
steps of 600 s; elevation stations at x = 10, 30, 60, 80 and 96 km. Two things differ, because
the ramp steepens into a 6 m bore that this continuous-Galerkin model (Thetis: discontinuous
Galerkin) does not carry without help on 3.3 km cells: an eddy viscosity of 100 m²/s, and
θ = 0.6 in time instead of Crank–Nicolson (with θ = 0.5, Newton fails after 6 h of the run at
n = 1e-3, the starting guess).

The truth's station series are the observations. The inversion starts, as Thetis's does, from
n = 1e-3 everywhere, and fits the P1 field of log n by L-BFGS on

    J = (dt / T) Σ_steps Σ_stations (η - η_obs)² + γ ∫ |∇ log n|² dx,

the misfit scaled as Thetis scales it and a smoothness penalty in log n (Thetis penalises the
Hessian of n, with L-BFGS-B bounds; here log n keeps n positive without bounds). The model is
deepnum-fem's P2–P1 shallow water (Thetis: DG), so the two do not compute the same truth;
what carries over is the experiment and whether the field is found.

    python demos/channel_inversion.py           # about a minute on 1 core
    python demos/channel_inversion.py --quick   # the tests' version

Writes to --out: metrics.json, manning.png, stations.png, checkpoint.pt.
"""

from __future__ import annotations

import math
import time

from _common import COMM, ReplicatedField, log, training_parser  # demos/ is on sys.path when a script there runs

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import torch
import ufl

import deepnum_fem as dnf
from deepnum_fem.models import ShallowWater
from deepnum_fem.training import finish, fit, resume

LENGTH, NX, NY = 100e3, 30, 2
WIDTH = NY * LENGTH / NX
DEPTH_SEA, DEPTH_RIVER = 10.0, 5.0
MANNING_LOW, MANNING_HIGH, JUMP = 1e-3, 1.5e-2, 60e3
RAMP_HEIGHT, RAMP_LENGTH = 6.0, 80e3
STATIONS_X = (10e3, 30e3, 60e3, 80e3, 96e3)
DT, HOURS = 600.0, 8.0


def channel(comm):
    """The channel's mesh and its boundary, all tagged LAND (1)."""
    mesh = dolfinx.mesh.create_rectangle(comm, [[0.0, 0.0], [LENGTH, WIDTH]], [NX, NY])
    mesh.topology.create_connectivity(1, 2)
    facets = dolfinx.mesh.exterior_facet_indices(mesh.topology)
    return mesh, dolfinx.mesh.meshtags(mesh, 1, facets, np.full(len(facets), 1, dtype=np.int32))


def main() -> None:
    p = training_parser(__doc__.split("\n")[0], out="out/channel_inversion", epochs=8, iterations=5, save_every=2,
                        target=5.0, checkpoint_every=None, quick="16 steps (2 h 40 min), 3 epochs")
    p.add_argument("--penalty", type=float, default=1e-2, help="γ of the smoothness penalty on log n")
    p.add_argument("--viscosity", type=float, default=100.0,
                   help="m²/s: the CG model needs it to carry the bore the ramp becomes (with 50, Newton fails)")
    p.add_argument("--theta", type=float, default=0.6,
                   help="time stepping: 0.5 is Thetis's Crank–Nicolson, with which Newton fails after 6 h at n = 1e-3")
    args = p.parse_args()
    steps = round(HOURS * 3600 / DT)
    if args.quick:
        steps, args.epochs = 16, min(args.epochs, 3)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    mesh, tags = channel(COMM)
    P1 = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
    depth = dolfinx.fem.Function(P1, name="depth")
    depth.interpolate(lambda x: DEPTH_SEA + (DEPTH_RIVER - DEPTH_SEA) * x[0] / LENGTH)
    manning = dolfinx.fem.Function(P1, name="manning")
    field = ReplicatedField(P1)
    true_n = torch.from_numpy(np.where(field.x < JUMP, MANNING_LOW, MANNING_HIGH))
    model = ShallowWater(mesh, depth, dt=DT, theta=args.theta, drag=manning, friction="manning",
                         viscosity=args.viscosity, facet_tags=tags)
    state0 = model.initial_state(lambda x: np.where(x[0] < RAMP_LENGTH, RAMP_HEIGHT * (1 - x[0] / RAMP_LENGTH), 0.0),
                                 lambda x: np.stack([np.full(x.shape[1], 1e-5), np.zeros(x.shape[1])]))
    stations = model.sensors(np.array([[x, WIDTH / 2] for x in STATIONS_X]))
    log(f"channel: {model.W.dofmap.index_map.size_global * model.W.dofmap.index_map_bs} P2–P1 dofs, "
        f"{COMM.size} rank(s); {steps} steps of {DT:.0f} s; {len(STATIONS_X)} stations")

    def series(n_global: torch.Tensor) -> torch.Tensor:
        _, local = model.simulate(steps, state0, drag=field.owned(n_global), observe=lambda s, k: stations.local(s))
        return dnf.parallel.sum(local, COMM)

    with torch.no_grad():
        observed = series(true_n)
    scale = DT / (steps * DT)
    log_n = dolfinx.fem.Function(P1, name="log_manning")
    smoothness = dnf.functional(args.penalty * ufl.inner(ufl.grad(log_n), ufl.grad(log_n)) * ufl.dx, [log_n])

    control = torch.nn.ParameterDict({"log_n": torch.nn.Parameter(
        torch.full((field.size,), math.log(MANNING_LOW), dtype=torch.float64))})
    params = list(control.parameters())
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=args.iterations, history_size=20, line_search_fn="strong_wolfe")
    ckpt = args.out / "checkpoint.pt"
    start, history, _ = resume(ckpt, enabled=args.resume, optimizer=opt, state={"control": control})
    evaluations = [0]

    def closure():
        opt.zero_grad()
        a = control["log_n"]
        misfit = scale * (series(torch.exp(a)) - observed).pow(2).sum()
        loss = misfit + smoothness(field.owned(a))
        loss.backward()
        dnf.parallel.allreduce_gradients(params)
        evaluations[0] += 1
        return loss.detach()

    with torch.no_grad():
        first_misfit = float(scale * (series(torch.exp(control["log_n"])) - observed).pow(2).sum())
    progress = fit(optimizer=opt, closure=closure, epochs=args.epochs, start=start, history=history,
                   checkpoint=ckpt, every=args.save_every, state={"control": control})

    with torch.no_grad():
        n = torch.exp(control["log_n"]).numpy()
        fitted = series(torch.from_numpy(n))
        misfit = float(scale * (fitted - observed).pow(2).sum())
    cell = LENGTH / NX
    low, high = field.x < JUMP - cell, field.x > JUMP + cell          # away from the jump's cell
    truth = true_n.numpy()
    relative = np.abs(n / truth - 1.0)
    metrics = {
        "ranks": COMM.size, "dofs": model.W.dofmap.index_map.size_global * model.W.dofmap.index_map_bs,
        "steps": steps, "dt_s": DT, "epochs": args.epochs, "lbfgs_iterations_per_epoch": args.iterations,
        "evaluations": evaluations[0], "penalty": args.penalty, "viscosity": args.viscosity,
        "misfit_initial": first_misfit, "misfit_final": misfit, "misfit_reduction": first_misfit / max(misfit, 1e-300),
        "manning_low_recovered_median": float(np.median(n[low])),
        "manning_high_recovered_median": float(np.median(n[high])),
        "manning_low_true": MANNING_LOW, "manning_high_true": MANNING_HIGH,
        "manning_relative_error_median_low": float(np.median(relative[low])),
        "manning_relative_error_median_high": float(np.median(relative[high])),
        "station_rmse_m": float((fitted - observed).pow(2).mean().sqrt()),
        "seconds_per_epoch": progress.seconds_per_epoch, "wall_seconds": time.perf_counter() - t_start,
    }
    log(f"Manning n, medians away from the jump: x < 60 km {metrics['manning_low_recovered_median']:.3g} (truth "
        f"{MANNING_LOW:g}), x > 60 km {metrics['manning_high_recovered_median']:.3g} (truth {MANNING_HIGH:g}); "
        f"misfit {first_misfit:.3g} -> {misfit:.3g} in {evaluations[0]} evaluations")
    if COMM.rank == 0:
        _plot(args.out, field.x, n, truth, observed.numpy(), fitted.numpy(), steps)
    model.destroy()
    finish(args.out, metrics, reduction=metrics["misfit_reduction"], target=args.target, comm=COMM)


def _plot(out, x, n, truth, observed, fitted, steps) -> None:
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    order = np.argsort(x)
    ax.semilogy(x[order] / 1e3, truth[order], "k-", label="truth")
    ax.semilogy(x[order] / 1e3, n[order], ".", label="recovered")
    ax.axhline(MANNING_LOW, color="grey", ls=":", lw=0.8)
    ax.set(xlabel="x (km)", ylabel="Manning n (s/m^1/3)", title="channel inversion: the Manning field")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "manning.png", dpi=120)
    fig, ax = plt.subplots(figsize=(6, 3))
    hours = (np.arange(steps) + 1) * DT / 3600
    for j, x0 in enumerate(STATIONS_X):
        ax.plot(hours, observed[:, j], "k-", lw=0.8)
        ax.plot(hours, fitted[:, j], "--", label=f"{x0 / 1e3:.0f} km")
    ax.set(xlabel="t (h)", ylabel="η (m)", title="stations: observed (black) and fitted")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "stations.png", dpi=120)


if __name__ == "__main__":
    main()
