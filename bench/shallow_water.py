"""Cost of the nonlinear shallow-water rollout on the bundled bay: time per step, Newton
iterations, and the price of the gradient w.r.t. a DG0 drag field and a learned drag law.

    python bench/shallow_water.py [--steps 100] [--repeats 3] [--h 1500] [--json PATH]
    mpirun -n 2 python bench/shallow_water.py
    python bench/shallow_water.py --quick          # smoke check: 20 steps, 1 repeat

The model: ``coastal_domain(BAY_COASTLINE, BAY_OPEN_SEA, islands=BAY_ISLANDS, h=--h)`` (h = 1500 m:
788 vertices), shelf bathymetry (P1), Taylor–Hood P2–P1, θ = 0.6, dt = 600 s, ν = 50 m²/s
(``--viscosity``; the default 1 m²/s lets Newton diverge on such coarse meshes at once, and 10 m²/s
at step 24, just after high water, even with a backtracking line search), f = 1e-4 /s, an M2 tide of 1 m
on the open sea that starts at mean level, rising (t0 = -T/4). One Newton solve (SNES, MUMPS LU)
per step. Six tide gauges inside the bay observe every step (``gauges.local``, one
``parallel.sum`` of the series); the loss is the squared misfit to the series of a rollout with
c_d = 0.0035 (the model has c_d = 0.0025).

Two drag parametrisations, each its own model:

* field  ``c_d`` a DG0 Function (the control: its owned dofs), quadratic drag ``c_d |u| u / H``
* law    a callable ``drag(u, H) = c0 exp(N([|u|/U, H/H0])) |u| u / H`` with an MLP ``N``
         (2-16-16-1, tanh, float64) inside the weak form via ``dnf.ml_operator``; the gradient
         is w.r.t. the MLP weights (``dnf.parallel.allreduce_gradients``)

Measured, for each:

* step           median wall time of a rollout without gradients, per step (slowest rank), and
                 with the autograd graph kept; building a model (forms already compiled), once
* newton         Newton iterations per step (mean, max) over that rollout, read from SNES
                 after every step in the observe callback
* gradient       (forward with graph + backward) / forward without graph, without checkpoints
                 and with ``checkpoint_every=20`` (one more forward); and against the forward with
                 graph. Checkpointing is first probed on a throwaway copy of each model (4 steps in
                 blocks of 2); where it raises, the error is reported and the variant not timed

The rollout variants of both models are timed in interleaved rounds (each round runs each
variant once) and ratios are medians of per-round ratios, so that other jobs on the machine hit
them alike. ``--threads`` sets torch's threads per rank (default 1).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from _common import COMM, log, timed, timed_rounds  # bench/ is on sys.path when a script there runs
from mpi4py import MPI

import dolfinx.fem
import numpy as np
import torch

import deepnum_fem as dnf
from deepnum_fem.bathymetry import bathymetry_function, shelf_bathymetry
from deepnum_fem.geometry import BAY_COASTLINE, BAY_ISLANDS, BAY_OPEN_SEA, coastal_domain
from deepnum_fem.models.shallow_water import LearnedDragLaw, ShallowWater

M2 = 44712.0                                 # s
TIDE = [(1.0, M2, 0.0)]                      # with t0 = -M2/4: starts at mean level, rising
DT, CORIOLIS, C0 = 600.0, 1e-4, 0.0025
U_SCALE, H_SCALE = 0.5, 30.0                 # m/s, m: the drag network's input scales
EVERY = 20                                   # steps per checkpointed block
#: six tide gauges inside the bay (head, flanks, behind the island, near the mouth)
GAUGES = np.array([[1500.0, 6000.0], [3000.0, 8800.0], [3500.0, 3000.0], [6000.0, 10000.0],
                   [12000.0, 8000.0], [12500.0, 5000.0]])


class Case:
    """One model (drag field or drag law), its gauges, target series, and rollout variants."""

    def __init__(self, name: str, model: ShallowWater, steps: int, params: list[torch.Tensor],
                 drag: torch.Tensor | None = None):
        self.name, self.model, self.steps, self.params, self.drag = name, model, steps, params, drag
        self.gauges = model.sensors(GAUGES)
        self.iterations: list[int] = []
        self.target: torch.Tensor | None = None

    def series(self, every: int | None, count: bool = False) -> torch.Tensor:
        snes = self.model.operator.problem.solver

        def observe(w, k):
            if count:
                self.iterations.append(snes.getIterationNumber())
            return self.gauges.local(w)

        _, local = self.model.simulate(self.steps, drag=self.drag, observe=observe, checkpoint_every=every)
        return dnf.parallel.sum(local, COMM)

    def loss(self, every: int | None) -> torch.Tensor:
        series = self.series(every)
        return ((series - self.target[: len(series)]) ** 2).sum()

    def nograd(self) -> None:
        with torch.no_grad():
            self.loss(None)

    def gradient(self, every: int | None) -> torch.Tensor:
        for p in self.params:
            p.grad = None
        loss = self.loss(every)
        loss.backward()
        if self.drag is None:   # network weights: the same on every rank, sum their gradients
            dnf.parallel.allreduce_gradients(self.params)
        # a DG0 drag field's gradient stays distributed (owned dofs), like the field itself
        return loss.detach()


def _fmt(x: float | None) -> str:
    return "n/a (fails)" if x is None else f"{x:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--h", type=float, default=1500.0, help="bay mesh size (m)")
    p.add_argument("--quick", action="store_true", help="smoke check: 20 steps, 1 repeat")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--viscosity", type=float, default=50.0,
                   help="m²/s (with 10, Newton diverges at step 24, just after high water, on h = 1500 m)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per rank")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.repeats = 20, 1
    steps, repeats, VISCOSITY = args.steps, args.repeats, args.viscosity

    data = coastal_domain(BAY_COASTLINE, BAY_OPEN_SEA, islands=BAY_ISLANDS, h=args.h, comm=COMM)
    mesh = data.mesh
    depth = bathymetry_function(dolfinx.fem.functionspace(mesh, ("Lagrange", 1)), shelf_bathymetry)
    common = {"dt": DT, "coriolis": CORIOLIS, "viscosity": VISCOSITY, "tide": TIDE, "t0": -M2 / 4}

    field = dolfinx.fem.Function(dolfinx.fem.functionspace(mesh, ("DG", 0)), name="drag")
    field.x.array[:] = C0
    drag = torch.full((dnf.convert.n_owned(field),), C0, dtype=torch.float64, requires_grad=True)

    torch.manual_seed(0)
    correction = LearnedDragLaw(C0, speed_scale=U_SCALE, depth_scale=H_SCALE, init_std=0.05)
    dnf.parallel.broadcast_parameters(correction)
    law = correction.drag(quadrature_degree=4)

    def make_case(name: str) -> Case:
        if name == "field":
            return Case(name, ShallowWater(data, depth, drag=field, **common), steps, [drag], drag)
        return Case(name, ShallowWater(data, depth, drag=law, **common), steps,
                    list(correction.parameters()))

    cases = {"field": make_case("field"), "law": make_case("law")}
    build_s = {name: timed(lambda name=name: make_case(name), 1) for name in cases}   # forms cached by now
    field_model = cases["field"].model

    dofs = field_model.W.dofmap.index_map.size_global
    owned = (COMM.allreduce(field_model.n, op=MPI.MIN), COMM.allreduce(field_model.n, op=MPI.MAX))
    vertices = mesh.geometry.index_map().size_global
    n_weights = sum(q.numel() for q in correction.parameters())
    log(f"shallow water  bay h={args.h:.0f} m: {vertices} vertices, {dofs} P2-P1 dofs ({owned[0]}-{owned[1]} "
        f"owned per rank), {dnf.convert.n_owned(field) and COMM.allreduce(dnf.convert.n_owned(field))} DG0 drag "
        f"dofs, ranks={COMM.size}, {steps} steps of {DT:.0f} s (theta={field_model.theta}, nu={VISCOSITY}, "
        f"f={CORIOLIS}, M2 1 m), {len(GAUGES)} gauges, drag MLP {n_weights} weights, "
        f"torch threads {torch.get_num_threads()}/rank")

    # target: the field model with c_d = 0.0035 (also the first rollout: compiles, factorises)
    with torch.no_grad():
        _, local = field_model.simulate(steps, drag=torch.full_like(drag, 0.0035),
                                         observe=lambda w, k: cases["field"].gauges.local(w))
        target = dnf.parallel.sum(local, COMM)
    for c in cases.values():
        c.target = target
        with torch.no_grad():       # warm up; count Newton iterations
            c.series(None, count=True)
    for c in cases.values():         # one-time buffers of the graph and adjoint paths
        saved, c.steps = c.steps, 5
        c.gradient(None)
        c.steps = saved

    # checkpointed blocks (torch.utils.checkpoint, non-reentrant) run under saved-tensor hooks;
    # a probe of 4 steps in blocks of 2, on a throwaway copy of each model (a failed Newton solve
    # leaves its SNES unusable), tells whether the model's step supports them
    checkpointing = {}
    for name in cases:
        c = make_case(name)
        c.target, c.steps = target, 4
        try:
            c.gradient(2)
            error = None
        except Exception as e:   # noqa: BLE001  (recorded and reported, same on every rank)
            error = f"{type(e).__name__}: {e}"
            cause = e.__cause__ or e.__context__
            while cause is not None:
                error = f"{type(cause).__name__}: {cause}"
                cause = cause.__cause__ or cause.__context__
        del c
        checkpointing[name] = COMM.allreduce([error], op=MPI.SUM)[0] if COMM.size > 1 else error
        if checkpointing[name]:
            log(f"{name:6s} checkpoint_every fails, not timed: {checkpointing[name].splitlines()[0]}")

    fns = {}
    for name, c in cases.items():
        fns[f"{name}_nograd"] = c.nograd
        fns[f"{name}_graph"] = lambda c=c: c.loss(None)
        fns[f"{name}_gradient"] = lambda c=c: c.gradient(None)
        if not checkpointing[name]:
            fns[f"{name}_gradient_ckpt"] = lambda c=c: c.gradient(EVERY)
    wall, _ = timed_rounds(fns, repeats)

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(wall[a], wall[b], strict=True))

    result = {"h": args.h, "vertices": vertices, "dofs": dofs, "owned_dofs_min_max": owned, "ranks": COMM.size,
              "steps": steps, "repeats": repeats, "dt": DT, "theta": field_model.theta, "viscosity": VISCOSITY,
              "coriolis": CORIOLIS, "tide": TIDE, "gauges": len(GAUGES), "drag_mlp_weights": n_weights,
              "torch_threads": torch.get_num_threads(), "wall_s": wall, "build_s": build_s}
    for name, c in cases.items():
        its = c.iterations
        loss = float(c.gradient(None))
        grads = torch.cat([q.grad.reshape(-1) for q in c.params])
        grad_norm = math.sqrt(float(dnf.parallel.sum((grads ** 2).sum(), COMM))) if name == "field" \
            else float(grads.norm())
        step_ms = 1e3 * statistics.median(wall[f"{name}_nograd"]) / steps
        r = {"ms_per_step_nograd": step_ms,
             "ms_per_step_graph": 1e3 * statistics.median(wall[f"{name}_graph"]) / steps,
             "newton_mean": float(np.mean(its)), "newton_max": int(max(its)), "newton_min": int(min(its)),
             "gradient_ratio": ratio(f"{name}_gradient", f"{name}_nograd"),
             "gradient_ratio_checkpointed": (ratio(f"{name}_gradient_ckpt", f"{name}_nograd")
                                             if not checkpointing[name] else None),
             "checkpointing_error": checkpointing[name],
             "gradient_ratio_vs_graph": ratio(f"{name}_gradient", f"{name}_graph"),
             "graph_vs_nograd": ratio(f"{name}_graph", f"{name}_nograd"),
             "loss": loss, "gradient_norm": grad_norm, "build_s": build_s[name]}
        result[name] = r
        log(f"{name:6s} step {step_ms:7.2f} ms/step no graph ({r['ms_per_step_graph']:.2f} with graph, "
            f"{r['graph_vs_nograd']:.2f} x); "
            f"Newton {r['newton_mean']:.2f} it/step mean, {r['newton_max']} max, "
            f"{r['newton_min']} min; (forward + gradient) / forward = {r['gradient_ratio']:.2f} without "
            f"checkpoints, {_fmt(r['gradient_ratio_checkpointed'])} with checkpoint_every={EVERY} "
            f"(vs the forward with graph: {r['gradient_ratio_vs_graph']:.2f}); loss {loss:.6e}, "
            f"|grad| {grad_norm:.6e}; model build {build_s[name]:.2f} s")
        assert math.isfinite(grad_norm) and grad_norm > 0, (name, grad_norm)
    log(f"law / field: {result['law']['ms_per_step_nograd'] / result['field']['ms_per_step_nograd']:.2f} x per step "
        f"without graph, Newton {result['law']['newton_mean']:.2f} vs {result['field']['newton_mean']:.2f} it/step")
    if args.json and COMM.rank == 0:
        args.json.write_text(json.dumps(result, indent=2))
    log(json.dumps(result))


if __name__ == "__main__":
    main()
