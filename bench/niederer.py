"""The Niederer et al. (2011) monodomain benchmark with the ten Tusscher–Panfilov 2006 cell:
activation times at the slab's points P1–P9.

    python bench/niederer.py [--dx 0.5] [--dt 0.05] [--t-end 80] [--json PATH]
    mpirun -n 2 python bench/niederer.py --dx 0.2

The benchmark (Niederer et al., Phil. Trans. R. Soc. A 369:4331, 2011): a 20 x 7 x 3 mm slab,
fibres along x; conductivities σ_il = 0.17, σ_it = 0.019, σ_el = 0.62, σ_et = 0.24 S/m,
combined as the monodomain's harmonic means σ = σ_i σ_e / (σ_i + σ_e); χ = 1400 /cm,
C_m = 1 µF/cm², so D = σ / (χ C_m) in mm²/ms; TT2006 epicardial cells; a stimulus of
50,000 µA/cm³ (35.7 µA/µF) for 2 ms in the 1.5 mm cube at the origin. The activation time of a
point is the first time its potential exceeds 0 mV (linear in time between steps).

The model: ``Monodomain`` (P1 on tetrahedra of a box mesh with ``dx`` cells, backward Euler
diffusion solved by MUMPS, Godunov splitting, one Rush–Larsen reaction step per step).
fenicsx-beat's own run of its Niederer demo on the same dx = 0.5 mm, dt = 0.05 ms (its 0.7.2,
CG + GAMG) gave P1–P9 = 1.30, 51.10, 34.95, 58.90, 14.15, 49.55, 34.00, 56.70, 26.10 ms; they
are printed alongside (not a reference solution: the benchmark's converged values come from
the finest meshes of the paper).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import COMM, log  # bench/ is on sys.path when a script there runs

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import torch

from deepnum_fem.models import Monodomain, Stimulus, TenTusscherPanfilov2006

SLAB = (20.0, 7.0, 3.0)
POINTS = {"P1": (0, 0, 0), "P2": (0, 7, 0), "P3": (20, 0, 0), "P4": (20, 7, 0), "P5": (0, 0, 3), "P6": (0, 7, 3),
          "P7": (20, 0, 3), "P8": (20, 7, 3), "P9": (10, 3.5, 1.5)}
#: fenicsx-beat 0.7.2's Niederer demo, dx = 0.5 mm, dt = 0.05 ms, run on this machine (CG + GAMG)
FENICSX_BEAT_05_005 = (1.30, 51.10, 34.95, 58.90, 14.15, 49.55, 34.00, 56.70, 26.10)
CHI, CM = 140.0, 0.01                      # 1/mm (1400 /cm), µF/mm² (1 µF/cm²)


def diffusivities() -> tuple[float, float]:
    """(D_l, D_t) in mm²/ms from the benchmark's conductivities (S/m = 1e-3 S/mm)."""
    def harmonic(i, e):
        return i * e / (i + e)

    sigma_l, sigma_t = harmonic(0.17, 0.62) * 1e-3, harmonic(0.019, 0.24) * 1e-3     # S/mm
    # D = σ / (χ C_m): S/mm / (1/mm · µF/mm²) = 1e6 mm²/s = 1e3 mm²/ms
    return sigma_l / (CHI * CM) * 1e3, sigma_t / (CHI * CM) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dx", type=float, default=0.5, help="mm")
    p.add_argument("--dt", type=float, default=0.05, help="ms")
    p.add_argument("--t-end", type=float, default=80.0, help="ms")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    cells = [round(s / args.dx) for s in SLAB]
    mesh = dolfinx.mesh.create_box(COMM, [[0.0, 0.0, 0.0], list(SLAB)], cells, dolfinx.mesh.CellType.tetrahedron)
    fibres = dolfinx.fem.Function(dolfinx.fem.functionspace(mesh, ("DG", 0, (3,))))
    fibres.x.array.reshape(-1, 3)[:] = (1.0, 0.0, 0.0)
    tol = 1e-9 * args.dx
    stimulus = Stimulus(start=0.0, duration=2.0, amplitude=50_000 * 1e-3 / (CHI * CM),   # µA/mm³ / (µF/mm³)
                        marker=lambda x: (x[0] <= 1.5 + tol) & (x[1] <= 1.5 + tol) & (x[2] <= 1.5 + tol))
    model = Monodomain(mesh, TenTusscherPanfilov2006(), dt=args.dt, diffusivity=diffusivities(), fibres=fibres,
                       stimuli=[stimulus])
    sensors = model.sensors(np.array(list(POINTS.values()), dtype=np.float64))
    steps = round(args.t_end / args.dt)
    log(f"Niederer slab: dx = {args.dx} mm ({model.V.dofmap.index_map.size_global} nodes), dt = {args.dt} ms, "
        f"{steps} steps, {COMM.size} rank(s); D = {diffusivities()} mm²/ms, stimulus {stimulus.amplitude:.4g} mV/ms")
    state = model.initial_state()
    previous = sensors(state)
    activation = np.full(len(POINTS), np.nan)
    t_start = time.perf_counter()
    with torch.no_grad():
        for k in range(steps):
            state = model.step(state, k)
            v = sensors(state)
            crossed = np.isnan(activation) & (previous.numpy() <= 0.0) & (v.numpy() > 0.0)
            fraction = (0.0 - previous.numpy()) / np.maximum(v.numpy() - previous.numpy(), 1e-300)
            activation[crossed] = (k + fraction[crossed]) * args.dt
            previous = v
            if not np.isnan(activation).any():
                break
    seconds = time.perf_counter() - t_start
    result = {"dx_mm": args.dx, "dt_ms": args.dt, "ranks": COMM.size, "nodes": model.V.dofmap.index_map.size_global,
              "steps": k + 1, "seconds": seconds, "ms_per_step": 1e3 * seconds / (k + 1),
              "activation_ms": dict(zip(POINTS, activation.tolist(), strict=True))}
    log(f"{'point':6} {'ours (ms)':>10} {'fenicsx-beat, dx 0.5, dt 0.05':>30}")
    for (name, t), ref in zip(result["activation_ms"].items(), FENICSX_BEAT_05_005, strict=True):
        log(f"{name:6} {t:10.2f} {ref:30.2f}")
    log(f"{k + 1} steps in {seconds:.1f} s ({result['ms_per_step']:.1f} ms per step)")
    if args.json and COMM.rank == 0:
        args.json.write_text(json.dumps(result, indent=2))
    model.destroy()


if __name__ == "__main__":
    main()
