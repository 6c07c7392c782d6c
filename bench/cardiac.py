"""Cost of the monodomain rollout on the bundled left ventricle: time per step, the price of
the gradient, and memory with and without checkpointing.

    python bench/cardiac.py [--steps 200] [--repeats 3]
    mpirun -n 2 python bench/cardiac.py

The model is the cardiac demo's hybrid: Aliev–Panfilov + MLP correction (16-16, float64) at
every node, rule-based fibres, a DG0 conductivity-scale control; Godunov splitting, backward
Euler diffusion (MUMPS, factorised once per rollout), dt = 0.5 ms, paced from the apex.
The loss is the soft activation-time misfit on the endo- and epicardial nodes.

* step           median wall time of a 200-step rollout without gradients, per step
* gradient       (forward with graph + backward) / forward with graph, without checkpoints
                 and with blocks of 20 steps; and against the forward without graph
* memory         bytes autograd keeps for the backward pass (saved-tensor hooks), per step,
                 without checkpoints; and with ``--memory EVERY`` (one process per value)
                 the peak resident growth over forward + backward, e.g.
                 python bench/cardiac.py --memory none; python bench/cardiac.py --memory 20
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from _common import COMM, log, timed  # bench/ is on sys.path when a script there runs
from mpi4py import MPI

import dolfinx.fem
import torch

import deepnum_fem as dnf
from deepnum_fem.geometry import LV_TAGS
from deepnum_fem.io import load_left_ventricle
from deepnum_fem.models.fibres import rule_based_fibres
from deepnum_fem.models.ionic import AlievPanfilov, HybridIonic
from deepnum_fem.models.monodomain import Monodomain, Stimulus, soft_activation_times


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_memory(model, surface, s, steps: int, every: int | None) -> float:
    """Peak resident-memory growth (MiB, largest rank) over forward + backward of one rollout.

    Run in a fresh process (``--memory``): the kernel's high-water mark is reset first
    (``/proc/self/clear_refs``), and a fresh heap has no freed blocks to hide the growth.
    """
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")   # reset VmHWM to the current resident size
    base = _status_mib("VmRSS")
    loss_of(model, surface, s, steps, every).backward()
    return COMM.allreduce(_status_mib("VmHWM") - base, op=MPI.MAX)


def build():
    data = load_left_ventricle(COMM)
    fibres = rule_based_fibres(data.mesh, data.facet_tags, LV_TAGS["ENDO"], LV_TAGS["EPI"])
    scale = dolfinx.fem.Function(dolfinx.fem.functionspace(data.mesh, ("DG", 0)))
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16),
                              torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
    torch.manual_seed(0)
    with torch.no_grad():   # a small correction: AP's ε = ε₀ + μ₁ w / (μ₂ + v) is singular at v = -μ₂
        net[-1].weight.mul_(1e-3)
        net[-1].bias.zero_()
    dnf.parallel.broadcast_parameters(net)
    model = Monodomain(data, HybridIonic(AlievPanfilov(a=0.05), net), dt=0.5,
                       diffusivity=(2.4, 0.6), fibres=fibres, conductivity_scale=scale,
                       stimuli=[Stimulus(centre=(0.0, 0.0, -17.0), radius=4.0, duration=3.0, amplitude=1.0)])
    surface = model.boundary_nodes(["ENDO", "EPI"])
    s = torch.ones(dnf.convert.n_owned(scale), dtype=torch.float64, requires_grad=True)
    return model, net, surface, s


def loss_of(model, surface, s, steps, every):
    _, traces = model.simulate(steps, scale=s, observe=lambda st, k: st[0][surface], checkpoint_every=every)
    t = soft_activation_times(traces, model.dt, 0.5)
    return dnf.parallel.sum((t ** 2).sum()) / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--memory", default=None, metavar="EVERY",
                   help="only measure peak memory, with checkpoint blocks of EVERY steps or 'none' "
                        "(one per process: the heap must be fresh)")
    args = p.parse_args()
    model, net, surface, s = build()
    dofs = model.V.dofmap.index_map.size_global
    log(f"cardiac  LV mesh {dofs} P1 dofs, ranks={COMM.size}, {args.steps} steps of {model.dt} ms, "
        f"torch threads {torch.get_num_threads()}")

    def forward_nograd():
        with torch.no_grad():
            loss_of(model, surface, s, args.steps, None)

    def forward_graph():
        loss_of(model, surface, s, args.steps, 20)

    def forward_backward(every=20):
        net.zero_grad()
        s.grad = None
        loss_of(model, surface, s, args.steps, every).backward()

    def forward_graph_full():
        loss_of(model, surface, s, args.steps, None)

    forward_nograd()   # factorise, compile, warm up
    loss_of(model, surface, s, 5, None).backward()   # one-time buffers (adjoint solve, autograd engine)
    if args.memory is not None:
        every = None if args.memory == "none" else int(args.memory)
        peak = peak_memory(model, surface, s, args.steps, every)
        log(f"memory    peak resident growth over forward + backward of {args.steps} steps, "
            f"checkpoint_every={every}: {peak:.1f} MiB/rank")
        return
    forward_backward()
    t_plain = timed(forward_nograd, args.repeats)
    t_fwd = timed(forward_graph, args.repeats)
    t_both = timed(forward_backward, args.repeats)
    t_fwd_full = timed(forward_graph_full, args.repeats)
    t_both_full = timed(lambda: forward_backward(None), args.repeats)
    log(f"step      {1e3 * t_plain / args.steps:7.2f} ms/step (no graph), "
        f"{1e3 * t_fwd_full / args.steps:7.2f} ms/step (graph)")
    log(f"gradient  (forward + gradient) / forward = {t_both_full / t_fwd_full:.2f} without checkpoints, "
        f"{t_both / t_fwd:.2f} with blocks of 20 steps (one more forward); "
        f"vs the forward without graph: {t_both_full / t_plain:.2f} / {t_both / t_plain:.2f}")

    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_of(model, surface, s, args.steps, None)
    saved_mib = COMM.allreduce(saved[0], op=MPI.MAX) / 2**20
    loss.backward()
    del loss

    log(f"memory    autograd keeps {saved_mib:.1f} MiB/rank for {args.steps} steps without checkpoints "
        f"= {1024 * saved_mib / args.steps:.0f} KiB/step/rank ({model.n} owned nodes on the largest rank: "
        f"{1024 * saved_mib / args.steps / max(COMM.allreduce(model.n, op=MPI.MAX), 1) * 1024:.0f} B/node/step)")
    result = {"dofs": dofs, "ranks": COMM.size, "steps": args.steps,
              "ms_per_step_nograd": 1e3 * t_plain / args.steps, "ms_per_step_graph": 1e3 * t_fwd_full / args.steps,
              "ms_per_step_graph_checkpointed": 1e3 * t_fwd / args.steps,
              "gradient_ratio": t_both_full / t_fwd_full, "gradient_ratio_checkpointed": t_both / t_fwd,
              "gradient_ratio_vs_nograd": t_both_full / t_plain,
              "saved_mib_per_rank": saved_mib}
    if args.json and COMM.rank == 0:
        args.json.write_text(json.dumps(result, indent=2))
    assert math.isfinite(t_both)


if __name__ == "__main__":
    main()
