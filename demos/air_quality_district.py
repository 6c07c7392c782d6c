"""Urban air quality over a real district: learn the streets' traffic emissions of Prague-Bubeneč
from street sensors, then forecast under a wind the training never saw.

The bundled district (20 building blocks from momepy's Prague-Bubeneč footprints, in a 350 m
circle) is ventilated by a steady Navier–Stokes wind with wakes (`dnf.models.SteadyWind`, an
eddy viscosity of 1 m²/s, 2 m/s), solved once per wind direction. A pollutant is carried by
the wind, mixed and slowly removed,

    ∂c/∂t + w·∇c - ∇·(K∇c) + k c = m(t) E(x),

by traffic on the 35 real streets, with a known traffic cycle m(t). The hidden truth's streets
emit other amounts than the inventory says (a factor per street, log-normal), and an
unreported source (a boiler house) adds a plume. The model learns a `StreetEmission`: each
street's inventory rate times a learned factor, plus a learned non-negative residual source,
so the emission can never go negative. It learns from 24 sensors on the streets under a
westerly wind (from 17° north of west), by L-BFGS through the rollouts (one adjoint solve per
step, reusing the step's factorisation).

Then it forecasts the 8 held-out sensors under the training wind (in distribution) and all 32
sensors under a wind from the south-west, 60° away (out of distribution, a new wind solve),
and reports both errors next to the inventory's.

    mpirun -n 2 python demos/air_quality_district.py      # under a minute on 2 cores
    python demos/air_quality_district.py --quick          # the tests' version

Writes to --out: metrics.json, loss.png, checkpoint.pt.
"""

from __future__ import annotations

import math
import time

from _common import COMM, log, training_parser  # demos/ is on sys.path when a script there runs
from mpi4py import MPI

import numpy as np
import torch

import deepnum_fem as dnf
from deepnum_fem.geometry import district_domain, wind_boundaries
from deepnum_fem.io import load_district, load_district_footprints
from deepnum_fem.models import SteadyWind, StreetEmission, Transport, gaussian_source, street_sources
from deepnum_fem.training import finish, fit, plot_loss, resume, rmse

SPEED, EDDY_VISCOSITY, DIFFUSIVITY, DECAY = 2.0, 1.0, 1.0, 1e-4      # m/s, m²/s, m²/s, 1/s
TRAIN_ANGLE, TEST_ANGLE = math.radians(17.0), math.radians(77.0)       # directions the wind blows toward
PERIOD, STREET_WIDTH = 600.0, 4.0                                       # s, m
BOILER = {"centre": (95.0, 60.0), "rate": 150.0, "width": 6.0}         # unreported, µg/s


def traffic_cycle(t: float) -> float:
    """The known time factor m(t) over the 600 s cycle."""
    return 1.0 - 0.5 * math.cos(2 * math.pi * t / PERIOD)


