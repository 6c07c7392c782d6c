"""The ten Tusscher–Panfilov (2006) cell: the figures of docs/applications/cardiac.md.

    python bench/tt2006_cell.py [--beats 2] [--skip reference,order,timing,paper]

* reference  our model and the gotranx-generated reference (tests/reference/) in lock-step from
             rest, dt = 0.01 ms, 1 Hz, the .ode's stimulus (52 pA/pF while 10 <= t mod 1000 <= 11
             ms, t = k dt): per beat, max |ΔV| over the AP amplitude, each state's max |Δ| over
             its max |value|, and the AP features of both
* order      APD90 of beat 1 at dt = 0.02, 0.01, 0.005, 0.0025 ms (one run, a dt per column; the
             stimulus is the exact time average over each step, the same charge for every dt):
             the observed order of the successive differences
* timing     one step at n = 200,000 nodes, 1 thread, float64 (no graph, and with a graph);
             and at n = 1 (the per-step overhead)
* paper      APD90 of beat 1 with the paper's R and F (constants="paper") against the default

Serial (one process); it takes a few minutes, most of them in the lock-step run (the
reference's numpy step is ~0.1 ms, ours ~0.5 ms at n = 1).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import time
from pathlib import Path

import numpy as np
import torch

from deepnum_fem.models.tentusscher import TenTusscherPanfilov2006, action_potential_features

REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "reference" / "tentusscher_panfilov_2006_epi_gotranx.py"


def load_reference():
    spec = importlib.util.spec_from_file_location("tt2006_gotranx", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_stimulus(t: float, start: float = 10.0, duration: float = 1.0, period: float = 1000.0) -> float:
    """The .ode's stimulus (as an applied current, +52), at ``t`` exactly as the reference tests it."""
    phase = t - period * math.floor(t / period)
    return 52.0 if start <= phase <= start + duration else 0.0


def lockstep(beats: int, dt: float = 0.01) -> None:
    ref = load_reference()
    cell = TenTusscherPanfilov2006()
    order = [ref.state_index(name) for name in cell.state_names]
    p, y = ref.init_parameter_values(), ref.init_state_values()
    x = cell.initial_state(1)
    per_beat = int(round(1000.0 / dt))
    n = beats * per_beat
    ours, theirs = np.empty((n + 1, 19)), np.empty((n + 1, 19))
    ours[0], theirs[0] = x[:, 0].numpy(), y[order]
    t0 = time.perf_counter()
    with torch.inference_mode():
        for k in range(n):
            t = k * dt
            y = ref.hybrid_rush_larsen(y, t, dt, p)
            x = cell.step(x, dt, reference_stimulus(t))
            ours[k + 1], theirs[k + 1] = x[:, 0].numpy(), y[order]
    print(f"lock-step run: {n} steps in {time.perf_counter() - t0:.0f} s")
    for b in range(beats):
        sl = slice(b * per_beat, (b + 1) * per_beat + 1)
        o, r = ours[sl], theirs[sl]
        onset = int(round(10.0 / dt))
        fo, fr = action_potential_features(o[:, 0], dt, onset), action_potential_features(r[:, 0], dt, onset)
        amplitude = fr["peak"] - fr["rest"]
        dV = np.abs(o[:, 0] - r[:, 0]).max()
        print(f"beat {b + 1}: max|ΔV| = {dV:.3g} mV = {dV / amplitude:.3g} of the AP amplitude ({amplitude:.2f} mV)")
        scale = np.abs(o - r).max(axis=0) / np.abs(r).max(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            pointwise = np.nanmax(np.abs(o - r) / np.abs(r), axis=0)
        for name, s, q in zip(cell.state_names, scale, pointwise, strict=True):
            print(f"    {name:8s} max|Δ|/max|x| {s:.2e}   max |Δ/x| {q:.2e}")
        print(f"    worst state: {cell.state_names[int(np.argmax(scale))]} {scale.max():.2e}")
        for key in fo:
            print(f"    {key:9s} ours {fo[key]:.6f}  reference {fr[key]:.6f}  Δ {fo[key] - fr[key]:.2e}")


def apd90_order(dts=(0.02, 0.01, 0.005, 0.0025), t_end: float = 350.0) -> None:
    cell = TenTusscherPanfilov2006()
    dt = torch.tensor(dts, dtype=torch.float64)
    x = cell.initial_state(len(dts))
    n = int(round(t_end / min(dts)))
    traces = [[x[0, c].item()] for c in range(len(dts))]
    steps = [int(round(t_end / d)) for d in dts]
    t0 = time.perf_counter()
    with torch.inference_mode():
        for k in range(n):
            a, b = k * dt, (k + 1) * dt
            on = (torch.clamp(torch.clamp(b, max=11.0) - torch.clamp(a, min=10.0), min=0.0)) / dt
            x = cell.step(x, dt, 52.0 * on)
            for c, m in enumerate(steps):
                if k < m:
                    traces[c].append(x[0, c].item())
    print(f"dt-order run: {n} steps in {time.perf_counter() - t0:.0f} s")
    apd = []
    for d, V in zip(dts, traces, strict=True):
        f = action_potential_features(np.array(V), d, int(round(10.0 / d)))
        apd.append(f["apd90"])
        print(f"dt = {d}: APD90 {f['apd90']:.4f} ms  peak {f['peak']:.3f}  dV/dt max {f['dvdt_max']:.2f}")
    for i in range(len(dts) - 2):
        r = math.log2(abs(apd[i] - apd[i + 1]) / abs(apd[i + 1] - apd[i + 2]))
        print(f"order from dt = {dts[i]}, {dts[i + 1]}, {dts[i + 2]}: {r:.3f}")


def timing(n: int = 200_000, repeats: int = 30) -> None:
    torch.set_num_threads(1)
    for nodes in (n, 1):
        cell = TenTusscherPanfilov2006()
        x = cell.initial_state(nodes)
        x[0] += torch.linspace(0.0, 120.0, nodes, dtype=torch.float64)   # all the branches
        for graph in (False, True):
            with torch.set_grad_enabled(graph):
                xs = x.clone().requires_grad_(graph)
                reps = repeats if nodes > 1 else 2000
                times = []
                for _ in range(reps + 10):
                    t = time.perf_counter()
                    cell.step(xs, 0.01, 0.0)
                    times.append(time.perf_counter() - t)
                times = sorted(times[10:])
                print(f"n = {nodes}, {'with' if graph else 'no'} graph, 1 thread: median "
                      f"{1e3 * times[len(times) // 2]:.3f} ms/step, min {1e3 * times[0]:.3f}")


def paper_constants(dt: float = 0.01) -> None:
    out = {}
    for constants in ("reference", "paper"):
        cell = TenTusscherPanfilov2006(constants=constants)
        x = cell.initial_state(1)
        V = [x[0, 0].item()]
        with torch.inference_mode():
            for k in range(int(round(400.0 / dt))):
                x = cell.step(x, dt, reference_stimulus(k * dt))
                V.append(x[0, 0].item())
        out[constants] = action_potential_features(np.array(V), dt, int(round(10.0 / dt)))
        print(f"constants={constants}: " + ", ".join(f"{k} {v:.4f}" for k, v in out[constants].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beats", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    torch.set_num_threads(1)
    if "timing" not in skip:
        timing()
    if "reference" not in skip:
        lockstep(args.beats)
    if "order" not in skip:
        apd90_order()
    if "paper" not in skip:
        paper_constants()


if __name__ == "__main__":
    main()
