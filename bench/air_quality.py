"""Cost of the Prague-Bubeneč air-quality transport at size: step time, the price of the
gradient, memory of a long checkpointed gradient, iterative solvers and a wrong solver option.

    python bench/air_quality.py [--h 2] [--h-near 1] [--steps 1000] [--timing-steps 100] [--json PATH]
    mpirun -n 2 python bench/air_quality.py
    python bench/air_quality.py --quick        # smoke check: h = 20 m, 40 steps, 1 repeat

The model is that of ``demos/air_quality_district.py``: the bundled district remeshed with
``district_domain(h, h_near)`` (the defaults give about 103,000 P1 dofs), the training wind
(2 m/s from 17° north of west) from ``SteadyWind`` (Navier–Stokes, P2–P1, ν = 1 m²/s,
MUMPS Newton) or, with ``--wind potential``, potential flow; ``Transport`` (P1, SUPG,
Crank–Nicolson, dt = 5 s, K = 1 m²/s, k = 1e-4 /s, c = 0 on the inflow; MUMPS LU factorised
once); a ``StreetEmission`` over the 35 streets (log-factors and a residual network),
evaluated once per rollout and scaled by the traffic cycle in each step; a sensor at the
middle of each street; the loss is the mean squared misfit to a truth with other street factors.

* mesh       P1 dofs, cells, ranks
* wind       the wind solve: its Newton iterations and time
* step       median time per step of a rollout without graph, with graph, with graph in
             checkpoint blocks; one factorisation (a step after the operator is forgotten, less a step)
* gradient   (forward with graph + backward) / forward with graph, the backward w.r.t. the
             emission's parameters, without and with checkpoints; also against the forward
             without graph
* memory     peak resident memory per rank (the kernel's high-water mark VmHWM, reset before,
             less VmRSS at the start, after returning freed heap to the system): everything the
             process touches (autograd's saved tensors, torch, PETSc, MUMPS) while a checkpointed
             gradient of --steps steps runs, against a gradient without checkpoints of
             --plain-steps steps (and that figure scaled to --steps)
* iterative  the same rollout with GMRES and GAMG (PETSc's defaults; settings for nonsymmetric
             operators) or block-Jacobi ILU(0), ksp_rtol 1e-10: time per step (and against
             MUMPS's, in the same rounds), Krylov iterations per step, and the relative
             difference of the final state, the sensor series and the gradient from MUMPS's
             (computed, not asserted; expected below AGREE); or the error of an option that fails
* bad option a user's option that does not solve (preonly + Jacobi; GMRES without a
             preconditioner stopped at 3 iterations): the step raises the library's SolverError
             on every rank instead of returning numbers

The 1 → 2 rank speed-up is the ratio of two runs' figures (``bench/record.py`` records both;
the docs table computes it). Timed variants run in interleaved rounds, ratios are medians of
per-round ratios. ``--threads``: torch threads per rank (default 1, as in bench/transport.py).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

from _common import COMM, log, peak_rss_mib, timed, timed_rounds  # bench/ is on sys.path when a script there runs
from mpi4py import MPI
from petsc4py import PETSc

import numpy as np
import torch

import deepnum_fem as dnf
from deepnum_fem.geometry import district_domain, wind_boundaries
from deepnum_fem.io import load_district_footprints
from deepnum_fem.models import SteadyWind, StreetEmission, Transport, street_sources
from deepnum_fem.models.transport import potential_flow

SPEED, EDDY_VISCOSITY, DIFFUSIVITY, DECAY, DT = 2.0, 1.0, 1.0, 1e-4, 5.0
ANGLE, PERIOD, STREET_WIDTH = math.radians(17.0), 600.0, 4.0
#: Iterative options compared with MUMPS (ksp_rtol 1e-10, at most 500 iterations); AGREE: the
#: relative difference from MUMPS expected below. GAMG's defaults assume a symmetric operator;
#: the second set is for nonsymmetric ones: a symmetrised graph and ILU(0) smoothing (SOR, PETSc's
#: usual advice, has no transpose for a nonsymmetric matrix, which the adjoint solve needs).
ITERATIVE = {
    "GMRES + GAMG, PETSc's defaults": {"pc_type": "gamg"},
    "GMRES + GAMG, nonsymmetric settings": {"pc_type": "gamg", "pc_gamg_sym_graph": True,
                                            "mg_levels_ksp_type": "richardson", "mg_levels_pc_type": "bjacobi",
                                            "mg_levels_sub_pc_type": "ilu"},
    "GMRES + block-Jacobi ILU(0)": {"pc_type": "bjacobi", "sub_pc_type": "ilu"},
}
KRYLOV = {"ksp_type": "gmres", "ksp_rtol": 1e-10, "ksp_max_it": 500}
AGREE = 1e-6
#: User options that do not solve: each must raise on every rank.
BAD = {
    "preonly + jacobi": {"ksp_type": "preonly", "pc_type": "jacobi"},
    "gmres, no preconditioner, ksp_max_it 3": {"ksp_type": "gmres", "pc_type": "none", "ksp_max_it": 3},
}


def traffic_cycle(t: float) -> float:
    return 1.0 - 0.5 * math.cos(2 * math.pi * t / PERIOD)


def street_sensors(streets, radius: float) -> np.ndarray:
    """The vertex nearest the middle of each street, of those at least 40 m inside the circle."""
    inner = [s[np.linalg.norm(s, axis=1) < radius - 40.0] for s in streets]
    return np.unique(np.array([s[len(s) // 2] for s in inner if len(s)]), axis=0)


class Case:
    """A transport model on the district's wind; its rollouts keep the Krylov iterations of each step."""

    def __init__(self, data, wind, petsc_options=None):
        self.model = Transport(data, wind, dt=DT, diffusivity=DIFFUSIVITY, decay=DECAY, dirichlet={"INFLOW": 0.0},
                               petsc_options=petsc_options)
        self.iterations: list[int] = []

    def series(self, field: torch.Tensor, steps: int, sensors, every: int | None = None) -> torch.Tensor:
        model, ksp = self.model, self.model.operator.solver
        self.iterations = []

        def observe(c, k):
            self.iterations.append(ksp.getIterationNumber())
            return sensors.local(c)

        self.final, local = model.simulate(steps, source=lambda k: traffic_cycle(model.time(k) - 0.5 * DT) * field,
                                           observe=observe, checkpoint_every=every)
        return dnf.parallel.sum(local, COMM)


