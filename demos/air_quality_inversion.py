"""Urban air quality: learn where a city's pollution comes from, from a few street sensors.

A 2D city block (the bundled gmsh mesh: six buildings, street canyons) is ventilated by a
2 m/s westerly, computed once as potential flow around the buildings. A pollutant is carried
by the wind, mixed by eddy diffusion and slowly removed,

    ∂c/∂t + w·∇c - ∇·(K∇c) + k c = m(t) E(x),

from traffic on four streets and the avenue, with a known traffic cycle m(t). A hidden "true"
city generates the sensor data: its streets emit other amounts than the official inventory
says, and an unreported point source (a generator behind the southern blocks) adds a plume.
The model starts from the inventory and learns a neural correction of the emission field,

    E_θ(x) = E_inventory(x) + N_θ(x),    N_θ: an MLP on radial-basis features of x,

from 20 sensors over the first 400 s, by L-BFGS through the whole SUPG/Crank–Nicolson rollout
(one adjoint solve per step, reusing the step's LU factorisation). It then forecasts: the
concentrations at 5 sensors it never saw, over the whole 600 s, and at all sensors in the
200 s after the training window.

    mpirun -n 2 python demos/air_quality_inversion.py       # ~2 min on 2 cores
    python demos/air_quality_inversion.py --quick           # the tests' version
    python demos/air_quality_inversion.py --resume          # continue from out/air/checkpoint.pt

Writes to --out: metrics.json, wind.png, emissions.png (true / inventory / learned),
concentration.png (true and learned snapshots), sensors.png (series at held-out sensors:
truth, inventory, trained), loss.png, c.xdmf (the trained model's forecast), checkpoint.pt.
"""

from __future__ import annotations

import math
import time

from _common import COMM, log, training_parser  # demos/ is on sys.path when a script there runs

import dolfinx.fem
import numpy as np
import torch
import ufl

import deepnum_fem as dnf
from deepnum_fem.geometry import CITY_BUILDINGS, city_blocks
from deepnum_fem.io import load_city
from deepnum_fem.models.transport import NeuralEmission, Transport, gaussian_source, line_source, potential_flow
from deepnum_fem.sensors import PointSensors
from deepnum_fem.training import finish, fit, plot_loss, resume, rmse

WIND, DIFFUSIVITY, DECAY = 2.0, 1.0, 1e-4          # m/s, m²/s, 1/s
PERIOD = 600.0                                      # s, the traffic cycle m(t)
LINE_WIDTH = 4.0                                    # m, spread of a street's emissions
# streets: (start, end) in metres, and their emission (µg/s per metre of street)
STREETS = {"ring road": ((70, 15), (70, 225)), "avenue": ((40, 122), (385, 122)),
           "west street": ((172, 15), (172, 225)), "east street": ((247, 15), (247, 225))}
INVENTORY = {"ring road": 1.0, "avenue": 2.0, "west street": 1.0, "east street": 1.0}
TRUE_RATES = {"ring road": 1.0, "avenue": 3.0, "west street": 0.5, "east street": 2.0}
GENERATOR = {"centre": (212.0, 35.0), "rate": 120.0, "width": 6.0}   # unreported, µg/s
TRAIN_SENSORS = np.array([[130, 122], [205, 122], [290, 122], [350, 122], [172, 40], [172, 85],
                          [172, 160], [172, 200], [247, 40], [247, 85], [247, 160], [247, 200],
                          [365, 40], [365, 90], [365, 160], [365, 210], [130, 30], [300, 30],
                          [290, 200], [110, 205]], dtype=np.float64)
TEST_SENSORS = np.array([[250, 122], [390, 60], [390, 122], [390, 190], [330, 20]], dtype=np.float64)


def traffic_cycle(t: float) -> float:
    """The known time factor m(t): traffic rising and easing over the 600 s cycle."""
    return 1.0 - 0.5 * math.cos(2 * math.pi * t / PERIOD)


def emission_field(points: np.ndarray, rates: dict, generator: dict | None) -> torch.Tensor:
    """E(x) at ``points`` (µg/m²/s): street lines with ``rates``, plus the generator if given."""
    field = sum(line_source(points, *STREETS[name], rate, LINE_WIDTH) for name, rate in rates.items())
    if generator is not None:
        field = field + gaussian_source(points, generator["centre"], generator["rate"], generator["width"])
    return field


