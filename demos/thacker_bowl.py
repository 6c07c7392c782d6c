"""Thacker's parabolic bowl: wetting and drying against an exact solution, on a sequence of meshes.

Thacker (1981) found an exact, periodic solution of the nonlinear shallow-water equations in
a frictionless paraboloid bowl. The set-up is the one of Thetis's test (after Gourgue et al.
2009): a bowl 50 m deep at its centre and 430.62 km in radius at the still-water line,
``h_b = D0 (1 - r² / L²)``, in a square of 951.6 km; the water surface a paraboloid that
starts 2 m above still water at the centre and oscillates with ``ω = √(8 g D0) / L``
(period 12.0 h), so that the shoreline moves in and out by about 8 km. No friction, no
viscosity, Crank–Nicolson (θ = 1/2), and the wetting-and-drying depth of Kärnä et al. (2011)
with depth scale ``α`` (``ShallowWater(..., wetting_drying=α)``).

Each mesh (n x n squares, each cut into two triangles) runs one period with its own step
and ``α``, refined together. Measured: the L2 error of ``η`` over the exact wet region (exact
depth at least 1 m) at each quarter period, relative to the initial elevation's norm; the
error at the centre (as Thetis measures it: relative to the initial 2 m); their observed
orders between successive meshes, against h and against α; and the drift of the conserved
volume ``∫ H̃ dx``. The default meshes are the docs' (10 x 10, 600 s, 8 m; 20 x 20, 300 s,
4 m; 40 x 40, 200 s, 3 m): at 40 x 40 Newton fails near t = T with α = 2.5 m (200 s) and
α = 2 m (150 s), so α falls by only 4/3 in the last refinement, and the error with it.

    mpirun -n 2 python demos/thacker_bowl.py          # 10x10, 20x20, 40x40: a few minutes on 2 cores
    python demos/thacker_bowl.py --quick              # the tests' version: 10x10 and 20x20

Writes to --out: metrics.json, profiles.png (the surface along y = 0 at t = 0, T/4, T/2,
3T/4 on the finest mesh, computed and exact, with the bed), centre.png (centre elevation
against time, each mesh and exact), convergence.png (the errors against h and against α,
log-log, with order-2 lines), volume.png (relative volume drift against time).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path

from _common import COMM, log  # demos/ is on sys.path when a script there runs

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import torch
import ufl

import deepnum_fem as dnf
from deepnum_fem.models import ShallowWater

#: The bowl (m, m, m, m/s²): depth at the centre, radius at the still-water line, initial
#: elevation at the centre; the side of the square domain (m).
D0, L, ETA0, G = 50.0, 430620.0, 2.0, 9.81
SIDE = 951646.46
A = ((D0 + ETA0) ** 2 - D0**2) / ((D0 + ETA0) ** 2 + D0**2)
OMEGA = math.sqrt(8 * G * D0) / L            # rad/s
PERIOD = 2 * math.pi / OMEGA                 # s, 43,193 s
WET_DEPTH = 1.0                              # m: the error is measured where the exact depth is at least this
#: (n, dt s, α m) of the default sequence: the docs' 10x10 and 20x20 (Thetis's coarse case), then 40x40
MESHES = ((10, 600.0, 8.0), (20, 300.0, 4.0), (40, 200.0, 3.0))
QUICK_MESHES = MESHES[:2]
PROFILE_POINTS = 481                         # along y = 0, odd: one is the centre
QUARTERS = {1: "T/4", 2: "T/2", 3: "3T/4", 4: "T"}   # the error is measured at k T/4


def _c(t: float) -> float:
    return 1 - A * math.cos(OMEGA * t)


def exact_elevation(x: np.ndarray, t: float) -> np.ndarray:
    """Thacker's ``η`` (m) at points ``x`` (``(2 or 3, n)``, m) and time ``t`` (s), where wet (below
    the bed where dry: take the max with ``-h_b`` for the surface)."""
    c, r2 = _c(t), x[0] ** 2 + x[1] ** 2
    return D0 * (math.sqrt(1 - A * A) / c - 1 - r2 / L**2 * ((1 - A * A) / c**2 - 1))


def bed_depth(x: np.ndarray) -> np.ndarray:
    """``h_b`` (m, positive down) at points ``x`` (m)."""
    return D0 * (1 - (x[0] ** 2 + x[1] ** 2) / L**2)


def shoreline_radius(t: float) -> float:
    """Radius (m) of the exact shoreline at time ``t`` (s): where ``h_b + η = 0``."""
    return L * math.sqrt(_c(t) / math.sqrt(1 - A * A))


def bowl(comm, n: int, dt: float, alpha: float) -> ShallowWater:
    """The bowl on an n x n mesh of the square (walls all round), with step ``dt`` (s) and
    wetting-drying depth scale ``alpha`` (m)."""
    mesh = dolfinx.mesh.create_rectangle(comm, [[-SIDE / 2, -SIDE / 2], [SIDE / 2, SIDE / 2]], [n, n])
    mesh.topology.create_connectivity(1, 2)
    facets = dolfinx.mesh.exterior_facet_indices(mesh.topology)
    tags = dolfinx.mesh.meshtags(mesh, 1, facets, np.full(len(facets), 1, dtype=np.int32))
    bed = dolfinx.fem.Function(dolfinx.fem.functionspace(mesh, ("Lagrange", 1)), name="bed")
    bed.interpolate(bed_depth)
    return ShallowWater(mesh, bed, dt=dt, theta=0.5, drag=0.0, viscosity=0.0, facet_tags=tags,
                        wetting_drying=alpha)


class WetError:
    """L2 error of ``η`` over the exact wet region (exact depth ≥ 1 m) at a time, relative to the
    L2 norm of the initial elevation over its wet region (at t = T this is the usual relative
    error; a quarter period in, the exact surface is nearly flat, and its own norm would be
    tiny). The exact elevation and bed are UFL expressions, integrated at quadrature degree 6."""

    def __init__(self, model: ShallowWater):
        self.model = model
        self.eta = dolfinx.fem.Function(model.Q)
        self.c = dolfinx.fem.Constant(model.mesh, 1.0)
        x = ufl.SpatialCoordinate(model.mesh)
        r2 = (x[0] ** 2 + x[1] ** 2) / L**2
        truth = D0 * (math.sqrt(1 - A * A) / self.c - 1 - r2 * ((1 - A * A) / self.c**2 - 1))
        wet = ufl.conditional(ufl.ge(D0 * (1 - r2) + truth, WET_DEPTH), 1.0, 0.0)
        dx = ufl.dx(metadata={"quadrature_degree": 6})
        self.error = dolfinx.fem.form(wet * (self.eta - truth) ** 2 * dx)
        self.c.value = _c(0.0)
        self.norm0 = math.sqrt(self._total(dolfinx.fem.form(wet * truth**2 * dx)))   # m·m

    def _total(self, form) -> float:
        return self.model.comm.allreduce(dolfinx.fem.assemble_scalar(form))

    def __call__(self, state: torch.Tensor, t: float) -> float:
        """The relative error of ``state`` at time ``t`` (s) (collective)."""
        self.c.value = _c(t)
        self.eta.x.array[: self.model.n_eta] = self.model.elevation(state).numpy()
        self.eta.x.scatter_forward()
        return math.sqrt(self._total(self.error)) / self.norm0


def run_mesh(n: int, dt: float, alpha: float, x_profile: np.ndarray) -> dict:
    """One period on the n x n mesh; the series and errors (the same on every rank)."""
    model = bowl(COMM, n, dt, alpha)
    steps = round(PERIOD / dt)
    if steps % 4:
        raise ValueError(f"dt = {dt} s: {steps} steps per period, not a multiple of 4 (errors at T/4 ...)")
    points = np.column_stack([x_profile, np.zeros_like(x_profile)])
    sensors = model.sensors(points)
    wet_error = WetError(model)
    quarter = {k * steps // 4: k for k in QUARTERS}
    state0 = model.initial_state(lambda x: exact_elevation(x, 0.0))
    volumes, errors = [], {}

    def observe(w, k):
        volumes.append(float(model.volume(w)))
        if k + 1 in quarter:
            errors[quarter[k + 1]] = wet_error(w, model.time(k))
        return sensors.local(w)

    t0 = time.perf_counter()
    with torch.no_grad():
        volume0 = float(model.volume(state0))
        _, local = model.simulate(steps, state0, observe=observe)
        profiles = torch.cat([sensors(state0)[None], dnf.parallel.sum(local, COMM)]).numpy()
    wall = time.perf_counter() - t0
    dofs = model.W.dofmap.index_map.size_global * model.W.dofmap.index_map_bs
    model.destroy()
    times = np.arange(steps + 1) * dt
    centre = profiles[:, len(x_profile) // 2]
    centre_error = np.abs(centre - np.array([exact_elevation(np.zeros(2), t) for t in times])) / ETA0
    drift = np.array([volume0, *volumes]) / volume0 - 1
    log(f"{n:3d} x {n:<3d} dt {dt:5.0f} s  α {alpha:g} m  {dofs:6d} dofs  {steps} steps  {wall:6.1f} s: "
        f"wet L2 error at T {errors[4]:.3e}, centre {centre_error[-1]:.3e}, volume drift {np.abs(drift).max():.1e}")
    return {"n": n, "h_km": SIDE / n / 1e3, "dt_s": dt, "alpha_m": alpha, "dofs": dofs, "steps": steps,
            "errors": errors, "centre_error_end": float(centre_error[-1]),
            "centre_error_max": float(centre_error.max()), "volume_drift_max": float(np.abs(drift).max()),
            "wall_s": wall, "times": times, "profiles": profiles, "drift": drift}


def observed_orders(runs: list[dict], error, scale: str = "h_km") -> list[float]:
    """``log(e_i / e_{i+1}) / log(s_i / s_{i+1})`` between successive meshes for ``error(run)``,
    against the run's ``scale`` (``"h_km"`` or ``"alpha_m"``)."""
    return [math.log(error(a) / error(b)) / math.log(a[scale] / b[scale]) for a, b in itertools.pairwise(runs)]


