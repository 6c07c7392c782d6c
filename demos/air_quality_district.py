"""Urban air quality over a real district: learn the streets' traffic emissions of Prague-Bubeneč
and the wind from street sensors, then forecast under a wind the training never saw.

The bundled district (20 building blocks from momepy's Prague-Bubeneč footprints, in a 350 m
circle) is ventilated by a steady Navier–Stokes wind with wakes (`dnf.models.SteadyWind`, an
eddy viscosity of 1 m²/s, 2 m/s), solved once per wind direction and cached in --out. A
pollutant is carried by the wind, mixed and slowly removed,

    ∂c/∂t + w·∇c - ∇·(K∇c) + k c = m(t) E(x),

by traffic on the 35 real streets, with a known traffic cycle m(t). The hidden truth's streets
emit other amounts than the inventory says (a factor per street, log-normal), and an
unreported source (a boiler house) adds a plume. The model learns a `StreetEmission`: each
street's inventory rate times a learned factor, plus a learned non-negative residual source,
so the emission can never go negative. With --learn-wind the wind is known only roughly (the
forecast says 1.7 m/s toward 7°; it blows at 2 m/s toward 17°), and its speed and direction
are learned too, through the steady Navier–Stokes solve's adjoint (each evaluation then
solves Navier–Stokes again: about 30 times the cost of an epoch without).
It learns from 24 sensors on the streets, by L-BFGS through the rollouts (one adjoint solve
per step, reusing the step's factorisation), from --starts starting points: the inventory and
random factors. What the sensors do not determine shows as a spread between the starts.

Then it forecasts the 8 held-out sensors under the training wind (in distribution) and all 32
sensors under a wind from the south-west, 60° away (out of distribution, a new wind solve),
and reports both errors next to the inventory's.

    mpirun -n 2 python demos/air_quality_district.py      # a few minutes on 2 cores
    python demos/air_quality_district.py --quick          # the tests' version

Writes to --out: metrics.json, loss.png, checkpoint_start*.pt, wind_*.npz (the wind cache).
"""

from __future__ import annotations

import math
import statistics
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
GUESS_ANGLE, GUESS_SPEED = math.radians(7.0), 1.7                       # the training wind as forecast
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
    """The district's mesh with INFLOW/OUTFLOW for one direction, its Navier–Stokes wind (cached
    in ``cache``) and a transport model on it; with ``learn``, the wind is the model's
    ``wind`` control and ``self.solver(inflow)`` gives it for a new inflow vector."""

    def __init__(self, base, angle: float, speed: float, dt: float, cache, learn: bool = False):
        direction = np.array([math.cos(angle), math.sin(angle)])
        self.data = wind_boundaries(base, direction)
        self.solver = SteadyWind(self.data, viscosity=EDDY_VISCOSITY, inflow="INFLOW", walls="BUILDINGS",
                                 velocity=speed * direction)
        self.wind = self.solver.solve(cache=cache / f"wind_{math.degrees(angle):.1f}deg_{speed:.2f}ms.npz")
        self.newton_iterations = self.solver.newton_iterations
        if not learn:
            self.solver.destroy()
        self.model = Transport(self.data, self.wind, dt=dt, diffusivity=DIFFUSIVITY, decay=DECAY,
                               dirichlet={"INFLOW": 0.0}, wind_control=learn)

    def series(self, field, steps: int, sensors, checkpoint_every=None, **controls) -> torch.Tensor:
        """Sensor series (steps, n_sensors) with emissions m(t) field(t)."""
        model = self.model
        _, local = model.simulate(steps, source=lambda k: traffic_cycle(model.time(k) - 0.5 * model.dt) * field,
                                  observe=lambda c, k: sensors.local(c), checkpoint_every=checkpoint_every,
                                  **controls)
        return dnf.parallel.sum(local, COMM)

    def destroy(self) -> None:
        self.model.destroy()
        if not self.solver.operator.destroyed:
            self.solver.destroy()


