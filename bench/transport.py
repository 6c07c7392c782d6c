"""Cost of the urban air-quality transport rollout on the bundled city block: time per step,
the price of the gradient w.r.t. a neural emission field, point sensors, factorisations.

    python bench/transport.py [--steps 100] [--repeats 3] [--json PATH]
    mpirun -n 2 python bench/transport.py
    python bench/transport.py --quick          # smoke check: 20 steps, 1 repeat

The model: ``meshes/city.msh`` (P1, SUPG, Crank–Nicolson, dt = 5 s, K = 1 m²/s, k = 1e-4 /s,
c = 0 on the inflow; MUMPS LU, factorised once), wind = potential flow at 2 m/s around the
buildings. Emission = ``NeuralEmission`` (12 x 8 RBF centres, two hidden layers of 32, non-zero
output layer) over a prior of four traffic lines along the streets and one Gaussian point
source, times a smooth time profile; it is evaluated at ``(k + θ) dt`` in every step. 20 point
sensors in the streets observe every step (``sensors.local`` per step, one ``parallel.sum`` of
the series); the loss is the sum of squared misfits to the prior-only series.

* step           median wall time of a rollout without gradients (emission, step, sensors,
                 loss), per step; and with the autograd graph kept (CPU time alongside)
* gradient       (forward with graph + backward) / forward with graph, without checkpoints
                 and with blocks of 20 steps; and against the forward without graph. The
                 backward is w.r.t. the NeuralEmission weights, ``allreduce_gradients`` included
* factorisations ``_assemble_operator`` calls of the step operator (each one is a new MUMPS
                 factorisation): in the model's first rollout, in a gradient rollout with
                 checkpoints after the operator's values are forgotten, in all timed rollouts
* hoisted        the same rollouts with the network evaluated once per rollout and scaled by
                 the profile in each step (the same emission values), against per-step evaluation
* emission       one evaluation of the emission field (MLP on all nodes) against the step
* breakdown      one residual assembly (the SUPG form) and one MUMPS solve against the step
* sensors        ``sensors.local(c)`` per call (median over 1000 calls) against the step time,
                 building ``PointSensors`` once, the final ``parallel.sum`` of the series;
                 for 20 and 200 sensors, and the rollout with 200 sensors against 20

The rollout variants are timed in interleaved rounds (each round runs each variant once) and
ratios are medians of per-round ratios, so that other jobs on the machine hit them alike.
``--threads`` sets torch's threads per rank (default 1: on 2 cores, spare torch threads spin
against the other rank or job and slowed the whole step more than tenfold in trials).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from _common import COMM, log, timed, timed_rounds  # bench/ is on sys.path when a script there runs
from mpi4py import MPI

import dolfinx.fem.petsc
import numpy as np
import torch

import deepnum_fem as dnf
from deepnum_fem.geometry import CITY_BUILDINGS
from deepnum_fem.io import load_city
from deepnum_fem.models.transport import NeuralEmission, Transport, gaussian_source, line_source, potential_flow
from deepnum_fem.sensors import PointSensors

LENGTH, WIDTH = 400.0, 240.0
DT, THETA = 5.0, 0.5
#: Traffic lines ``(start, end, rate µg/s/m)``: the canyon along the wind, the two cross streets,
#: the open road south of the blocks.
TRAFFIC = (((0.0, 122.0), (400.0, 122.0), 1.0), ((168.0, 0.0), (168.0, 240.0), 0.6),
           ((250.0, 0.0), (250.0, 240.0), 0.6), ((0.0, 30.0), (400.0, 30.0), 0.8))
#: A point source (centre, rate µg/s, width m): a car park upwind of the blocks.
POINT_SOURCE = ((60.0, 180.0), 50.0, 10.0)
#: 20 sensors: 10 along the canyon, 2 in each cross street, 3 on the roads south and north.
SENSORS = np.array([[x, 122.0] for x in (20, 60, 110, 140, 170, 200, 250, 290, 340, 380)]
                   + [[168.0, 85.0], [168.0, 160.0], [250.0, 85.0], [250.0, 160.0]]
                   + [[x, 30.0] for x in (130, 210, 290)] + [[x, 210.0] for x in (120, 210, 290)], dtype=float)


def in_air(points: np.ndarray, margin: float = 2.0) -> np.ndarray:
    """Whether each point lies in the domain and at least ``margin`` m from every building."""
    x, y = points[:, 0], points[:, 1]
    ok = (x > margin) & (x < LENGTH - margin) & (y > margin) & (y < WIDTH - margin)
    for x0, y0, x1, y1 in CITY_BUILDINGS:
        ok &= ~((x > x0 - margin) & (x < x1 + margin) & (y > y0 - margin) & (y < y1 + margin))
    return ok


def street_points(n: int, seed: int = 0) -> np.ndarray:
    """``n`` random points in the air (the same on every rank)."""
    rng = np.random.default_rng(seed)
    points = np.empty((0, 2))
    while len(points) < n:
        candidates = rng.uniform((0.0, 0.0), (LENGTH, WIDTH), size=(2 * n, 2))
        points = np.concatenate([points, candidates[in_air(candidates)]])
    return points[:n]


def profile(t: float) -> float:
    """Smooth traffic factor: a 10-minute cycle around 1."""
    return 1.0 + 0.3 * math.sin(2 * math.pi * t / 600.0)


class Setup:
    """The city model, its emission, 20 sensors and the target series."""

    def __init__(self, steps: int):
        data = load_city(COMM)
        wind = potential_flow(data, inflow="INFLOW", outflow="OUTFLOW", speed=2.0)
        self.model = Transport(data, wind, dt=DT, diffusivity=1.0, decay=1e-4, dirichlet={"INFLOW": 0.0},
                               theta=THETA)
        x = self.model.coordinates
        prior = sum(line_source(x, a, b, rate, 4.0) for a, b, rate in TRAFFIC)
        prior = prior + gaussian_source(x, POINT_SOURCE[0], POINT_SOURCE[1], POINT_SOURCE[2])
        torch.manual_seed(0)    # the same network for any number of ranks (and rank 0's everywhere)
        self.emission = NeuralEmission(x, ((0.0, 0.0), (LENGTH, WIDTH)), centres=(12, 8), hidden=32,
                                       prior=prior, profile=profile, scale=0.05)
        dnf.parallel.broadcast_parameters(self.emission)
        assert in_air(SENSORS).all(), SENSORS[~in_air(SENSORS)]
        self.sensors = PointSensors(self.model.V, SENSORS)
        self.rollouts = 0
        with torch.no_grad():   # observations: the prior alone (the output layer is still zero)
            self.target = self.series(steps, None)
            self.emission.net[-1].weight.normal_(0.0, 0.3)
            self.emission.net[-1].bias.fill_(0.01)
        dnf.parallel.broadcast_parameters(self.emission)

    @property
    def assemblies(self) -> int:
        """The step operator's assemblies so far (each one is a new MUMPS factorisation)."""
        return self.model.operator.counts.assemblies

    def series(self, steps: int, every: int | None, sensors: PointSensors | None = None, *,
               hoist: bool = False) -> torch.Tensor:
        """Sensor series of a rollout. ``hoist``: evaluate the network once per rollout and
        scale it by the profile in every step (the same values: the profile is a scalar factor)."""
        sensors = sensors or self.sensors
        self.rollouts += 1
        field = self.emission.field() if hoist else None

        def sources(k: int) -> torch.Tensor:
            t = (k + THETA) * DT
            return self.emission(t) if field is None else profile(t) * field

        _, local = self.model.simulate(steps, source=sources, observe=lambda c, k: sensors.local(c),
                                       checkpoint_every=every)
        return dnf.parallel.sum(local, COMM)

    def loss(self, steps: int, every: int | None, *, hoist: bool = False) -> torch.Tensor:
        series = self.series(steps, every, hoist=hoist)
        return ((series - self.target[:steps]) ** 2).sum()

    def gradient(self, steps: int, every: int | None, *, hoist: bool = False) -> torch.Tensor:
        self.emission.zero_grad(set_to_none=True)
        loss = self.loss(steps, every, hoist=hoist)
        loss.backward()
        dnf.parallel.allreduce_gradients(self.emission)
        return loss