def metrics_of(runs: list[dict], wall: float) -> dict:
    """metrics.json: one row per mesh under ``meshes``, then the observed orders and totals."""
    rows = [{"mesh": f"{r['n']} x {r['n']}", "h_km": r["h_km"], "dt_s": r["dt_s"], "alpha_m": r["alpha_m"],
             "dofs": r["dofs"], "steps": r["steps"],
             **{f"wet_l2_error_{when}": r["errors"][k] for k, when in QUARTERS.items()},
             "centre_error_end": r["centre_error_end"], "centre_error_max": r["centre_error_max"],
             "volume_drift_max": r["volume_drift_max"], "wall_s": r["wall_s"]} for r in runs]
    orders = {f"order_wet_l2_{when}": observed_orders(runs, lambda r, k=k: r["errors"][k])
              for k, when in QUARTERS.items()}
    orders["order_centre_end"] = observed_orders(runs, lambda r: r["centre_error_end"])
    orders["order_wet_l2_T_in_alpha"] = observed_orders(runs, lambda r: r["errors"][4], "alpha_m")
    return {"ranks": COMM.size, "period_s": PERIOD, "wet_depth_m": WET_DEPTH,
            "shoreline_radius_km_min_max": [shoreline_radius(0.0) / 1e3, shoreline_radius(PERIOD / 2) / 1e3],
            "meshes": rows, **orders,
            "volume_drift_max": max(r["volume_drift_max"] for r in runs), "wall_seconds": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("out/thacker"))
    p.add_argument("--quick", action="store_true", help="10x10 and 20x20 only (the tests)")
    p.add_argument("--mesh", nargs=3, type=float, action="append", metavar=("N", "DT", "ALPHA"),
                   help="a mesh of N x N squares, step DT (s), depth scale ALPHA (m); repeat for a sequence "
                        "(replaces the default 10 600 8, 20 300 4, 40 200 3)")
    p.add_argument("--min-order", type=float, default=1.5,
                   help="exit non-zero if the wet L2 error at T falls slower than α^MIN_ORDER between the last "
                        "two meshes (α, not h: α sets the error once h and dt are fine enough)")
    args = p.parse_args()
    meshes = [(int(n), dt, alpha) for n, dt, alpha in args.mesh] if args.mesh else (
        QUICK_MESHES if args.quick else MESHES)
    args.out.mkdir(parents=True, exist_ok=True)
    log(f"Thacker's bowl: period {PERIOD:.0f} s, shoreline between {shoreline_radius(0.0) / 1e3:.1f} and "
        f"{shoreline_radius(PERIOD / 2) / 1e3:.1f} km from the centre; {COMM.size} rank(s)")
    t0 = time.perf_counter()
    x_profile = np.linspace(-SIDE / 2, SIDE / 2, PROFILE_POINTS)
    runs = [run_mesh(n, dt, alpha, x_profile) for n, dt, alpha in meshes]
    metrics = metrics_of(runs, time.perf_counter() - t0)
    if COMM.rank == 0:
        _figures(args.out, runs, x_profile)
        (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(json.dumps(metrics, indent=2), flush=True)
    order = metrics["order_wet_l2_T_in_alpha"][-1] if len(runs) > 1 else math.inf
    if order < args.min_order:
        raise SystemExit(f"the wet L2 error at T fell as α^{order:.2f}, slower than the required α^{args.min_order}")


def _figures(out: Path, runs: list[dict], x_profile: np.ndarray) -> None:
    """The four figures (rank 0)."""
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, draw in (("profiles.png", _profiles), ("centre.png", _centre), ("convergence.png", _convergence),
                       ("volume.png", _volume)):
        fig = draw(plt, runs, x_profile)
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)


