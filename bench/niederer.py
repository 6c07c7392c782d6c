"""The Niederer et al. (2011) monodomain benchmark with the ten Tusscher–Panfilov 2006 cell:
activation times at the slab's points P1–P9, ours and fenicsx-beat's on the same mesh.

    python bench/niederer.py [--cases 0.5:0.05 0.5:0.01] [--t-end 80] [--json PATH]
    mpirun -n 2 python bench/niederer.py --cases 0.2:0.05
    python bench/niederer.py --peer none            # ours only

The benchmark (Niederer et al., Phil. Trans. R. Soc. A 369:4331, 2011): a 20 x 7 x 3 mm slab,
fibres along x; conductivities σ_il = 0.17, σ_it = 0.019, σ_el = 0.62, σ_et = 0.24 S/m,
combined as the monodomain's harmonic means σ = σ_i σ_e / (σ_i + σ_e); χ = 1400 /cm,
C_m = 1 µF/cm², so D = σ / (χ C_m) in mm²/ms; TT2006 epicardial cells; a stimulus of
50,000 µA/cm³ (35.7 µA/µF) for 2 ms in the 1.5 mm cube at the origin.

Each case ``DX:DT`` (mm, ms) builds one box mesh of tetrahedra and runs both codes on it:

* ours: ``Monodomain`` defaults (P1, backward-Euler diffusion solved by MUMPS, Godunov
  splitting, one Rush–Larsen step of our torch TT2006 per step); the stimulus is on the nodes
  in the cube.
* fenicsx-beat 0.7.2 (``bench/peers.py`` installs it outside the repository): its Niederer
  demo rebuilt on its API: ``MonodomainModel`` (P1, θ = 0.5 Crank–Nicolson diffusion, the
  stimulus integrated over the cells in the cube), ``DolfinODESolver`` with the generalised
  Rush–Larsen step that gotranx generates from the TT2006 ``.ode`` file in its wheel, the
  demo's initial state, ``MonodomainSplittingSolver`` (Godunov). The demo asks for CG +
  hypre BoomerAMG; this PETSc has no hypre, so CG + GAMG (PETSc's default tolerances, as the
  demo).

The activation time of a point is the first time its potential exceeds 0 mV, linear in time
between the two steps around the crossing, for both codes (fenicsx-beat's demo takes the start
of the step instead, up to dt earlier; ``activation_step_start_ms`` has that too). Time per
step is the slowest rank's wall time of the loop (step and point evaluation), first step left
out (it factorises or sets up the preconditioner), divided by the steps. Nothing is asserted:
the benchmark's converged values come from the finest meshes of the paper.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import COMM, log  # bench/ is on sys.path when a script there runs
from mpi4py import MPI

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import torch

from deepnum_fem.models import Monodomain, Stimulus, TenTusscherPanfilov2006
from deepnum_fem.sensors import PointSensors

SLAB = (20.0, 7.0, 3.0)
POINTS = {"P1": (0, 0, 0), "P2": (0, 7, 0), "P3": (20, 0, 0), "P4": (20, 7, 0), "P5": (0, 0, 3), "P6": (0, 7, 3),
          "P7": (20, 0, 3), "P8": (20, 7, 3), "P9": (10, 3.5, 1.5)}
CHI, CM = 140.0, 0.01                      # 1/mm (1400 /cm), µF/mm² (1 µF/cm²)
CUBE = 1.5                                 # mm, the stimulus cube's side
#: fenicsx-beat's diffusion solve: its demo's CG + BoomerAMG with GAMG in hypre's place
BEAT_PETSC = {"ksp_type": "cg", "pc_type": "gamg"}
#: the TT2006 epicardial initial state of fenicsx-beat's Niederer demo
BEAT_INITIAL = {"V": -85.23, "Xr1": 0.00621, "Xr2": 0.4712, "Xs": 0.0095, "m": 0.00172, "h": 0.7444, "j": 0.7045,
                "d": 3.373e-05, "f": 0.7888, "f2": 0.9755, "fCass": 0.9953, "s": 0.999998, "r": 2.42e-08,
                "Ca_i": 0.000126, "R_prime": 0.9073, "Ca_SR": 3.64, "Ca_ss": 0.00036, "Na_i": 8.604, "K_i": 136.89}


def diffusivities() -> tuple[float, float]:
    """(D_l, D_t) in mm²/ms from the benchmark's conductivities (S/m = 1e-3 S/mm)."""
    def harmonic(i, e):
        return i * e / (i + e)

    sigma_l, sigma_t = harmonic(0.17, 0.62) * 1e-3, harmonic(0.019, 0.24) * 1e-3     # S/mm
    # D = σ / (χ C_m): S/mm / (1/mm · µF/mm²) = 1e6 mm²/s = 1e3 mm²/ms
    return sigma_l / (CHI * CM) * 1e3, sigma_t / (CHI * CM) * 1e3


def in_cube(dx: float):
    tol = 1e-9 * dx
    return lambda x: (x[0] <= CUBE + tol) & (x[1] <= CUBE + tol) & (x[2] <= CUBE + tol)


