"""The cardiac model's torch parts on a GPU: the TT2006 ionic step, a network correction, and the
whole monodomain step with the state on the device, in one short run.

    python bench/gpu_cardiac.py                      # --device auto: CUDA if torch sees one
    python bench/gpu_cardiac.py --device cuda --json gpu.json
    python bench/gpu_cardiac.py --quick              # the tests' version (seconds, any device)

What it measures, on ``--device`` (``auto``: the first CUDA device if torch sees one, else the
CPU, and the JSON says which; ``cuda`` where torch sees none: an error naming what torch was
built with), float64, one process:

* ionic      one :class:`TenTusscherPanfilov2006` step of ``--nodes`` cells (19 states each),
             no graph; and forward + backward of that step w.r.t. two maximal conductances
             (``g_Ks``, ``g_CaL`` learnable): the median of ``--repeats`` after a warm-up, with
             ``torch.cuda.synchronize`` around each timing on a GPU
* hybrid     the same with :class:`HybridIonic` (a 19-32-32-1 MLP correcting the current)
* agreement  the device's ionic step against the CPU's from the same state: max relative
             difference over the states (a GPU result is checked, not assumed); the run fails
             above 1e-10
* step       :class:`Monodomain` with TT2006 on a box mesh of about ``--mesh-nodes`` nodes,
             the state on the device: one step (reaction on the device, then ``V`` to the CPU
             for the PETSc diffusion solve, CG + GAMG, and back), its ionic share (the ionic
             step at that size, on the device) and the rest (transfers, solve, overhead)

The CPU baseline of every figure runs in the same process (``cpu_*``), so the GPU/CPU ratios are
measured in one run. It runs on one rank: the GPU path of a multi-rank job is the same per rank.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from mpi4py import MPI

import dolfinx.fem
import dolfinx.mesh
import torch

import deepnum_fem  # noqa: F401  (MPI and PETSc before dolfinx)
from deepnum_fem.models import HybridIonic, Monodomain, Stimulus, TenTusscherPanfilov2006


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when torch sees a device, else the CPU; ``cuda`` without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: torch {torch.__version__} (built for CUDA {torch.version.cuda}) sees no "
                         "CUDA device; use --device auto or cpu")
    return torch.device(name)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median wall time (s) of ``fn()`` over ``repeats`` runs after one warm-up."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ionic_models(device: torch.device) -> dict[str, torch.nn.Module]:
    """TT2006 with two learnable conductances, and HybridIonic over it (the same seed)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(19, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
                              torch.nn.Linear(32, 1)).double()
    known = TenTusscherPanfilov2006(learnable=("g_Ks", "g_CaL"))
    return {"ionic": known.to(device), "hybrid": HybridIonic(TenTusscherPanfilov2006(), net).to(device)}


def excited_state(model: torch.nn.Module, n: int, device: torch.device) -> torch.Tensor:
    """A state of ``n`` cells, half at rest and half 2 ms into an upstroke (1 ms of stimulus), so
    that both regimes of the kinetics are exercised."""
    rest = model.initial_state(n, device=device)
    state = rest
    with torch.no_grad():
        for k in range(40):                        # 2 ms at dt 0.05, the first 1 ms stimulated
            state = model.step(state, 0.05, 52.0 if k < 20 else 0.0)
    half = torch.arange(n, device=device) % 2 == 1
    return torch.where(half, state, rest)


def measure_ionic(device: torch.device, n: int, repeats: int, dt: float) -> dict:
    out = {}
    for name, model in ionic_models(device).items():
        state = excited_state(model, n, device)
        params = [p for p in model.parameters() if p.requires_grad]

        def step(model=model, state=state):
            with torch.no_grad():
                model.step(state, dt)

        def gradient(model=model, state=state, params=params):
            s = state.clone().requires_grad_(True)
            loss = model.step(s, dt)[0].square().sum()
            torch.autograd.grad(loss, [s, *params])

        out[name] = {"step_ms": 1e3 * timed(step, device, repeats),
                     "forward_backward_ms": 1e3 * timed(gradient, device, repeats)}
    return out


def agreement(device: torch.device, n: int, dt: float) -> float:
    """Max over states of |device - cpu| / max |cpu| after one step from the same state."""
    models = {d: ionic_models(d)["hybrid"] for d in {torch.device("cpu"), device}}
    cpu = models[torch.device("cpu")]
    state = excited_state(cpu, n, torch.device("cpu"))
    with torch.no_grad():
        ref = cpu.step(state, dt)
        got = models[device].step(state.to(device), dt).cpu()
    scale = ref.abs().amax(dim=1, keepdim=True).clamp_min(1e-300)
    return float(((got - ref).abs() / scale).max())


def measure_step(device: torch.device, mesh_nodes: int, repeats: int, dt: float) -> dict:
    """One monodomain step with the state on ``device`` (see the module docstring)."""
    side = max(2, round(mesh_nodes ** (1 / 3)) - 1)
    mesh = dolfinx.mesh.create_box(MPI.COMM_SELF, [[0.0, 0.0, 0.0], [10.0, 10.0, 10.0]], [side] * 3,
                                   dolfinx.mesh.CellType.tetrahedron)
    stimulus = Stimulus(start=0.0, duration=1.0, amplitude=52.0, marker=lambda x: x[0] < 1.0)
    ionic = TenTusscherPanfilov2006().to(device)
    model = Monodomain(mesh, ionic, dt=dt, diffusivity=0.1, stimuli=[stimulus],
                       petsc_options={"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-10})
    state = model.initial_state(device=device)
    k = [0]

    def step():
        nonlocal state
        with torch.no_grad():
            state = model.step(state, k[0])
        k[0] += 1

    def ionic_only():
        with torch.no_grad():
            ionic.step(state, dt)

    whole, react = timed(step, device, repeats), timed(ionic_only, device, repeats)
    nodes = model.n
    model.destroy()
    return {"nodes": nodes, "step_ms": 1e3 * whole, "ionic_ms": 1e3 * react, "rest_ms": 1e3 * (whole - react)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--nodes", type=int, default=1_000_000, help="cells of the ionic-step timing")
    p.add_argument("--mesh-nodes", type=int, default=200_000, help="about this many nodes for the whole step")
    p.add_argument("--dt", type=float, default=0.05, help="ms")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="2,000 cells, a 1,000-node mesh, 2 repeats")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.quick:
        args.nodes, args.mesh_nodes, args.repeats = 2000, 1000, 2
    torch.set_num_threads(1)
    device = resolve_device(args.device)
    result = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
              else "cpu", "torch": torch.__version__, "cuda": torch.version.cuda, "nodes": args.nodes,
              "dt_ms": args.dt, "repeats": args.repeats}
    result["agreement_max_relative"] = agreement(device, min(args.nodes, 10_000), args.dt)
    if not result["agreement_max_relative"] < 1e-10:
        raise SystemExit(f"{device}'s ionic step differs from the CPU's by {result['agreement_max_relative']:.3g} "
                         "(relative): not a result to time")
    for where in ([device, torch.device("cpu")] if device.type != "cpu" else [device]):
        prefix = "" if where == device else "cpu_"
        result[f"{prefix}ionic"] = measure_ionic(where, args.nodes, args.repeats, args.dt)
        result[f"{prefix}step"] = measure_step(where, args.mesh_nodes, args.repeats, args.dt)
    if device.type != "cpu":
        result["speed_up_ionic_step"] = result["cpu_ionic"]["ionic"]["step_ms"] / result["ionic"]["ionic"]["step_ms"]
        result["speed_up_whole_step"] = result["cpu_step"]["step_ms"] / result["step"]["step_ms"]
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