def per_call(fn, calls: int, repeats: int) -> float:
    """Median (over ``repeats``) of the slowest rank's time of ``calls`` calls of ``fn``, per call."""
    return timed(lambda: [fn() for _ in range(calls)], repeats) / calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="smoke check: 20 steps, 1 repeat")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads per rank (default 1: one per core with 2 ranks on 2 cores; "
                        "spare threads spin against a busy core and make the emission MLP erratic)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.repeats = 20, 1
    steps, repeats = args.steps, args.repeats

    s = Setup(steps)
    model = s.model
    assert s.rollouts == 1
    dofs = model.V.dofmap.index_map.size_global
    n_params = sum(q.numel() for q in s.emission.parameters())
    owned = (COMM.allreduce(model.n, op=MPI.MIN), COMM.allreduce(model.n, op=MPI.MAX))
    log(f"transport  city mesh {dofs} P1 dofs ({owned[0]}-{owned[1]} owned per rank), ranks={COMM.size}, "
        f"{steps} steps of {model.dt} s (theta={model.theta}, SUPG, MUMPS LU), {len(SENSORS)} sensors, NeuralEmission "
        f"{n_params} weights, torch threads {torch.get_num_threads()}/rank")

    # factorisations: the target rollout (Setup) was the model's first; then one gradient rollout
    # with checkpoints (forward, recomputation, adjoint) after forgetting the operator's values
    first = s.assemblies
    s.model.operator.problem.forget_operator()   # as if w, K, k or dt had changed
    s.gradient(steps, 20)
    per_gradient_rollout = s.assemblies - first
    s.gradient(5, None)          # one-time buffers of the graph path
    base, s.rollouts = s.assemblies, 0
    with torch.no_grad():
        s.loss(steps, None)

    def forward_nograd(hoist=False, sensors=None):
        with torch.no_grad():
            if sensors is None:
                s.loss(steps, None, hoist=hoist)
            else:
                s.series(steps, None, sensors)

    many = PointSensors(model.V, street_points(200))
    wall, cpu = timed_rounds({
        "nograd": forward_nograd,
        "graph": lambda: s.loss(steps, None),
        "gradient": lambda: s.gradient(steps, None),
        "graph_ckpt": lambda: s.loss(steps, 20),
        "gradient_ckpt": lambda: s.gradient(steps, 20),
        "hoisted_nograd": lambda: forward_nograd(hoist=True),
        "hoisted_graph": lambda: s.loss(steps, None, hoist=True),
        "hoisted_gradient": lambda: s.gradient(steps, None, hoist=True),
        "nograd_200_sensors": lambda: forward_nograd(sensors=many),
    }, repeats)
    loss = float(s.gradient(steps, None).detach())
    grad_norm = math.sqrt(sum(float((q.grad ** 2).sum()) for q in s.emission.parameters()))
    spread = max(dnf.parallel.spread_between_ranks(q.grad, COMM) for q in s.emission.parameters())
    later, later_rollouts = s.assemblies - base, s.rollouts

    def ms(name: str, times=wall) -> float:
        return 1e3 * statistics.median(times[name]) / steps

    def ratio(a: str, b: str) -> float:
        """Median over the rounds of the ratio of ``a`` to ``b`` (timed in the same round)."""
        return statistics.median(x / y for x, y in zip(wall[a], wall[b], strict=True))

    step_ms = ms("nograd")
    log(f"step       {step_ms:7.3f} ms/step no graph (CPU {ms('nograd', cpu):.3f}), {ms('graph'):7.3f} ms/step "
        f"with graph (CPU {ms('graph', cpu):.3f}), {ms('graph_ckpt'):7.3f} ms/step with graph in blocks of 20")
    log(f"gradient   (forward + gradient) / forward = {ratio('gradient', 'graph'):.2f} without checkpoints, "
        f"{ratio('gradient_ckpt', 'graph_ckpt'):.2f} with blocks of 20 steps (one more forward); vs the forward "
        f"without graph: {ratio('gradient', 'nograd'):.2f} / {ratio('gradient_ckpt', 'nograd'):.2f}  "
        f"(loss {loss:.6e}, |grad| {grad_norm:.6e}, spread between ranks {spread:.1e})")
    log(f"factorise  {first} assembly + factorisation in the model's first rollout; {per_gradient_rollout} in a "
        f"gradient rollout with checkpoints (forward, recomputation, adjoint) after a change of operator; "
        f"{later} in the {later_rollouts} timed rollouts (same operator: all reuse it)")
    log(f"hoisted    network once per rollout, not per step: {ms('hoisted_nograd'):7.3f} ms/step no graph "
        f"({ratio('hoisted_nograd', 'nograd'):.2f} x), forward + gradient "
        f"{ratio('hoisted_gradient', 'gradient'):.2f} x; "
        f"(forward + gradient) / forward = {ratio('hoisted_gradient', 'hoisted_graph'):.2f}")

    # emission: the MLP on every node, once per step
    t_emission = per_call(lambda: s.emission(0.0), 50, repeats)
    with torch.no_grad():
        t_emission_nograd = per_call(lambda: s.emission(0.0), 50, repeats)
    log(f"emission   {1e3 * t_emission_nograd:7.3f} ms/call no graph ({100 * 1e3 * t_emission_nograd / step_ms:.0f}% "
        f"of the step), {1e3 * t_emission:7.3f} ms/call with graph")

    # where a step's time goes: the residual assembly (SUPG form) and the MUMPS triangular solves
    problem = model.operator.problem
    t_residual = per_call(lambda: dolfinx.fem.petsc.assemble_vector(problem.b, problem.F), 20, repeats)
    t_solve = per_call(lambda: problem.ksp.solve(problem.b, problem.x), 20, repeats)
    log(f"breakdown  residual assembly {1e3 * t_residual:7.3f} ms ({100 * 1e3 * t_residual / step_ms:.0f}% of the "
        f"step), LU solve {1e3 * t_solve:7.3f} ms ({100 * 1e3 * t_solve / step_ms:.0f}%), emission "
        f"{100 * 1e3 * t_emission_nograd / step_ms:.0f}%")

    # sensors
    with torch.no_grad():
        c, _ = model.simulate(steps, source=lambda k: s.emission((k + THETA) * DT))
    c_graph = c.clone().requires_grad_(True)
    sensor_results = {}
    for n_points in (len(SENSORS), 200):
        points = SENSORS if n_points == len(SENSORS) else street_points(n_points)
        assert in_air(points).all()
        t_build = timed(lambda pts=points: PointSensors(model.V, pts), repeats)
        sensors = PointSensors(model.V, points)
        with torch.no_grad():
            t_local = per_call(lambda sn=sensors: sn.local(c), 1000, repeats)
        t_local_graph = per_call(lambda sn=sensors: sn.local(c_graph), 1000, repeats)
        stacked = torch.stack([sensors.local(c) for _ in range(steps)]).detach()
        t_sum = per_call(lambda st=stacked: dnf.parallel.sum(st, COMM), 20, repeats)
        check = sensors(c)
        sensor_results[n_points] = {
            "build_ms": 1e3 * t_build, "local_us": 1e6 * t_local, "local_graph_us": 1e6 * t_local_graph,
            "local_fraction_of_step": 1e3 * t_local / step_ms, "sum_series_ms": 1e3 * t_sum,
            "max_value": float(check.max())}
        log(f"sensors    {n_points:4d} points: build {1e3 * t_build:7.2f} ms once, local {1e6 * t_local:6.1f} us/step "
            f"no graph ({100 * 1e3 * t_local / step_ms:.2f}% of the step), {1e6 * t_local_graph:6.1f} us with "
            f"graph; parallel.sum of the ({steps}, {n_points}) series {1e3 * t_sum:.3f} ms once")
    log(f"sensors    rollout without graph with 200 sensors / with 20: {ratio('nograd_200_sensors', 'nograd'):.3f}")

    result = {"dofs": dofs, "owned_dofs_min_max": owned, "ranks": COMM.size, "steps": steps, "dt": model.dt,
              "theta": model.theta,
              "solver": "MUMPS LU", "sensors": len(SENSORS), "emission_weights": n_params,
              "ms_per_step_nograd": step_ms, "ms_per_step_graph": ms("graph"),
              "ms_per_step_graph_checkpointed": ms("graph_ckpt"),
              "cpu_ms_per_step_nograd": ms("nograd", cpu), "cpu_ms_per_step_graph": ms("graph", cpu),
              "gradient_ratio": ratio("gradient", "graph"),
              "gradient_ratio_checkpointed": ratio("gradient_ckpt", "graph_ckpt"),
              "gradient_ratio_vs_nograd": ratio("gradient", "nograd"),
              "gradient_ratio_checkpointed_vs_nograd": ratio("gradient_ckpt", "nograd"),
              "emission_ms_nograd": 1e3 * t_emission_nograd, "emission_ms_graph": 1e3 * t_emission,
              "hoisted_ms_per_step_nograd": ms("hoisted_nograd"), "hoisted_vs_per_step_nograd":
              ratio("hoisted_nograd", "nograd"), "hoisted_vs_per_step_gradient": ratio("hoisted_gradient", "gradient"),
              "hoisted_gradient_ratio": ratio("hoisted_gradient", "hoisted_graph"),
              "rollout_200_vs_20_sensors": ratio("nograd_200_sensors", "nograd"),
              "loss": loss, "gradient_norm": grad_norm, "wall_s": wall, "cpu_s": cpu,
              "residual_assembly_ms": 1e3 * t_residual, "lu_solve_ms": 1e3 * t_solve, "torch_threads": args.threads,
              "factorisations_first_rollout": first, "factorisations_gradient_rollout": per_gradient_rollout,
              "factorisations_later": later,
              "later_rollouts": later_rollouts,
              "sensor_cost": {str(k): v for k, v in sensor_results.items()}}
    if args.json and COMM.rank == 0:
        args.json.write_text(json.dumps(result, indent=2))
    log(json.dumps(result))
    assert math.isfinite(grad_norm) and grad_norm > 0


if __name__ == "__main__":
    main()