def slab(dx: float) -> dolfinx.mesh.Mesh:
    cells = [round(s / dx) for s in SLAB]
    return dolfinx.mesh.create_box(COMM, [[0.0, 0.0, 0.0], list(SLAB)], cells, dolfinx.mesh.CellType.tetrahedron)


class Activation:
    """First upward crossings of 0 mV at the points, from the values after each step."""

    def __init__(self, v0: np.ndarray, dt: float):
        self.previous, self.dt = v0, dt
        self.times = np.full(len(v0), np.nan)         # linear in time between the steps
        self.step_start = np.full(len(v0), np.nan)    # the start of the step (fenicsx-beat's demo)

    def update(self, k: int, v: np.ndarray) -> bool:
        """Values ``v`` after step ``k`` (0-based); True once every point has crossed."""
        crossed = np.isnan(self.times) & (self.previous <= 0.0) & (v > 0.0)
        fraction = (0.0 - self.previous) / np.maximum(v - self.previous, 1e-300)
        self.times[crossed] = (k + fraction[crossed]) * self.dt
        self.step_start[crossed] = k * self.dt
        self.previous = v
        return not np.isnan(self.times).any()


def _loop(step, values, dt: float, t_end: float) -> dict:
    """Step until every point has activated or ``t_end``; activation times and timings."""
    activation = Activation(values(), dt)
    steps = round(t_end / dt)
    COMM.Barrier()
    t0 = time.perf_counter()
    t1 = t0
    for k in range(steps):
        step(k)
        done = COMM.allreduce(activation.update(k, values()), op=MPI.LAND)
        if k == 0:
            t1 = time.perf_counter()
        if done:
            break
    seconds = COMM.allreduce(time.perf_counter() - t1, op=MPI.MAX)
    first = COMM.allreduce(t1 - t0, op=MPI.MAX)
    n = k + 1
    return {"steps": n, "first_step_s": first, "seconds": seconds + first,
            "ms_per_step": 1e3 * seconds / max(n - 1, 1),
            "activation_ms": dict(zip(POINTS, activation.times.tolist(), strict=True)),
            "activation_step_start_ms": dict(zip(POINTS, activation.step_start.tolist(), strict=True))}


def run_ours(mesh: dolfinx.mesh.Mesh, dx: float, dt: float, t_end: float, **options) -> dict:
    """Our model on ``mesh``; ``options`` go to ``Monodomain`` (e.g. ``theta=0.5``)."""
    t0 = time.perf_counter()
    fibres = dolfinx.fem.Function(dolfinx.fem.functionspace(mesh, ("DG", 0, (3,))))
    fibres.x.array.reshape(-1, 3)[:] = (1.0, 0.0, 0.0)
    stimulus = Stimulus(start=0.0, duration=2.0, amplitude=50_000 * 1e-3 / (CHI * CM),   # µA/mm³ / (µF/mm³)
                        marker=in_cube(dx))
    model = Monodomain(mesh, TenTusscherPanfilov2006(), dt=dt, diffusivity=diffusivities(), fibres=fibres,
                       stimuli=[stimulus], **options)
    sensors = model.sensors(np.array(list(POINTS.values()), dtype=np.float64))
    state = [model.initial_state()]
    setup = COMM.allreduce(time.perf_counter() - t0, op=MPI.MAX)

    def step(k):
        state[0] = model.step(state[0], k)

    with torch.no_grad():
        result = _loop(step, lambda: sensors(state[0]).numpy(), dt, t_end)
    model.destroy()
    return {"code": "deepnum-fem", "setup_s": setup, **result,
            "method": "P1; backward Euler diffusion, MUMPS LU factorised once; Godunov splitting; one Rush–Larsen "
                      "step (torch TT2006) per step; stimulus on the nodes in the cube"}


def _beat_cell_model(target: Path):
    """The TT2006 epicardial cell of fenicsx-beat's Niederer template, as gotranx's numpy module
    with the generalised Rush–Larsen step (generated once into the peer's folder)."""
    module = target / "generated" / "tentusscher_panfilov_2006_epi_cell_grl.py"
    if COMM.rank == 0 and not module.is_file():
        import gotranx
        from gotranx.codegen.python import Format

        ode = gotranx.load_ode(target / "beat" / "cli" / "templates" / "niederer_benchmark" /
                               "tentusscher_panfilov_2006_epi_cell.ode")
        code = gotranx.cli.gotran2py.get_code(ode, scheme=[gotranx.schemes.Scheme.generalized_rush_larsen],
                                              format=Format.none)
        module.parent.mkdir(exist_ok=True)
        module.write_text(code)
    COMM.Barrier()
    sys.path.insert(0, str(module.parent))
    import tentusscher_panfilov_2006_epi_cell_grl as cell
    return cell