def _profiles(plt, runs, x_profile):
    """The water surface along y = 0 at t = 0, T/4, T/2, 3T/4 on the finest mesh, computed and
    exact (where dry: the bed), with the bed; the whole diameter and a close-up of the right shore."""
    run = runs[-1]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    fine = np.stack([np.linspace(-SIDE / 2, SIDE / 2, 4001), np.zeros(4001)])
    bed, bed_at_sensors = -bed_depth(fine), -bed_depth(np.stack([x_profile, np.zeros_like(x_profile)]))
    for ax in axes:
        ax.fill_between(fine[0] / 1e3, bed, -60, color="0.85", lw=0)
        ax.plot(fine[0] / 1e3, bed, color="0.4", lw=1, label="bed")
        for j, quarter in enumerate((0, 1, 2, 3)):
            k = quarter * run["steps"] // 4
            t = run["times"][k]
            ax.plot(fine[0] / 1e3, np.maximum(exact_elevation(fine, t), bed), color=f"C{j}", lw=1, ls="--")
            ax.plot(x_profile / 1e3, np.maximum(run["profiles"][k], bed_at_sensors), color=f"C{j}", lw=1.6,
                    label=f"t = {quarter}T/4 ({t / 3600:.1f} h)" if quarter else "t = 0")
    axes[0].set(xlabel="x (km)", ylabel="elevation (m)", ylim=(-52, 14),
                title=f"surface along y = 0, {run['n']} x {run['n']}: computed (solid), exact (dashed)")
    axes[1].set(xlabel="x (km)", xlim=(395, 455), ylim=(-3.5, 3.5), title="close-up of the right shoreline")
    axes[0].legend(fontsize=8, loc="lower center")
    return fig