def rel(a: torch.Tensor, b: torch.Tensor, *, local: bool = False) -> float:
    """``‖a - b‖ / ‖b‖`` (2-norms; over all ranks for rank-local tensors)."""
    num, den = float(((a - b) ** 2).sum()), float((b**2).sum())
    if local:
        num, den = COMM.allreduce(num), COMM.allreduce(den)
    return math.sqrt(num / den) if den > 0 else math.sqrt(num)


def main() -> None:
    t_start = time.perf_counter()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--h", type=float, default=2.0, help="mesh size away from the buildings, m (default 2)")
    p.add_argument("--h-near", type=float, default=None, help="mesh size at the walls, m (default h / 2)")
    p.add_argument("--wind", choices=("ns", "potential"), default="ns",
                   help="ns: steady Navier-Stokes (the demo's); potential: potential flow, far cheaper")
    p.add_argument("--steps", type=int, default=1000,
                   help="steps of the checkpointed gradient whose memory is measured")
    p.add_argument("--plain-steps", type=int, default=None,
                   help="steps of the gradient without checkpoints whose memory is measured (default steps / 5)")
    p.add_argument("--timing-steps", type=int, default=100, help="steps of the timed rollouts")
    p.add_argument("--checkpoint-every", type=int, default=25)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="smoke check: h = 20 m, 40 steps, 1 repeat")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per rank (default 1)")
    args = p.parse_args()
    if args.quick:
        args.h, args.steps, args.timing_steps, args.checkpoint_every, args.repeats = 20.0, 40, 20, 10, 1
    h_near = args.h_near or args.h / 2
    plain_steps = args.plain_steps or max(1, args.steps // 5)
    steps, every, repeats = args.timing_steps, args.checkpoint_every, args.repeats
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    # -- mesh and wind -----------------------------------------------------------------------
    footprints = load_district_footprints()
    t0 = time.perf_counter()
    base = district_domain(footprints["buildings"], radius=footprints["radius"], h=args.h, h_near=h_near, comm=COMM)
    t_mesh = COMM.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    direction = np.array([math.cos(ANGLE), math.sin(ANGLE)])
    data = wind_boundaries(base, direction)
    COMM.Barrier()
    t0 = time.perf_counter()
    if args.wind == "ns":
        solver = SteadyWind(data, viscosity=EDDY_VISCOSITY, inflow="INFLOW", walls="BUILDINGS",
                            velocity=SPEED * direction)
        wind = solver.solve()
        newton = solver.newton_iterations
        wind_dofs = solver.W.dofmap.index_map.size_global * solver.W.dofmap.index_map_bs
        solver.destroy()
    else:
        wind, newton = potential_flow(data, inflow="INFLOW", outflow="OUTFLOW", speed=SPEED), 0
        wind_dofs = None
    t_wind = COMM.allreduce(time.perf_counter() - t0, op=MPI.MAX)

    lu = Case(data, wind)
    model = lu.model
    dofs = model.V.dofmap.index_map.size_global
    cells = data.mesh.topology.index_map(2).size_global
    owned = (COMM.allreduce(model.n, op=MPI.MIN), COMM.allreduce(model.n, op=MPI.MAX))
    streets = footprints["streets"]
    points = street_sensors(streets, footprints["radius"])
    sensors = model.sensors(points)
    inventory = torch.linspace(0.5, 1.5, len(streets), dtype=torch.float64)
    factors = torch.exp(0.5 * torch.randn(len(streets), generator=torch.Generator().manual_seed(3),
                                          dtype=torch.float64))
    basis = street_sources(model.coordinates, streets, STREET_WIDTH)
    bounds = ((-footprints["radius"],) * 2, (footprints["radius"],) * 2)
    emission = StreetEmission(model.coordinates, basis, inventory, bounds, scale=0.5)
    dnf.parallel.broadcast_parameters(emission)
    params = list(emission.parameters())
    n_params = sum(q.numel() for q in params)
    log(f"mesh       district h = {args.h} m, {h_near} m at the walls: {dofs} P1 dofs ({owned[0]}-{owned[1]} owned "
        f"per rank), {cells} cells, ranks={COMM.size}; meshing {t_mesh:.1f} s; {len(points)} sensors, "
        f"StreetEmission {n_params} parameters, torch threads {torch.get_num_threads()}/rank")
    wind_what = (f"steady Navier-Stokes P2-P1 ({wind_dofs} dofs), {newton} Newton iterations (MUMPS) over the "
                 "continuation" if args.wind == "ns" else "potential flow (--wind potential: no wakes)")
    log(f"wind       {wind_what}: {t_wind:.1f} s")

    longest = max(steps, args.steps, plain_steps)
    with torch.no_grad():
        target = lu.series((inventory * factors) @ basis, longest, sensors)
    scale = float(target.pow(2).mean())

    def loss(case: Case, n: int, every_: int | None = None, sensors_=None) -> torch.Tensor:
        series = case.series(emission.field(), n, sensors_ or sensors, every_)
        return ((series - target[:n]) ** 2).mean() / scale

    def gradient(case: Case, n: int, every_: int | None = None, sensors_=None) -> torch.Tensor:
        emission.zero_grad(set_to_none=True)
        value = loss(case, n, every_, sensors_)
        value.backward()
        dnf.parallel.allreduce_gradients(params)
        return value.detach()

    def flat_grad() -> torch.Tensor:
        return torch.cat([q.grad.reshape(-1) for q in params]).clone()

    gradient(lu, 2, 1)   # one-time buffers of the graph and checkpoint paths

    # -- memory (first, before the timed rollouts grow the heap) ----------------------------
    state_mib = COMM.allreduce(model.n, op=MPI.MAX) * 8 / 2**20
    mem_ckpt = peak_rss_mib(lambda: gradient(lu, args.steps, every))
    mem_plain = peak_rss_mib(lambda: gradient(lu, plain_steps, None))
    if mem_ckpt is None:
        log("memory     not measured (needs Linux's /proc/self/clear_refs)")
    else:
        log(f"memory     peak RSS growth per rank (largest rank) over forward + backward: {mem_ckpt:.1f} MiB for "
            f"{args.steps} steps in checkpoint blocks of {every}; {mem_plain:.1f} MiB for {plain_steps} steps without "
            f"checkpoints (x {args.steps / plain_steps:g} = {mem_plain * args.steps / plain_steps:.0f} MiB for "
            f"{args.steps}); one state {state_mib:.2f} MiB")

    # -- step time and the gradient's price ---------------------------------------------------
    def nograd():
        with torch.no_grad():
            loss(lu, steps)

    wall, cpu = timed_rounds({
        "nograd": nograd,
        "graph": lambda: loss(lu, steps),
        "gradient": lambda: gradient(lu, steps),
        "graph_ckpt": lambda: loss(lu, steps, every),
        "gradient_ckpt": lambda: gradient(lu, steps, every),
    }, repeats)
    value = float(gradient(lu, steps))
    g_lu, final_lu = flat_grad(), lu.final.detach().clone()
    with torch.no_grad():
        series_lu = lu.series(emission.field(), steps, sensors)
    grad_norm = float(g_lu.norm())
    spread = dnf.parallel.spread_between_ranks(g_lu, COMM)

    def ms(name: str, times=wall) -> float:
        return 1e3 * statistics.median(times[name]) / steps

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(wall[a], wall[b], strict=True))

    c0 = model.zeros()
    source = emission.field().detach()

    def one_step():
        with torch.no_grad():
            model.step(c0, 0, source=source)

    t_step = timed(one_step, repeats)
    t_cold = timed(lambda: (model.operator.problem.forget_operator(), one_step()), repeats)
    step_ms = ms("nograd")
    log(f"step       {step_ms:8.3f} ms/step no graph (CPU {ms('nograd', cpu):.3f}), {ms('graph'):8.3f} with graph, "
        f"{ms('graph_ckpt'):8.3f} with graph in blocks of {every} ({steps} steps, MUMPS LU); one factorisation "
        f"{t_cold - t_step:.3f} s")
    log(f"gradient   (forward + gradient) / forward = {ratio('gradient', 'graph'):.2f} without checkpoints, "
        f"{ratio('gradient_ckpt', 'graph_ckpt'):.2f} in blocks of {every}; vs the forward without graph "
        f"{ratio('gradient', 'nograd'):.2f} / {ratio('gradient_ckpt', 'nograd'):.2f} (loss {value:.6e}, "
        f"|grad| {grad_norm:.6e}, spread between ranks {spread:.1e})")

    # -- iterative solvers: time, iterations, agreement with MUMPS --------------------------
    iterative = []
    for name, options in ITERATIVE.items():
        case = Case(data, wind, {**KRYLOV, **options})
        s = case.model.sensors(points)

        def forward(case=case, s=s):
            with torch.no_grad():
                return case.series(emission.field(), steps, s)

        row = {"name": name, "options": {**KRYLOV, **options}}
        try:
            series = forward()
            its = list(case.iterations)
            times, _ = timed_rounds({"mumps": nograd, "forward": forward,
                                     "gradient": lambda case=case, s=s: gradient(case, steps, None, s)}, repeats)
        except (dnf.SolverError, PETSc.Error) as e:   # both raised on every rank together
            row["error"] = f"{type(e).__name__}: {e}"
            log(f"iterative  {name:36s} fails on every rank: {row['error'][:200]}")
        else:
            per_round = {name: statistics.median(a / b for a, b in zip(times[name], times[of], strict=True))
                         for name, of in (("forward", "mumps"), ("gradient", "forward"))}
            row.update({"ms_per_step_nograd": 1e3 * statistics.median(times["forward"]) / steps,
                        "vs_mumps": per_round["forward"], "gradient_vs_nograd": per_round["gradient"],
                        "iterations_mean": statistics.mean(its), "iterations_max": max(its),
                        "rel_diff_state": rel(case.final.detach(), final_lu, local=True),
                        "rel_diff_series": rel(series, series_lu), "rel_diff_gradient": rel(flat_grad(), g_lu)})
            row["agrees"] = max(row["rel_diff_state"], row["rel_diff_series"], row["rel_diff_gradient"]) < AGREE
            log(f"iterative  {name:36s} {row['ms_per_step_nograd']:8.3f} ms/step "
                f"({row['vs_mumps']:.2f} x MUMPS), {row['iterations_mean']:.1f} iterations/step "
                f"(max {row['iterations_max']}), forward + gradient / forward without graph "
                f"{row['gradient_vs_nograd']:.2f}; relative difference from MUMPS: state {row['rel_diff_state']:.1e}, "
                f"series {row['rel_diff_series']:.1e}, gradient {row['rel_diff_gradient']:.1e} "
                f"({'below' if row['agrees'] else 'NOT below'} {AGREE:g})")
        iterative.append(row)
        case.model.destroy()

    # -- a user's option that does not solve: an error on every rank, no numbers ------------
    bad = []
    for name, options in BAD.items():
        case = Case(data, wind, options)
        try:
            with torch.no_grad():
                case.model.step(c0, 0, source=source)
            raised = None
        except Exception as e:   # what any rank got, reported below
            raised = (type(e).__name__, str(e))
        everyone = COMM.allgather(raised)
        kinds = sorted({r[0] for r in everyone if r is not None})
        count = sum(r is not None for r in everyone)
        message = raised[1] if raised else ""
        bad.append({"name": name, "options": options, "raised": kinds, "ranks_raised": count,
                    "message": message})
        log(f"bad option {name:38s} {'/'.join(kinds) or 'NOTHING'} on {count}/{COMM.size} ranks: {message[:160]}")
        case.model.destroy()

    wall_s = COMM.allreduce(time.perf_counter() - t_start, op=MPI.MAX)
    log(f"total      {wall_s:.0f} s")
    result = {
        "dofs": dofs, "cells": cells, "owned_dofs_min_max": owned, "ranks": COMM.size, "h": args.h, "h_near": h_near,
        "wind": args.wind, "wind_dofs": wind_dofs, "wind_newton_iterations": newton, "wind_s": t_wind,
        "mesh_s": t_mesh, "sensors": len(points), "emission_parameters": n_params, "dt": DT,
        "solver": "MUMPS LU", "torch_threads": args.threads, "timing_steps": steps, "checkpoint_every": every,
        "ms_per_step_nograd": step_ms, "ms_per_step_graph": ms("graph"),
        "ms_per_step_graph_checkpointed": ms("graph_ckpt"), "cpu_ms_per_step_nograd": ms("nograd", cpu),
        "gradient_s": statistics.median(wall["gradient"]), "factorisation_s": t_cold - t_step,
        "gradient_ratio": ratio("gradient", "graph"),
        "gradient_ratio_checkpointed": ratio("gradient_ckpt", "graph_ckpt"),
        "gradient_ratio_vs_nograd": ratio("gradient", "nograd"),
        "gradient_ratio_checkpointed_vs_nograd": ratio("gradient_ckpt", "nograd"),
        "memory": {"measures": "peak RSS growth (VmHWM - VmRSS at the start), MiB, largest rank",
                   "checkpointed_steps": args.steps, "checkpointed_mib": mem_ckpt,
                   "plain_steps": plain_steps, "plain_mib": mem_plain, "state_mib": state_mib},
        "iterative": iterative, "agree_below": AGREE, "bad_options": bad,
        "loss": value, "gradient_norm": grad_norm, "wall_s": wall, "cpu_s": cpu, "total_s": wall_s,
    }
    if args.json and COMM.rank == 0:
        args.json.write_text(json.dumps(result, indent=2))
    log(json.dumps(result))
    assert math.isfinite(grad_norm) and grad_norm > 0


if __name__ == "__main__":
    main()