def beat_splitting_solver(beat, cell, mesh, *, stimulated_cells, f0, petsc_options: dict, **stimulus):
    """fenicsx-beat's Niederer set-up on ``mesh``: its ``MonodomainModel`` (the benchmark's
    conductivities along the fibres ``f0``, ``C_m``, ``petsc_options``), a stimulus on the cells
    ``stimulated_cells`` (``stimulus``: ``define_stimulus``'s ``amplitude`` in µA/cm³ and, if
    given, ``duration``), the TT2006 ``cell`` from the demo's initial state, and the splitting
    solver. Returns ``(solver, pde)``."""
    clock = dolfinx.fem.Constant(mesh, 0.0)
    conductivities = beat.conductivities.default_conductivities("Niederer")
    tags = dolfinx.mesh.meshtags(mesh, mesh.topology.dim, stimulated_cells,
                                 np.full(len(stimulated_cells), 1, dtype=np.int32))
    I_s = beat.stimulation.define_stimulus(mesh=mesh, chi=conductivities["chi"], time=clock, subdomain_data=tags,
                                           marker=1, mesh_unit="mm", **stimulus)
    M = beat.conductivities.define_conductivity_tensor(f0=f0, **conductivities)
    pde = beat.MonodomainModel(time=clock, mesh=mesh, M=M, I_s=I_s, params={"petsc_options": petsc_options},
                               C_m=CM, dx=I_s.dZ)
    v_ode = dolfinx.fem.Function(dolfinx.fem.functionspace(mesh, ("Lagrange", 1)))
    ode = beat.odesolver.DolfinODESolver(v_ode=v_ode, v_pde=pde.state, fun=cell.generalized_rush_larsen,
                                         init_states=cell.init_state_values(**BEAT_INITIAL),
                                         parameters=cell.init_parameter_values(stim_amplitude=0.0),
                                         num_states=len(BEAT_INITIAL), v_index=cell.state_index("V"))
    return beat.MonodomainSplittingSolver(pde=pde, ode=ode), pde


def run_fenicsx_beat(mesh: dolfinx.mesh.Mesh, dx: float, dt: float, t_end: float) -> dict:
    from peers import activate

    target = activate("fenicsx-beat", COMM)
    import beat

    t0 = time.perf_counter()
    cell = _beat_cell_model(target)
    cube = dolfinx.mesh.locate_entities(mesh, mesh.topology.dim, in_cube(dx))
    solver, pde = beat_splitting_solver(beat, cell, mesh, stimulated_cells=cube,
                                        f0=dolfinx.fem.Constant(mesh, (1.0, 0.0, 0.0)), petsc_options=BEAT_PETSC,
                                        amplitude=50_000.0)
    V = pde.state.function_space
    n = V.dofmap.index_map.size_local
    sensors = PointSensors(V, np.array(list(POINTS.values()), dtype=np.float64))
    setup = COMM.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    iterations = []

    def step(k):
        solver.step((k * dt, (k + 1) * dt))
        iterations.append(pde._solver.solver.getIterationNumber())

    result = _loop(step, lambda: sensors(torch.from_numpy(pde.state.x.array[:n])).numpy(), dt, t_end)
    return {"code": f"fenicsx-beat {beat.__version__}", "setup_s": setup, **result,
            "krylov_iterations_mean": float(np.mean(iterations)), "petsc_options": BEAT_PETSC,
            "method": "P1; Crank–Nicolson diffusion, CG + GAMG (the demo's hypre is not in this PETSc); Godunov "
                      "splitting; one generalised Rush–Larsen step (gotranx) per step; stimulus integrated over "
                      "the cells in the cube"}


def _case(text: str) -> tuple[float, float]:
    dx, dt = text.split(":")
    return float(dx), float(dt)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=_case, nargs="+", default=[(0.5, 0.05)], help="DX:DT pairs (mm:ms)")
    p.add_argument("--t-end", type=float, default=80.0, help="ms; stops earlier once every point has activated")
    p.add_argument("--peer", choices=["fenicsx-beat", "none"], default="fenicsx-beat")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    cases = []
    for dx, dt in args.cases:
        mesh = slab(dx)
        nodes = mesh.geometry.index_map().size_global
        log(f"Niederer slab: dx = {dx} mm ({nodes:,} nodes), dt = {dt} ms, {COMM.size} rank(s); "
            f"D = {tuple(round(d, 5) for d in diffusivities())} mm²/ms")
        runs = [run_ours(mesh, dx, dt, args.t_end)]
        if args.peer != "none":
            runs.append(run_fenicsx_beat(mesh, dx, dt, args.t_end))
        log(f"{'point':6}" + "".join(f"{r['code']:>22}" for r in runs))
        for name in POINTS:
            log(f"{name:6}" + "".join(f"{r['activation_ms'][name]:22.2f}" for r in runs))
        log("ms/step" + "".join(f"{r['ms_per_step']:21.1f}" for r in runs))
        cases.append({"dx_mm": dx, "dt_ms": dt, "ranks": COMM.size, "nodes": nodes, "runs": runs})
    result = {"ranks": COMM.size, "t_end_ms": args.t_end, "cases": cases}
    if args.json and COMM.rank == 0:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