def _centre(plt, runs, x_profile):
    """The centre elevation against time, each mesh and exact."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    t = np.linspace(0, max(r["times"][-1] for r in runs), 1000)
    ax.plot(t / 3600, [exact_elevation(np.zeros(2), s) for s in t], "k-", lw=2.5, alpha=0.35, label="exact")
    for r in runs:
        ax.plot(r["times"] / 3600, r["profiles"][:, len(x_profile) // 2], lw=1,
                label=f"{r['n']} x {r['n']}, dt {r['dt_s']:.0f} s, α {r['alpha_m']:g} m")
    ax.set(xlabel="t (h)", ylabel="η at the centre (m)", title="centre elevation through one period")
    ax.legend(fontsize=8)
    return fig


def _convergence(plt, runs, x_profile):
    """The errors against h and against α (log-log; the two refined together), with order-2 lines."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, scale, label in ((axes[0], "h_km", "h (km): mesh side / n"), (axes[1], "alpha_m", "α (m)")):
        s = np.array([r[scale] for r in runs])
        for (k, when), marker in zip(QUARTERS.items(), "os^D", strict=True):
            ax.loglog(s, [r["errors"][k] for r in runs], marker=marker, label=f"wet L2, t = {when}")
        ax.loglog(s, [r["centre_error_end"] for r in runs], "k--", marker="x", label="centre, t = T (Thetis's)")
        ax.loglog(s, runs[0]["errors"][4] * (s / s[0]) ** 2, color="0.5", lw=4, alpha=0.35, label="order 2")
        ax.set(xlabel=label, title=f"error against {'h' if scale == 'h_km' else 'α'}")
        ax.set_xticks(s, [f"{v:.3g}" for v in s], minor=False)
        ax.set_xticks([], minor=True)
    axes[0].set_ylabel("relative error")
    axes[1].legend(fontsize=7)
    fig.suptitle("Thacker's bowl: " + ", ".join(f"{r['n']}x{r['n']} {r['dt_s']:.0f} s α {r['alpha_m']:g} m"
                                                for r in runs), fontsize=9)
    return fig


def _volume(plt, runs, x_profile):
    """The relative drift of the conserved volume ∫ H̃ dx against time."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for r in runs:
        ax.plot(r["times"] / 3600, r["drift"], lw=1, label=f"{r['n']} x {r['n']}")
    ax.set(xlabel="t (h)", ylabel="V(t) / V(0) - 1", title="volume ∫ H̃ dx: relative drift")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax.legend(fontsize=8)
    return fig


if __name__ == "__main__":
    main()