def sensor_points(streets, radius: float) -> np.ndarray:
    """32 points in the street space, at street vertices at least 40 m inside the domain's
    circle: the one nearest each street's middle, then more along the longest streets."""
    inner = [s[np.linalg.norm(s, axis=1) < radius - 40.0] for s in streets]
    inner = [s for s in inner if len(s)]
    points = [s[len(s) // 2] for s in inner]
    for s in sorted(inner, key=len, reverse=True):
        points += [s[len(s) // 4], s[(3 * len(s)) // 4]] if len(s) >= 4 else []
    unique = np.unique(np.round(np.array(points), 2), axis=0)
    return unique[np.random.default_rng(0).permutation(len(unique))][:32]


class Wind:
    """The district's mesh with INFLOW/OUTFLOW for one direction, its Navier–Stokes wind and a
    transport model on it."""

    def __init__(self, base, angle: float, dt: float):
        direction = np.array([math.cos(angle), math.sin(angle)])
        self.data = wind_boundaries(base, direction)
        solver = SteadyWind(self.data, viscosity=EDDY_VISCOSITY, inflow="INFLOW", walls="BUILDINGS",
                            velocity=SPEED * direction)
        self.wind = solver.solve()
        self.newton_iterations = solver.newton_iterations
        solver.destroy()
        self.model = Transport(self.data, self.wind, dt=dt, diffusivity=DIFFUSIVITY, decay=DECAY,
                               dirichlet={"INFLOW": 0.0})

    def series(self, field, steps: int, sensors, checkpoint_every=None) -> torch.Tensor:
        """Sensor series (steps, n_sensors) with emissions m(t) field(t)."""
        model = self.model
        _, local = model.simulate(steps, source=lambda k: traffic_cycle(model.time(k) - 0.5 * model.dt) * field,
                                  observe=lambda c, k: sensors.local(c), checkpoint_every=checkpoint_every)
        return dnf.parallel.sum(local, COMM)


def main() -> None:
    p = training_parser(__doc__.split("\n")[0], out="out/air_district", epochs=10, iterations=5, save_every=2,
                        target=1.5, checkpoint_every=None, quick="h = 20 m, dt = 10 s, 4 epochs")
    p.add_argument("--dt", type=float, default=5.0, help="s")
    p.add_argument("--train-time", type=float, default=300.0, help="s of sensor data to learn from")
    p.add_argument("--h", type=float, default=None, help="remesh the district with this size (m)")
    p.add_argument("--noise", type=float, default=0.01, help="sensor noise, fraction of the data's RMS")
    p.add_argument("--regularisation", type=float, default=1e-3, help="weight of mean(log factor²)")
    p.add_argument("--residual-scale", type=float, default=0.5, help="µg/m²/s: magnitude of the residual source")
    args = p.parse_args()
    if args.quick:
        args.h = args.h or 20.0
        args.dt, args.epochs, args.train_time = 10.0, min(args.epochs, 4), 200.0
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    footprints = load_district_footprints()
    base = (district_domain(footprints["buildings"], radius=footprints["radius"], h=args.h, h_near=args.h / 4,
                            comm=COMM) if args.h else load_district(COMM))
    steps = round(args.train_time / args.dt)
    train, test = Wind(base, TRAIN_ANGLE, args.dt), Wind(base, TEST_ANGLE, args.dt)
    model = train.model
    n_dofs = model.V.dofmap.index_map.size_global
    log(f"district: {n_dofs} P1 dofs, {COMM.size} rank(s); winds solved in {train.newton_iterations} and "
        f"{test.newton_iterations} Newton iterations; {steps} steps of {args.dt} s")

    streets = footprints["streets"]
    points = sensor_points(streets, footprints["radius"])
    n_train = (3 * len(points)) // 4
    # Both winds' models live on one mesh with one P1 layout: one set of sensors and emission
    # fields serves both (and the learned emission carries over to the new wind as it is).
    sensors = model.sensors(points)
    inventory = torch.linspace(0.5, 1.5, len(streets), dtype=torch.float64)            # µg/s/m
    factors = torch.exp(0.5 * torch.randn(len(streets), generator=torch.Generator().manual_seed(3),
                                          dtype=torch.float64))
    basis = street_sources(model.coordinates, streets, STREET_WIDTH)
    boiler = gaussian_source(model.coordinates, BOILER["centre"], BOILER["rate"], BOILER["width"])
    true_field, inventory_field = (inventory * factors) @ basis + boiler, inventory @ basis
    with torch.no_grad():
        truth = {w: w.series(true_field, steps, sensors) for w in (train, test)}
        prior = {w: w.series(inventory_field, steps, sensors) for w in (train, test)}
        truth_min = {w: w.model.minimum for w in (train, test)}
        noise = args.noise * truth[train].pow(2).mean().sqrt() * torch.randn(
            truth[train].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        observed = truth[train] + noise
    data_scale = float(observed[:, :n_train].pow(2).mean())

    bounds = ((-footprints["radius"],) * 2, (footprints["radius"],) * 2)
    emission = StreetEmission(model.coordinates, basis, inventory, bounds,
                              scale=args.residual_scale)
    dnf.parallel.broadcast_parameters(emission)
    params = list(emission.parameters())
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=args.iterations, history_size=20, line_search_fn="strong_wolfe")
    ckpt = args.out / "checkpoint.pt"
    start, history, _ = resume(ckpt, enabled=args.resume, optimizer=opt, state={"emission": emission})

    def closure():
        opt.zero_grad()
        series = train.series(emission.field(), steps, sensors, checkpoint_every=args.checkpoint_every)
        misfit = ((series[:, :n_train] - observed[:, :n_train]) ** 2).mean() / data_scale
        loss = misfit + args.regularisation * emission.log_factors.pow(2).mean()
        loss.backward()
        dnf.parallel.allreduce_gradients(params)
        return loss.detach()

    progress = fit(optimizer=opt, closure=closure, epochs=args.epochs, start=start, history=history,
                   checkpoint=ckpt, every=args.save_every, state={"emission": emission})

    # -- forecasts: held-out sensors under the training wind; every sensor under the new wind ----
    with torch.no_grad():
        learned = emission.field()
        lowest_emission = COMM.allreduce(float(learned.min()), op=MPI.MIN)
        trained_train = train.series(learned, steps, sensors)
        trained_test = test.series(learned, steps, sensors)
    held_out = slice(n_train, None)
    in_prior, in_trained = (rmse(s[:, held_out], truth[train][:, held_out]) for s in (prior[train], trained_train))
    out_prior, out_trained = rmse(prior[test], truth[test]), rmse(trained_test, truth[test])
    true_log = torch.log(factors)
    factor_error = float((emission.log_factors.detach() - true_log).abs().mean())
    log(f"held-out sensors, training wind: RMSE {in_prior:.4g} (inventory) -> {in_trained:.4g} (trained), "
        f"{in_prior / max(in_trained, 1e-30):.1f}x; every sensor, the new wind: {out_prior:.4g} -> {out_trained:.4g}, "
        f"{out_prior / max(out_trained, 1e-30):.1f}x")
    plot_loss(args.out / "loss.png", history, "air quality over Bubeneč: training loss", COMM)
    metrics = {
        "ranks": COMM.size, "dofs": n_dofs, "steps": steps, "dt_s": args.dt, "epochs": args.epochs,
        "lbfgs_iterations_per_epoch": args.iterations, "train_sensors": n_train,
        "test_sensors": len(points) - n_train, "streets": len(streets),
        "train_wind_deg": math.degrees(TRAIN_ANGLE), "test_wind_deg": math.degrees(TEST_ANGLE),
        "in_distribution_rmse_inventory": in_prior, "in_distribution_rmse_trained": in_trained,
        "in_distribution_rmse_reduction": in_prior / max(in_trained, 1e-30),
        "out_of_distribution_rmse_inventory": out_prior, "out_of_distribution_rmse_trained": out_trained,
        "out_of_distribution_rmse_reduction": out_prior / max(out_trained, 1e-30),
        "mean_abs_log_factor_error_inventory": float(true_log.abs().mean()),
        "mean_abs_log_factor_error_learned": factor_error,
        "lowest_learned_emission": lowest_emission,
        "lowest_concentration_truth": min(truth_min.values()), "lowest_concentration_trained": model.minimum,
        "seconds_per_epoch": progress.seconds_per_epoch, "wall_seconds": time.perf_counter() - t_start,
        "final_loss": history[-1]["loss"] if history else None,
    }
    for w in (train, test):
        w.model.destroy()
    finish(args.out, metrics, reduction=metrics["in_distribution_rmse_reduction"], target=args.target, comm=COMM)


if __name__ == "__main__":
    main()
