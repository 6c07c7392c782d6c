"""Cost of the nonlinear shallow-water model on the real Rade de Brest at >= 100,000 P2–P1 dofs:
step time and Newton iterations with MUMPS and with an iterative fieldsplit, the price of a
drag gradient, the memory of a long checkpointed gradient, and a size sweep of the solvers.

    python bench/coastal_bay.py [--h 380 --h-coast 95] [--steps 10] [--repeats 3] [--json PATH]
    mpirun -n 2 python bench/coastal_bay.py
    mpirun -n 2 python bench/coastal_bay.py --sweep       # and the solvers at several mesh sizes
    python bench/coastal_bay.py --quick                   # smoke check: 12,662 dofs, 4 steps, < 1 min

The bay is ``dnf.io.load_brest_bay_outline()`` meshed by ``coastal_domain(h=--h,
h_coast=--h-coast)`` (the defaults, 380 m offshore and 95 m at the coast, give 11,900 vertices and
100,984 P2–P1 dofs), the depth ``shore_bathymetry`` (2 m at the shore, 40 m offshore, length
1.5 km; a model, not a survey) on P1, ``ShallowWater`` with Taylor–Hood P2–P1, θ = 0.6,
dt = --dt (300 s), f = 1.1e-4 /s, ν = --viscosity (50 m²/s), wetting and drying (α = 1 m),
quadratic drag c_d = 0.0025 as a DG0 field (one value per cell: the control of the gradient),
and a spring tide at the open sea, M2 2.05 m + S2 0.75 m in phase. The rollouts start at
t0 = 0, high water at the mouth (2.80 m), at rest with the bay at that level (from η = 0 under
a 2.8 m open-sea elevation the first Newton solve diverges). Six gauges (the approach, the Goulet,
off Brest, three in the Rade) observe η each step; the loss is the mean squared
departure of their series from the open-sea tide (how the bay distorts it), so no target
rollout is needed.

Measured at the main size (``--h``, ``--h-coast``), each rollout of ``--steps`` steps:

* solvers    MUMPS LU (the default), ``ShallowWater.fieldsplit_options(schur="learned")``
             (GMRES + Schur fieldsplit, the learned TwoLevel on the elevation's Schur block) and
             the tuned fieldsplit (TUNED): time per step without graph (median of --repeats,
             slowest rank; CPU time too), Newton iterations per step and GMRES iterations per
             Newton iteration (mean, max, read from SNES after every step), and the relative
             difference of the gauge series from MUMPS's. A solver whose solve fails (the library
             checks every solve: SolverError on every rank) is reported with its error, not timed.
             Every rollout gives Newton the initial state as its guess for step 0
* gradient   (forward + gradient) / forward without graph, w.r.t. the DG0 drag field, with
             MUMPS, without checkpoints and in blocks of --checkpoint-every; the same for the
             tuned fieldsplit without checkpoints (its adjoint solves are GMRES too), and the
             relative difference of its gradient from MUMPS's
* memory     peak resident memory growth per rank (VmHWM after, less VmRSS before, largest rank;
             bench/_common.peak_rss_mib) over a checkpointed gradient of --memory-steps (1,000)
             steps in blocks of --memory-every, at the mesh size --memory-h / --memory-h-coast
             (default 1500 / 400 m, 17,879 dofs: at the main size, forward + recompute + adjoint
             of 1,000 steps would take about 40 min on one rank, longer than the whole recorded
             run; the size is in the JSON and the log); and, at the main size, over gradients of
             --memory-short-steps steps with and without checkpoints. With MUMPS.

The variants are timed in interleaved rounds (bench/_common.timed_rounds); ratios are medians
of per-round ratios. The 1 → 2 rank speed-up is the ratio of two runs' figures
(``bench/record.py`` records both; the docs table computes it).

``--sweep`` (after the measurements above): at each size of --sweep-sizes, each solver of
SWEEP_SOLVERS runs --sweep-steps steps after one untimed step: time per step, Newton and GMRES
iterations, or the error. ``--threads``: torch threads per rank (default 1).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

from _common import COMM, log, peak_rss_mib, timed_rounds  # bench/ is on sys.path when a script there runs
from mpi4py import MPI
from petsc4py import PETSc

import dolfinx.fem
import numpy as np
import torch

import deepnum_fem as dnf
from deepnum_fem.bathymetry import bathymetry_function, shore_bathymetry
from deepnum_fem.geometry import coastal_domain
from deepnum_fem.models.shallow_water import ShallowWater, tidal_elevation, tide_constituents

OUTLINE = dnf.io.load_brest_bay_outline()
TIDE_TABLE = {"M2": (2.05, 0.0), "S2": (0.75, 0.0)}     # amplitude m, phase lag degrees: a spring tide
TIDE = tide_constituents(TIDE_TABLE)
T0 = 0.0                                                 # s: high water at the mouth, 2.80 m
DEPTH = {"depth_shore": 2.0, "depth_offshore": 40.0, "length": 1500.0}   # m
CORIOLIS, DRAG, WETTING_DRYING = 1.1e-4, 0.0025, 1.0    # 1/s, -, m

#: The tuned fieldsplit: the library's (fieldsplit_options("learned")) with the upper block
#: factorisation (one velocity-block solve per application instead of two; about a third faster
#: per step at 100k dofs) and ksp_rtol 1e-8 (fewer GMRES iterations; Newton takes as many steps to
#: snes_rtol 1e-10), GMRES restarted every 50 iterations (as fast as 200 here, and a quarter of
#: the Krylov basis's memory: 200 vectors of 270k dofs are 430 MB, for the Newton and for the
#: adjoint solver each).
TUNED_NAME = "fieldsplit tuned (upper, rtol 1e-8, restart 50)"
TUNED = {**ShallowWater.fieldsplit_options("learned", factorization="upper"),
         "ksp_gmres_restart": 50, "ksp_rtol": 1e-8}
#: The solvers of the main measurements (None: MUMPS LU, the model's default).
SOLVERS = {
    "MUMPS LU": None,
    "fieldsplit, learned Schur PC (fieldsplit_options)": ShallowWater.fieldsplit_options("learned"),
    TUNED_NAME: TUNED,
}
#: The solvers of the size sweep: those above and other choices for the tuned one. Not here,
#: from trials on one rank: Eisenstat-Walker tolerances (snes_ksp_ew, at 101k dofs) and the
#: lumped Schur approximation (fieldsplit_eta_mat_schur_complement_ainv_type lump, at 39k) failed
#: in the first step (DeepnumFemError: the TwoLevel smoother met a non-positive diagonal); with
#: MUMPS LU on both blocks GMRES still took about 36 iterations at 39k dofs (42 with the tuned
#: blocks): the selfp Schur approximation, not the blocks' solvers, sets the count.
SWEEP_SOLVERS = {
    **SOLVERS,
    f"{TUNED_NAME}, PC rebuilt every 2nd Newton iteration": {
        **TUNED, "snes_lag_preconditioner": 2, "snes_lag_preconditioner_persists": True},
    f"{TUNED_NAME}, TwoLevel with a Jacobi smoother": {
        **ShallowWater.fieldsplit_options("twolevel_jacobi", factorization="upper"),
        "ksp_gmres_restart": 50, "ksp_rtol": 1e-8},
    f"{TUNED_NAME}, GAMG on the velocity block": {**TUNED, "fieldsplit_u_pc_type": "gamg"},
    # capped: GAMG on the Schur block converges, where it does, in hundreds of iterations
    "fieldsplit, GAMG Schur PC (fieldsplit_options('gamg'), ksp_max_it 300)": {
        **ShallowWater.fieldsplit_options("gamg"), "ksp_max_it": 300},
}
#: (h, h_coast) in metres of the sweep: 38,988, 100,984 and 269,290 P2–P1 dofs
SWEEP_SIZES = [(800.0, 200.0), (380.0, 95.0), (180.0, 45.0)]


def gauge_points() -> np.ndarray:
    """Six points in the water (m, the outline's projection; model depths 13-33 m): the approach,
    the middle of the Goulet's narrowest section, off Brest (4.495° W, 48.375° N), and three in
    the Rade: north (-1, 3 km), south (3, -3 km) and east (8, -3 km)."""
    (kx, ky), (lon0, lat0) = OUTLINE["metres_per_degree"], OUTLINE["origin"]
    return np.array([[-18000.0, -2000.0], OUTLINE["goulet"].mean(axis=0),
                     [kx * (-4.495 - lon0), ky * (48.375 - lat0)], [-1000.0, 3000.0], [3000.0, -3000.0],
                     [8000.0, -3000.0]])


def bay_domain(h: float, h_coast: float):
    """The Rade de Brest meshed at ``h`` offshore and ``h_coast`` at the land (m), and the
    shore-distance depth (m, P1). Returns ``(mesh data, depth, seconds to mesh)``."""
    t0 = time.perf_counter()
    data = coastal_domain(OUTLINE["coastline"], OUTLINE["open_sea"], islands=OUTLINE["islands"], h=h,
                          h_coast=h_coast, comm=COMM)
    seconds = COMM.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    depth = bathymetry_function(dolfinx.fem.functionspace(data.mesh, ("Lagrange", 1)),
                                shore_bathymetry(OUTLINE["coastline"], OUTLINE["open_sea"], OUTLINE["islands"],
                                                 **DEPTH))
    return data, depth, seconds


def mesh_size(data, model: ShallowWater) -> dict:
    """Vertices, cells, P2–P1 dofs and owned dofs per rank (min, max) of a model's mesh."""
    mesh = data.mesh
    return {"vertices": mesh.topology.index_map(0).size_global, "cells": mesh.topology.index_map(2).size_global,
            "dofs": model.W.dofmap.index_map.size_global * model.W.dofmap.index_map_bs,
            "owned_dofs_min_max": (COMM.allreduce(model.n, op=MPI.MIN), COMM.allreduce(model.n, op=MPI.MAX))}


def solve_error(e: Exception) -> str:
    """``Type: message`` of a failed solve and of what caused it (the same on every rank)."""
    text = f"{type(e).__name__}: {e}"
    cause = e.__cause__ or e.__context__
    while cause is not None:
        text += f" <- {type(cause).__name__}: {cause}"
        cause = cause.__cause__ or cause.__context__
    return text


class Bay:
    """One ``ShallowWater`` on a bay mesh with a DG0 drag field, its gauges, and the solver's
    iteration counts of its last rollout (Newton per step, GMRES per step: summed over Newton)."""

    def __init__(self, data, depth, *, dt: float, viscosity: float, petsc_options: dict | None):
        field = dolfinx.fem.Function(dolfinx.fem.functionspace(data.mesh, ("DG", 0)), name="drag")
        field.x.array[:] = DRAG
        self.model = ShallowWater(data, depth, dt=dt, coriolis=CORIOLIS, viscosity=viscosity,
                                  wetting_drying=WETTING_DRYING, tide=TIDE, drag=field, t0=T0,
                                  petsc_options=petsc_options)
        self.drag = torch.full((dnf.convert.n_owned(field),), DRAG, dtype=torch.float64, requires_grad=True)
        self.gauges = self.model.sensors(gauge_points())
        self.state0 = self.model.initial_state(tidal_elevation(TIDE, T0))
        self.newton: list[int] = []
        self.linear: list[int] = []
        self.last_loss: float | None = None

    def series(self, steps: int, every: int | None = None) -> torch.Tensor:
        """The gauges' η (m), ``(steps, 6)``, of a rollout from high water (collective).

        Newton starts each step from the last solution the model holds; for step 0 that is set
        to the initial state, so that every rollout does the same work (else step 0 would start
        from wherever the last rollout or backward pass left it)."""
        snes = self.model.operator.problem.solver
        self.newton, self.linear = [], []
        w = self.model.w
        w.x.array[: self.model.n] = self.state0.numpy()
        w.x.scatter_forward()

        def observe(state, k):
            self.newton.append(snes.getIterationNumber())
            self.linear.append(snes.getLinearSolveIterations())
            return self.gauges.local(state)

        _, local = self.model.simulate(steps, self.state0, drag=self.drag, observe=observe, checkpoint_every=every)
        return dnf.parallel.sum(local, COMM)

    def loss(self, steps: int, every: int | None = None) -> torch.Tensor:
        """Mean squared departure (m²) of the gauges' series from the open-sea tide."""
        series = self.series(steps, every)
        open_sea = torch.tensor([tidal_elevation(TIDE, self.model.time(k)) for k in range(steps)],
                                dtype=series.dtype)
        return ((series - open_sea[:, None]) ** 2).mean()

    def forward(self, steps: int) -> torch.Tensor:
        with torch.no_grad():
            return self.series(steps)

    def gradient(self, steps: int, every: int | None = None) -> torch.Tensor:
        """The loss (m², also kept as ``last_loss``); ``self.drag.grad`` its gradient (owned cells,
        m² per unit c_d)."""
        self.drag.grad = None
        loss = self.loss(steps, every)
        loss.backward()
        self.last_loss = float(loss.detach())
        return loss.detach()

    def iterations(self) -> dict:
        """Newton iterations per step and GMRES iterations per Newton iteration of the last rollout."""
        per_newton = [lin / max(n, 1) for lin, n in zip(self.linear, self.newton, strict=True)]
        return {"newton_mean": statistics.mean(self.newton), "newton_max": max(self.newton),
                "linear_per_newton_mean": statistics.mean(per_newton), "linear_per_newton_max": max(per_newton)}

    def destroy(self) -> None:
        self.model.destroy()


def rel(a: torch.Tensor, b: torch.Tensor, *, local: bool = False) -> float:
    """``‖a - b‖ / ‖b‖`` (2-norms; over all ranks for rank-local tensors)."""
    num, den = float(((a - b) ** 2).sum()), float((b**2).sum())
    if local:
        num, den = COMM.allreduce(num), COMM.allreduce(den)
    return math.sqrt(num / den) if den > 0 else math.sqrt(num)


def probe(bay: Bay, steps: int) -> tuple[torch.Tensor | None, dict]:
    """One rollout without graph (a warm-up): its gauge series and iterations, or the error."""
    try:
        series = bay.forward(steps)
    except (dnf.SolverError, PETSc.Error) as e:   # raised on every rank together
        return None, {"error": solve_error(e)}
    return series, bay.iterations()


def measure_memory(bay: Bay, steps: int, every: int | None) -> dict:
    """Peak RSS growth (MiB, largest rank) and wall time (s) of one gradient of ``steps`` steps."""
    t0 = time.perf_counter()
    mib = peak_rss_mib(lambda: bay.gradient(steps, every))
    return {"steps": steps, "checkpoint_every": every, "mib": mib,
            "seconds": COMM.allreduce(time.perf_counter() - t0, op=MPI.MAX)}


def long_memory(args) -> dict:
    """The 1,000-step checkpointed gradient's memory at the memory size (MUMPS), and that size."""
    data, depth, _ = bay_domain(args.memory_h, args.memory_h_coast)
    bay = Bay(data, depth, dt=args.dt, viscosity=args.viscosity, petsc_options=None)
    size = mesh_size(data, bay.model)
    bay.gradient(2, 1)   # one-time buffers of the graph and checkpoint paths
    wall, _ = timed_rounds({"forward": lambda: bay.forward(args.steps)}, 1)
    out = {"h": args.memory_h, "h_coast": args.memory_h_coast, **size,
           "ms_per_step_nograd": 1e3 * wall["forward"][0] / args.steps,
           "state_mib": size["owned_dofs_min_max"][1] * 8 / 2**20,
           **measure_memory(bay, args.memory_steps, args.memory_every)}
    bay.destroy()
    return out


def sweep(args) -> list[dict]:
    """Each solver of SWEEP_SOLVERS at each size: time per step, iterations, or the error."""
    rows = []
    for h, h_coast in args.sweep_sizes:
        data, depth, _ = bay_domain(h, h_coast)
        for name, options in SWEEP_SOLVERS.items():
            bay = Bay(data, depth, dt=args.dt, viscosity=args.viscosity, petsc_options=options)
            row = {"h": h, "h_coast": h_coast, **mesh_size(data, bay.model), "solver": name, "options": options}
            _, first = probe(bay, 1)
            if "error" not in first:
                t0 = time.perf_counter()
                _, row_its = probe(bay, args.sweep_steps)
                row.update(row_its)
                if "error" not in row_its:
                    row["ms_per_step_nograd"] = 1e3 * COMM.allreduce(time.perf_counter() - t0, op=MPI.MAX) \
                        / args.sweep_steps
            else:
                row.update(first)
            rows.append(row)
            log(f"sweep      {row['dofs']:8,d} dofs  {name:56s} " + (
                f"fails: {row['error'][:150]}" if "error" in row else
                f"{row['ms_per_step_nograd']:9.1f} ms/step, Newton {row['newton_mean']:.2f} (max "
                f"{row['newton_max']}), GMRES {row['linear_per_newton_mean']:.1f} per Newton iteration"))
            bay.destroy()
    return rows


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--h", type=float, default=380.0, help="mesh size offshore, m (default 380)")
    p.add_argument("--h-coast", type=float, default=95.0, help="mesh size at the land, m (default 95)")
    p.add_argument("--dt", type=float, default=300.0, help="time step, s (default 300)")
    p.add_argument("--viscosity", type=float, default=50.0, help="eddy viscosity, m²/s (default 50)")
    p.add_argument("--steps", type=int, default=10, help="steps of the timed rollouts")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--checkpoint-every", type=int, default=5, help="block of the timed checkpointed gradient")
    p.add_argument("--memory-steps", type=int, default=1000, help="steps of the long checkpointed gradient")
    p.add_argument("--memory-every", type=int, default=25, help="its checkpoint block")
    p.add_argument("--memory-h", type=float, default=1500.0, help="its mesh size offshore, m")
    p.add_argument("--memory-h-coast", type=float, default=400.0, help="its mesh size at the land, m")
    p.add_argument("--memory-short-steps", type=int, default=20,
                   help="steps of the gradients whose memory is measured at the main size")
    p.add_argument("--sweep", action="store_true", help="also time SWEEP_SOLVERS at --sweep-sizes")
    p.add_argument("--sweep-sizes", type=float, nargs="+", default=None,
                   help="h h_coast pairs, m (default: about 39k, 101k and 269k dofs)")
    p.add_argument("--sweep-steps", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="smoke check: small meshes, a few steps, 1 repeat")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per rank (default 1)")
    args = p.parse_args()
    if args.quick:
        args.h, args.h_coast, args.steps, args.repeats, args.checkpoint_every = 2500.0, 600.0, 4, 1, 2
        args.memory_steps, args.memory_every, args.memory_short_steps = 20, 5, 6
        args.memory_h, args.memory_h_coast, args.sweep_steps = 4000.0, 1000.0, 2
        args.sweep_sizes = args.sweep_sizes or [4000.0, 1000.0, 2500.0, 600.0]
    sizes = args.sweep_sizes or [x for pair in SWEEP_SIZES for x in pair]
    if len(sizes) % 2:
        p.error("--sweep-sizes takes pairs: h h_coast ...")
    args.sweep_sizes = list(zip(sizes[::2], sizes[1::2], strict=True))
    return args


def main() -> None:
    t_start = time.perf_counter()
    args = parse_args()
    torch.set_num_threads(args.threads)
    steps, every, repeats = args.steps, args.checkpoint_every, args.repeats

    data, depth, mesh_s = bay_domain(args.h, args.h_coast)
    bays = {name: Bay(data, depth, dt=args.dt, viscosity=args.viscosity, petsc_options=options)
            for name, options in SOLVERS.items()}
    mumps = bays["MUMPS LU"]
    size = mesh_size(data, mumps.model)
    drag_cells = COMM.allreduce(len(mumps.drag))
    log(f"mesh       Rade de Brest h = {args.h:g} m, {args.h_coast:g} m at the land: {size['vertices']:,} vertices, "
        f"{size['cells']:,} cells, {size['dofs']:,} P2-P1 dofs ({size['owned_dofs_min_max'][0]:,}-"
        f"{size['owned_dofs_min_max'][1]:,} owned per rank), {drag_cells:,} DG0 drag dofs; ranks={COMM.size}; "
        f"meshing {mesh_s:.1f} s; dt {args.dt:g} s, theta {mumps.model.theta}, nu {args.viscosity:g} m2/s, "
        f"f {CORIOLIS:g} /s, wetting-drying {WETTING_DRYING:g} m, tide M2 2.05 m + S2 0.75 m from high water, "
        f"{len(gauge_points())} gauges; torch threads {torch.get_num_threads()}/rank")

    # -- warm-up rollouts: iterations per step, each solver's series, or its error ----------------
    series, solvers = {}, {}
    for name, bay in bays.items():
        series[name], solvers[name] = probe(bay, steps)
        if "error" in solvers[name]:
            log(f"solver     {name:52s} fails on every rank: {solvers[name]['error'][:300]}")
    if "error" in solvers["MUMPS LU"]:
        raise dnf.SolverError(f"MUMPS fails on the bay: {solvers['MUMPS LU']['error']}")
    working = [name for name in bays if "error" not in solvers[name]]
    iterative = TUNED_NAME if TUNED_NAME in working else None
    mumps.gradient(2, 1)      # one-time buffers of the graph and checkpoint paths
    if iterative:
        bays[iterative].gradient(2)

    # -- memory (before the timed rollouts grow the heap) -----------------------------------------
    short = args.memory_short_steps
    memory = {"measures": "peak RSS growth (VmHWM - VmRSS at the start), MiB, largest rank; MUMPS",
              "main_checkpointed": measure_memory(mumps, short, every),
              "main_plain": measure_memory(mumps, short, None),
              "main_state_mib": size["owned_dofs_min_max"][1] * 8 / 2**20,
              "long": long_memory(args)}
    lm = memory["long"]
    log(f"memory     gradient of {lm['steps']} steps in blocks of {lm['checkpoint_every']} at h = {lm['h']:g} / "
        f"{lm['h_coast']:g} m ({lm['dofs']:,} dofs, {lm['ms_per_step_nograd']:.1f} ms/step): peak RSS growth "
        f"{lm['mib']:.1f} MiB per rank, {lm['seconds']:.0f} s; at the main size, {short} steps: "
        f"{memory['main_checkpointed']['mib']:.1f} MiB in blocks of {every}, "
        f"{memory['main_plain']['mib']:.1f} MiB without checkpoints (one state {memory['main_state_mib']:.2f} MiB)")

    # -- timed rounds -------------------------------------------------------------------------------
    fns = {f"{name}/forward": (lambda bay=bays[name]: bay.forward(steps)) for name in working}
    fns["MUMPS LU/gradient"] = lambda: mumps.gradient(steps)
    fns["MUMPS LU/gradient_ckpt"] = lambda: mumps.gradient(steps, every)
    if iterative:
        fns[f"{iterative}/gradient"] = lambda: bays[iterative].gradient(steps)
    wall, cpu = timed_rounds(fns, repeats)

    def ms(key: str, times=wall) -> float:
        return 1e3 * statistics.median(times[key]) / steps

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(wall[a], wall[b], strict=True))

    rows = []
    for name in bays:
        row = {"name": name, "options": SOLVERS[name], **solvers[name]}
        if name in working:
            key = f"{name}/forward"
            row.update({"ms_per_step_nograd": ms(key), "cpu_ms_per_step_nograd": ms(key, cpu),
                        "vs_mumps": ratio(key, "MUMPS LU/forward"),
                        "rel_diff_series": rel(series[name], series["MUMPS LU"])})
            log(f"solver     {name:52s} {row['ms_per_step_nograd']:9.1f} ms/step "
                f"(CPU {row['cpu_ms_per_step_nograd']:.1f}, "
                f"{row['vs_mumps']:.2f} x MUMPS), Newton {row['newton_mean']:.2f} it/step (max {row['newton_max']}), "
                f"{row['linear_per_newton_mean']:.1f} linear it/Newton it (max {row['linear_per_newton_max']:.0f}); "
                f"gauge series differ from MUMPS's by {row['rel_diff_series']:.1e}")
        rows.append(row)

    loss, g_mumps = mumps.last_loss, mumps.drag.grad.clone()     # of the last timed round
    gradient = {"control": "DG0 drag field c_d (one value per cell)", "solver": "MUMPS LU", "checkpoint_every": every,
                "ratio": ratio("MUMPS LU/gradient", "MUMPS LU/forward"),
                "ratio_checkpointed": ratio("MUMPS LU/gradient_ckpt", "MUMPS LU/forward"),
                "loss": loss, "gradient_norm": math.sqrt(COMM.allreduce(float((g_mumps ** 2).sum())))}
    log(f"gradient   (forward + gradient) / forward without graph, {gradient['control']}, MUMPS: "
        f"{gradient['ratio']:.2f} without checkpoints, {gradient['ratio_checkpointed']:.2f} in blocks of {every} "
        f"(loss {loss:.6e} m2, |grad| {gradient['gradient_norm']:.6e})")
    if iterative:
        gradient["iterative"] = {"solver": iterative,
                                 "ratio": ratio(f"{iterative}/gradient", f"{iterative}/forward"),
                                 "rel_diff_gradient": rel(bays[iterative].drag.grad, g_mumps, local=True)}
        gi = gradient["iterative"]
        log(f"gradient   {iterative}: {gi['ratio']:.2f} without checkpoints; the gradient differs from MUMPS's by "
            f"{gi['rel_diff_gradient']:.1e}")
    for bay in bays.values():
        bay.destroy()

    sweep_rows = sweep(args) if args.sweep else None

    total = COMM.allreduce(time.perf_counter() - t_start, op=MPI.MAX)
    log(f"total      {total:.0f} s")
    result = {"h": args.h, "h_coast": args.h_coast, **size, "drag_dofs": drag_cells, "ranks": COMM.size,
              "dt": args.dt, "theta": mumps.model.theta, "viscosity": args.viscosity, "coriolis": CORIOLIS,
              "wetting_drying": WETTING_DRYING, "tide": TIDE_TABLE, "t0": T0, "depth": DEPTH,
              "gauges": gauge_points().tolist(), "steps": steps, "repeats": repeats,
              "torch_threads": torch.get_num_threads(), "mesh_s": mesh_s, "solvers": rows, "gradient": gradient,
              "memory": memory, "sweep": sweep_rows, "sweep_steps": args.sweep_steps if args.sweep else None,
              "wall_s": wall, "cpu_s": cpu, "total_s": total}
    if args.json and COMM.rank == 0:
        args.json.write_text(json.dumps(result, indent=2))
    log(json.dumps(result))
    assert math.isfinite(gradient["gradient_norm"]) and gradient["gradient_norm"] > 0


if __name__ == "__main__":
    main()