def simulate(model: Transport, field: torch.Tensor, steps: int, sensors: PointSensors,
             checkpoint_every: int | None = None, keep_every: int = 0):
    """Roll out ``steps`` steps with emissions ``m(t) field``; return the (steps, n_sensors) series
    and the kept frames of c."""
    frames = []

    def observe(c, k):
        if keep_every and (k + 1) % keep_every == 0:
            frames.append(((k + 1) * model.dt, c.detach().clone()))
        return sensors.local(c)

    _, local = model.simulate(steps, source=lambda k: traffic_cycle((k + 0.5) * model.dt) * field,
                              observe=observe, checkpoint_every=checkpoint_every)
    return dnf.parallel.sum(local, COMM), frames


def main() -> None:
    p = training_parser(__doc__.split("\n")[0], out="out/air", epochs=15, iterations=5, save_every=3, target=5.0,
                        checkpoint_every=None, quick="h = 12 m, dt = 10 s, 8 epochs")
    p.add_argument("--dt", type=float, default=5.0, help="s")
    p.add_argument("--train-time", type=float, default=400.0, help="s of sensor data to learn from")
    p.add_argument("--forecast-time", type=float, default=200.0, help="s forecast after the data")
    p.add_argument("--h", type=float, default=None, help="generate the city with this size (m) "
                   "instead of loading the bundled mesh")
    p.add_argument("--noise", type=float, default=0.01, help="sensor noise, fraction of the data's RMS")
    p.add_argument("--regularisation", type=float, default=1e-3, help="weight of mean(N_θ²) / scale²")
    p.add_argument("--smoothness", type=float, default=0.0,
                   help="weight of ∫|∇N_θ|² dx / (scale² area): favours smooth corrections")
    args = p.parse_args()
    if args.quick:
        args.h = args.h or 12.0
        args.dt, args.epochs = 10.0, min(args.epochs, 8)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    # -- city, wind, model -------------------------------------------------------------------
    data = city_blocks(args.h, comm=COMM) if args.h else load_city(COMM)
    mesh = data.mesh
    wind = potential_flow(data, inflow="INFLOW", outflow="OUTFLOW", speed=WIND)
    model = Transport(data, wind, dt=args.dt, diffusivity=DIFFUSIVITY, decay=DECAY, dirichlet={"INFLOW": 0.0})
    train_steps = round(args.train_time / args.dt)
    steps = train_steps + round(args.forecast_time / args.dt)
    n_dofs = model.V.dofmap.index_map.size_global
    log(f"city: {n_dofs} P1 dofs, {mesh.topology.index_map(2).size_global} triangles, {COMM.size} rank(s); "
        f"{steps} steps of {args.dt} s, learning from the first {train_steps}")
    sensors = PointSensors(model.V, np.concatenate([TRAIN_SENSORS, TEST_SENSORS]))
    n_train = len(TRAIN_SENSORS)

    # -- synthetic observations from the hidden truth ---------------------------------------
    x = model.coordinates
    true_field = emission_field(x, TRUE_RATES, GENERATOR)
    inventory = emission_field(x, INVENTORY, None)
    with torch.no_grad():
        truth, truth_frames = simulate(model, true_field, steps, sensors, keep_every=steps // 3)
        truth_min = model.minimum
        generator = torch.Generator().manual_seed(1)   # the same noise on every rank
        noise = args.noise * truth.pow(2).mean().sqrt() * torch.randn(truth.shape, generator=generator,
                                                                       dtype=torch.float64)
        observed = truth + noise
        prior, _ = simulate(model, inventory, steps, sensors)
    data_scale = float(observed[:train_steps, :n_train].pow(2).mean())

    emission = NeuralEmission(x, ((0.0, 0.0), (400.0, 240.0)), centres=(20, 12), hidden=32,
                              prior=inventory, scale=0.05)
    dnf.parallel.broadcast_parameters(emission)
    params = list(emission.parameters())
    # L-BFGS: a deterministic, smooth objective, identical on every rank: every rank takes the
    # same steps.
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=args.iterations, history_size=20,
                            line_search_fn="strong_wolfe")
    ckpt = args.out / "checkpoint.pt"
    start, history, _ = resume(ckpt, enabled=args.resume, optimizer=opt, state={"emission": emission})

    n_nodes = dnf.parallel.sum(torch.tensor(float(model.n), dtype=torch.float64))
    area = float(model.mass(torch.ones(model.n, dtype=torch.float64)))
    correction_fn = dolfinx.fem.Function(model.V)
    roughness = dnf.functional(ufl.inner(ufl.grad(correction_fn), ufl.grad(correction_fn)) * ufl.dx,
                               inputs=[correction_fn])

    def closure():
        opt.zero_grad()
        series, _ = simulate(model, emission.field(), train_steps, sensors, checkpoint_every=args.checkpoint_every)
        misfit = ((series[:, :n_train] - observed[:train_steps, :n_train]) ** 2).mean() / data_scale
        correction = emission.correction() / emission.scale
        loss = misfit + args.regularisation * dnf.parallel.sum(correction.pow(2).sum()) / n_nodes
        if args.smoothness:
            loss = loss + args.smoothness * roughness(correction) / area
        loss.backward()
        dnf.parallel.allreduce_gradients(params)
        return loss.detach()

    progress = fit(optimizer=opt, closure=closure, epochs=args.epochs, start=start, history=history,
                   checkpoint=ckpt, every=args.save_every, state={"emission": emission})

    # -- forecast and metrics ------------------------------------------------------------------
    with torch.no_grad():
        learned_field = emission.field()
        trained, frames = simulate(model, learned_field, steps, sensors, keep_every=steps // 3)
    test = slice(n_train, None)
    later = slice(train_steps, None)
    rmse_prior, rmse_trained = rmse(prior[:, test], truth[:, test]), rmse(trained[:, test], truth[:, test])
    reduction = rmse_prior / max(rmse_trained, 1e-30)
    forecast_prior = rmse(prior[later], truth[later])
    forecast_trained = rmse(trained[later], truth[later])
    field_error = lambda f: math.sqrt(float(model.mass((f - true_field) ** 2) / model.mass(true_field**2)))  # noqa: E731
    log(f"held-out sensors, 0-{steps * args.dt:.0f} s: RMSE {rmse_prior:.4g} (inventory) -> {rmse_trained:.4g} "
        f"(trained), {reduction:.1f}x; all sensors after the training window: {forecast_prior:.4g} -> "
        f"{forecast_trained:.4g}")

    model.write_xdmf(args.out / "c.xdmf", frames)
    plot_loss(args.out / "loss.png", history, "air quality: training loss", COMM)
    _figures(args, model, wind, {"true": true_field, "inventory": inventory, "learned": learned_field},
             {"truth": truth_frames, "trained": frames}, (truth, prior, trained), n_train, history)

    metrics = {
        "ranks": COMM.size, "dofs": n_dofs, "steps": steps, "train_steps": train_steps, "dt_s": args.dt,
        "epochs": args.epochs, "lbfgs_iterations_per_epoch": args.iterations,
        "train_sensors": n_train, "test_sensors": len(TEST_SENSORS),
        "test_rmse_inventory": rmse_prior, "test_rmse_trained": rmse_trained, "test_rmse_reduction": reduction,
        "forecast_rmse_inventory": forecast_prior, "forecast_rmse_trained": forecast_trained,
        "forecast_rmse_reduction": forecast_prior / max(forecast_trained, 1e-30),
        "train_rmse_trained": rmse(trained[:train_steps, :n_train], truth[:train_steps, :n_train]),
        "emission_relative_l2_error_inventory": field_error(inventory),
        "emission_relative_l2_error_learned": field_error(learned_field),
        "total_emission_true": float(model.mass(true_field)),
        "total_emission_learned": float(model.mass(learned_field)),
        "min_concentration_truth": truth_min, "min_concentration_trained": model.minimum,
        "seconds_per_epoch": progress.seconds_per_epoch, "wall_seconds": time.perf_counter() - t_start,
        "final_loss": history[-1]["loss"] if history else None,
    }
    finish(args.out, metrics, reduction=reduction, target=args.target, comm=COMM)


def _figures(args, model, wind, fields, frames, series, n_train, history) -> None:
    """wind.png, emissions.png, concentration.png, sensors.png, loss.png (rank 0 draws)."""
    from deepnum_fem.viz import gather_grid
    arrays = {f"E {k}": v.detach().numpy() for k, v in fields.items()}
    for name, kept in frames.items():
        arrays.update({f"c {name} {i}": c.numpy() for i, (_, c) in enumerate(kept)})
    arrays.update(_wind_at_nodes(model, wind))
    grid = gather_grid(model.V, arrays)
    if COMM.rank != 0:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.tri as mtri
    import pyvista
    from matplotlib.patches import Rectangle

    x = np.asarray(grid.points)[:, :2]
    tri = mtri.Triangulation(x[:, 0], x[:, 1], grid.cells_dict[pyvista.CellType.TRIANGLE])
    gathered = {k: grid.point_data[f"E {k}"] for k in fields}
    snaps = {name: [(t, grid.point_data[f"c {name} {i}"]) for i, (t, _) in enumerate(kept)]
             for name, kept in frames.items()}
    w_nodes = np.column_stack([grid.point_data["wind x"], grid.point_data["wind y"]])

    def city(ax):
        for x0, y0, x1, y1 in CITY_BUILDINGS:
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, color="0.35"))
        ax.set_aspect("equal")
        ax.set_xlim(0, 400)
        ax.set_ylim(0, 240)

    fig, ax = plt.subplots(figsize=(7, 4.4))
    speed = np.linalg.norm(w_nodes, axis=1)
    im = ax.tricontourf(tri, speed, levels=20, cmap="viridis")
    step = max(len(x) // 600, 1)
    ax.quiver(x[::step, 0], x[::step, 1], w_nodes[::step, 0], w_nodes[::step, 1], color="w", scale=60)
    city(ax)
    ax.plot(*TRAIN_SENSORS.T, "o", ms=4, color="tab:orange", label="training sensors")
    ax.plot(*TEST_SENSORS.T, "s", ms=4, color="tab:red", label="held-out sensors")
    ax.legend(loc="lower right", fontsize=7)
    fig.colorbar(im, ax=ax, label="wind speed (m/s)")
    ax.set_title("potential-flow wind around the blocks")
    fig.tight_layout()
    fig.savefig(args.out / "wind.png", dpi=120)
    plt.close(fig)

    vmax = max(float(f.max()) for f in gathered.values())
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for ax, (name, f) in zip(axes, gathered.items(), strict=True):
        im = ax.tricontourf(tri, f, levels=np.linspace(min(0.0, float(f.min())), vmax, 21), cmap="magma")
        city(ax)
        ax.set_title(f"{name} emissions")
    fig.colorbar(im, ax=axes, label="µg/m²/s")
    fig.savefig(args.out / "emissions.png", dpi=110)
    plt.close(fig)

    n = len(snaps["truth"])
    fig, axes = plt.subplots(2, n, figsize=(4.6 * n, 6))
    cmax = max(float(c.max()) for v in snaps.values() for _, c in v)
    for row, name in enumerate(("truth", "trained")):
        for col, (t, c) in enumerate(snaps[name]):
            ax = axes[row, col]
            ax.tricontourf(tri, c, levels=np.linspace(0, cmax, 21), cmap="inferno", extend="both")
            city(ax)
            ax.set_title(f"{name}, t = {t:.0f} s", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out / "concentration.png", dpi=100)
    plt.close(fig)

    truth, prior, trained = (s.numpy() for s in series)
    t = model.dt * np.arange(1, len(truth) + 1)
    fig, axes = plt.subplots(1, len(TEST_SENSORS), figsize=(3.2 * len(TEST_SENSORS), 3), sharey=True)
    for i, ax in enumerate(axes):
        j = n_train + i
        ax.plot(t, truth[:, j], "k", label="truth")
        ax.plot(t, prior[:, j], "--", color="tab:blue", label="inventory")
        ax.plot(t, trained[:, j], color="tab:red", label="trained")
        ax.axvline(args.train_time, color="0.6", lw=0.8)
        ax.set_title(f"held-out sensor at {tuple(int(v) for v in TEST_SENSORS[i])}", fontsize=8)
        ax.set_xlabel("t (s)")
    axes[0].set_ylabel("c (µg/m³)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "sensors.png", dpi=110)
    plt.close(fig)



def _wind_at_nodes(model: Transport, wind) -> dict[str, np.ndarray]:
    """The wind's components interpolated to the P1 nodes (owned dofs)."""
    import dolfinx.fem
    f = dolfinx.fem.Function(model.V)
    out = {}
    for i, axis in enumerate("xy"):
        f.interpolate(dolfinx.fem.Expression(wind[i], model.V.element.interpolation_points))
        out[f"wind {axis}"] = f.x.array[: model.n].copy()
    return out


if __name__ == "__main__":
    main()