class WindGuess(torch.nn.Module):
    """A wind's speed and direction to learn, within a factor e^±0.5 of the forecast speed and
    ±25° of its direction (bounded, so that no line-search step asks Navier–Stokes for a gale):
    ``inflow = speed e^{0.5 tanh a} (cos φ, sin φ)``, ``φ = angle + 25° tanh b``."""

    def __init__(self, speed: float, angle: float):
        super().__init__()
        self.speed, self.angle = speed, angle
        self.a = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self) -> torch.Tensor:
        phi = self.angle + math.radians(25.0) * torch.tanh(self.b)
        return self.speed * torch.exp(0.5 * torch.tanh(self.a)) * torch.stack([torch.cos(phi), torch.sin(phi)])


def main() -> None:
    p = training_parser(__doc__.split("\n")[0], out="out/air_district", epochs=10, iterations=5, save_every=2,
                        target=1.5, checkpoint_every=None, quick="h = 20 m, dt = 10 s, 4 epochs, 2 starts")
    p.add_argument("--dt", type=float, default=5.0, help="s")
    p.add_argument("--train-time", type=float, default=300.0, help="s of sensor data to learn from")
    p.add_argument("--h", type=float, default=None, help="remesh the district with this size (m)")
    p.add_argument("--noise", type=float, default=0.01, help="sensor noise, fraction of the data's RMS")
    p.add_argument("--regularisation", type=float, default=1e-3, help="weight of mean(log factor²)")
    p.add_argument("--residual-scale", type=float, default=0.5, help="µg/m²/s: magnitude of the residual source")
    p.add_argument("--starts", type=int, default=3, help="starting points: the inventory, then random factors")
    p.add_argument("--learn-wind", action="store_true",
                   help="start from the forecast wind and learn its speed and direction with the emissions")
    args = p.parse_args()
    if args.quick:
        args.h = args.h or 20.0
        args.dt, args.epochs, args.train_time, args.starts = 10.0, min(args.epochs, 4), 200.0, min(args.starts, 2)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    footprints = load_district_footprints()
    base = (district_domain(footprints["buildings"], radius=footprints["radius"], h=args.h, h_near=args.h / 4,
                            comm=COMM) if args.h else load_district(COMM))
    steps = round(args.train_time / args.dt)
    cache = args.out
    truth_wind, test = (Wind(base, a, SPEED, args.dt, cache) for a in (TRAIN_ANGLE, TEST_ANGLE))
    guess = (GUESS_ANGLE, GUESS_SPEED) if args.learn_wind else (TRAIN_ANGLE, SPEED)
    train = Wind(base, guess[0], guess[1], args.dt, cache, learn=args.learn_wind)
    model = train.model
    n_dofs = model.V.dofmap.index_map.size_global
    log(f"district: {n_dofs} P1 dofs, {COMM.size} rank(s); winds solved in {truth_wind.newton_iterations}, "
        f"{test.newton_iterations} and {train.newton_iterations} Newton iterations; {steps} steps of {args.dt} s")

    streets = footprints["streets"]
    points = sensor_points(streets, footprints["radius"])
    n_train = (3 * len(points)) // 4
    # All winds' models live on one mesh with one P1 layout: one set of sensors and emission
    # fields serves them all (and the learned emission carries over to the new wind as it is).
    sensors = model.sensors(points)
    inventory = torch.linspace(0.5, 1.5, len(streets), dtype=torch.float64)            # µg/s/m
    factors = torch.exp(0.5 * torch.randn(len(streets), generator=torch.Generator().manual_seed(3),
                                          dtype=torch.float64))
    basis = street_sources(model.coordinates, streets, STREET_WIDTH)
    boiler = gaussian_source(model.coordinates, BOILER["centre"], BOILER["rate"], BOILER["width"])
    true_field, inventory_field = (inventory * factors) @ basis + boiler, inventory @ basis
    with torch.no_grad():
        truth = {w: w.series(true_field, steps, sensors) for w in (truth_wind, test)}
        prior_train = train.series(inventory_field, steps, sensors)        # the inventory in the forecast wind
        prior_test = test.series(inventory_field, steps, sensors)
        truth_min = min(w.model.minimum for w in (truth_wind, test))
        peak = float(max(truth[w].max() for w in (truth_wind, test)))
        noise = args.noise * truth[truth_wind].pow(2).mean().sqrt() * torch.randn(
            truth[truth_wind].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        observed = truth[truth_wind] + noise
    data_scale = float(observed[:, :n_train].pow(2).mean())

    def misfit(series: torch.Tensor) -> torch.Tensor:
        """The training sensors' mean squared misfit, relative to the data's."""
        return ((series[:, :n_train] - observed[:, :n_train]) ** 2).mean() / data_scale
    bounds = ((-footprints["radius"],) * 2, (footprints["radius"],) * 2)

    def learn(start: int) -> dict:
        """One start: the inventory (start 0) or random log-factors N(0, 0.5²)."""
        torch.manual_seed(100 + start)
        emission = StreetEmission(model.coordinates, basis, inventory, bounds, scale=args.residual_scale)
        if start:
            with torch.no_grad():
                emission.log_factors.normal_(0.0, 0.5)
        wind = WindGuess(*guess[::-1])
        modules = torch.nn.ModuleDict({"emission": emission, "wind": wind})
        dnf.parallel.broadcast_parameters(modules)
        params = list(emission.parameters()) + (list(wind.parameters()) if args.learn_wind else [])
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=args.iterations, history_size=20,
                                line_search_fn="strong_wolfe")
        ckpt = args.out / f"checkpoint_start{start}.pt"
        first, history, _ = resume(ckpt, enabled=args.resume, optimizer=opt, state={"modules": modules})

        def closure():
            opt.zero_grad()
            controls = {"wind": train.solver(wind())} if args.learn_wind else {}
            series = train.series(emission.field(), steps, sensors, checkpoint_every=args.checkpoint_every,
                                  **controls)
            loss = misfit(series) + args.regularisation * emission.log_factors.pow(2).mean()
            loss.backward()
            dnf.parallel.allreduce_gradients(params)
            return loss.detach()

        progress = fit(optimizer=opt, closure=closure, epochs=args.epochs, start=first, history=history,
                       checkpoint=ckpt, every=args.save_every, state={"modules": modules})
        with torch.no_grad():
            learned = emission.field()
            controls = {"wind": train.solver(wind())} if args.learn_wind else {}
            fitted = train.series(learned, steps, sensors, **controls)
            lowest_trained = model.minimum
            inflow = wind().detach()
        return {"start": start, "history": history, "loss": float(misfit(fitted)), "learned": learned,
                "log_factors": emission.log_factors.detach().clone(), "fitted": fitted,
                "lowest_concentration": lowest_trained, "speed": float(inflow.norm()),
                "angle_deg": math.degrees(math.atan2(float(inflow[1]), float(inflow[0]))),
                "seconds_per_epoch": progress.seconds_per_epoch}

    runs = [learn(start) for start in range(args.starts)]
    best = min(runs, key=lambda r: r["loss"])

    # -- forecasts: held-out sensors under the training wind; every sensor under the new wind ----
    held_out = slice(n_train, None)
    with torch.no_grad():
        for run in runs:
            run["lowest_emission"] = COMM.allreduce(float(run["learned"].min()), op=MPI.MIN)
            run["rmse_in"] = rmse(run["fitted"][:, held_out], truth[truth_wind][:, held_out])
            run["rmse_out"] = rmse(test.series(run["learned"], steps, sensors), truth[test])
            run["lowest_concentration_new_wind"] = test.model.minimum
    in_prior = rmse(prior_train[:, held_out], truth[truth_wind][:, held_out])
    out_prior = rmse(prior_test, truth[test])
    true_log = torch.log(factors)
    errors = torch.stack([(r["log_factors"] - true_log).abs() for r in runs])           # (starts, streets)
    spread = torch.stack([r["log_factors"] for r in runs]).std(dim=0) if len(runs) > 1 else torch.zeros(len(streets))
    identified = (errors[runs.index(best)] < 0.2) & (spread < 0.1)
    # how strongly each street reaches the training sensors: the series are linear in the
    # street rates, so a street's response is one rollout of its inventory emission alone
    with torch.no_grad():
        response = torch.stack([truth_wind.series(inventory[i] * basis[i], steps, sensors)[:, :n_train].norm()
                                for i in range(len(streets))])
    seen = response > 0.05 * response.max()
    in_trained, out_trained = best["rmse_in"], best["rmse_out"]
    log(f"best of {len(runs)} starts (start {best['start']}): held-out sensors, training wind: RMSE {in_prior:.4g} "
        f"(inventory, forecast wind) -> {in_trained:.4g}, {in_prior / max(in_trained, 1e-30):.1f}x; every sensor, "
        f"the new wind: {out_prior:.4g} -> {out_trained:.4g}, {out_prior / max(out_trained, 1e-30):.1f}x; wind "
        f"{best['speed']:.3f} m/s toward {best['angle_deg']:.2f}° (truth {SPEED} m/s, "
        f"{math.degrees(TRAIN_ANGLE):.1f}°); streets' factors identified (error < 0.2, spread < 0.1): "
        f"{int(identified[seen].sum())} of the {int(seen.sum())} the sensors see (response > 5 % of the largest), "
        f"{int(identified[~seen].sum())} of the other {int((~seen).sum())}")
    plot_loss(args.out / "loss.png", best["history"], "air quality over Bubeneč: training loss", COMM)
    per_start = [{k: r[k] for k in ("start", "loss", "rmse_in", "rmse_out", "speed", "angle_deg",
                                    "lowest_emission", "lowest_concentration", "lowest_concentration_new_wind")}
                 | {"mean_abs_log_factor_error": float(errors[i].mean())} for i, r in enumerate(runs)]
    metrics = {
        "ranks": COMM.size, "dofs": n_dofs, "steps": steps, "dt_s": args.dt, "epochs": args.epochs,
        "lbfgs_iterations_per_epoch": args.iterations, "train_sensors": n_train,
        "test_sensors": len(points) - n_train, "streets": len(streets), "starts": len(runs),
        "learn_wind": args.learn_wind, "train_wind_deg": math.degrees(TRAIN_ANGLE),
        "test_wind_deg": math.degrees(TEST_ANGLE), "wind_speed_true": SPEED,
        "wind_guess": {"speed": guess[1], "angle_deg": math.degrees(guess[0])},
        "wind_learned": {"speed": best["speed"], "angle_deg": best["angle_deg"]},
        "in_distribution_rmse_inventory": in_prior, "in_distribution_rmse_trained": in_trained,
        "in_distribution_rmse_reduction": in_prior / max(in_trained, 1e-30),
        "out_of_distribution_rmse_inventory": out_prior, "out_of_distribution_rmse_trained": out_trained,
        "out_of_distribution_rmse_reduction": out_prior / max(out_trained, 1e-30),
        "mean_abs_log_factor_error_inventory": float(true_log.abs().mean()),
        "mean_abs_log_factor_error_learned": float(errors[runs.index(best)].mean()),
        "log_factor_spread_between_starts": float(spread.mean()),
        "streets_identified": int(identified.sum()),
        "streets_seen": int(seen.sum()), "streets_seen_identified": int(identified[seen].sum()),
        "streets_unseen_identified": int(identified[~seen].sum()),
        "lowest_learned_emission": min(r["lowest_emission"] for r in runs),
        "peak_concentration_truth": peak, "lowest_concentration_truth": truth_min,
        "lowest_concentration_trained": min(min(r["lowest_concentration"], r["lowest_concentration_new_wind"])
                                            for r in runs),
        "per_start": per_start,
        "seconds_per_epoch": statistics.median(r["seconds_per_epoch"] for r in runs),
        "wall_seconds": time.perf_counter() - t_start,
        "final_loss": best["history"][-1]["loss"] if best["history"] else None,
    }
    for w in (truth_wind, test, train):
        w.destroy()
    finish(args.out, metrics, reduction=metrics["in_distribution_rmse_reduction"], target=args.target, comm=COMM)


if __name__ == "__main__":
    main()
