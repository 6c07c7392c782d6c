"""Run benchmark scripts (with ``--json``) and demos, and commit-ready records of what they measured.

    python bench/record.py cardiac --ranks 1 2
    python bench/record.py fem_operator --ranks 1 2 -- --quick
    python bench/record.py all                  # the benchmarks at the sizes the docs show
    python bench/record.py cardiac_hybrid       # a demo (demos/NAME.py), on 2 ranks

A benchmark run writes ``bench/results/NAME.nRANKS.json``: the script's own ``--json`` output
under ``"result"``, untouched, and around it the conditions of the run: the command line, the
git commit (and whether the package or benchmarks had uncommitted changes), the date it finished, the
host's CPU count and load average, the versions of deepnum-fem, DOLFINx, PETSc and torch, the
wall time, and the lines the script printed. A demo run copies the demo's ``metrics.json`` and
the figures listed in ``DEMO_FIGURES`` to ``docs/figures/NAME/``, with the same conditions in
``run.json``. The documentation's tables are generated from these files when the docs are
built (``docs/_ext/benchtables.py``, ``docs/_ext/demoresults.py``); nothing is copied by hand.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
FIGURES = REPO / "docs" / "figures"

#: the arguments each script is recorded with (sized to finish in minutes on 2 cores), or a
#: dict of them per rank count
DEFAULT_ARGS = {
    "air_quality": [],          # ~103,000 P1 dofs, a 1,000-step gradient: the longest of them
    "cardiac": ["--repeats", "5"],
    # TT2006 on a >= 200k-node biventricle (h = 0.28 mm): long (see its docstring); not part of "all"
    "cardiac_scale": ["--h", "0.28", "--steps", "100", "--grad-steps", "12", "--every", "4", "--repeats", "3"],
    "coastal_bay": [],          # the Rade de Brest at ~101,000 P2-P1 dofs; --sweep (2 ranks) adds a size sweep
    "fem_operator": ["--quick", "--repeats", "5"],
    # ours and fenicsx-beat on the same meshes: dt refined at dx 0.5, dx refined at dt 0.05
    # (about 6 min on 1 rank, 40 min on 2; dx 0.1 at dt 0.01 would be 1 h more, 0.005 2 h)
    "niederer": {1: ["--cases", "0.5:0.05", "0.5:0.01", "0.5:0.005"],
                 2: ["--cases", "0.5:0.05", "0.5:0.01", "0.5:0.005", "0.2:0.05", "0.2:0.01", "0.1:0.05"]},
    "shallow_water": [],
    "transport": ["--repeats", "5"],
}

#: benchmarks left out of ``all``: they take far longer than minutes
LONG = {"cardiac_scale"}

#: the figures of each demo that the docs show (the demos write more)
DEMO_FIGURES = {
    "cardiac_hybrid": ["activation.png", "loss.png"],
    "ecg_personalisation": ["ecg.png", "scar.png", "loss.png"],
    "air_quality_inversion": ["emissions.png", "sensors.png", "concentration.png"],
    "coastal_closure": ["bathymetry.png", "gauges.png", "drag.png", "snapshot.png"],
    "channel_inversion": ["manning.png", "stations.png"],
    "thacker_bowl": ["profiles.png", "centre.png", "convergence.png", "volume.png"],
}

_VERSIONS = """
import json, deepnum_fem, dolfinx, torch
from petsc4py import PETSc
print(json.dumps({"deepnum_fem": deepnum_fem.__version__, "dolfinx": dolfinx.__version__,
                  "petsc": ".".join(map(str, PETSc.Sys.getVersion())), "torch": torch.__version__}))
"""


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()


def _run(script: Path, ranks: int, args: list[str]) -> tuple[dict, str]:
    """Run ``script ARGS`` under ``mpirun -n RANKS``; the conditions of the run and its stdout."""
    bindir = Path(sys.executable).parent
    versions = json.loads(subprocess.run([sys.executable, "-c", _VERSIONS], capture_output=True, text=True,
                                         check=True).stdout)
    cmd = [str(bindir / "mpirun"), "-n", str(ranks), sys.executable, str(script), *args]
    shown = f"mpirun -n {ranks} python {script.relative_to(REPO)} {shlex.join(args)}".rstrip()
    print(f"[record] {shown}", file=sys.stderr, flush=True)
    load = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"[record] {shown} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return {
        "script": str(script.relative_to(REPO)),
        "command": shown,
        "ranks": ranks,
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", "deepnum_fem", "bench/*.py",
                           "demos")),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load],
        "versions": versions,
        "wall_s": round(wall, 1),
    }, proc.stdout


def record(name: str, ranks: int, args: list[str]) -> Path:
    """Run ``bench/NAME.py ARGS --json`` on ``ranks`` ranks and write its record; return the path."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        entry, stdout = _run(BENCH / f"{name}.py", ranks, [*args, "--json", str(out)])
        result = json.loads(out.read_text())
    entry["command"] = entry["command"].replace(f" --json {out}", "")
    entry["log"] = [line for line in stdout.splitlines() if not line.startswith("{")]   # the JSON is under result
    entry["result"] = result
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.n{ranks}.json"
    path.write_text(json.dumps(entry, indent=2) + "\n")
    print(f"[record] wrote {path.relative_to(REPO)} ({entry['wall_s']:.0f} s)", file=sys.stderr, flush=True)
    return path


def record_demo(name: str, ranks: int, args: list[str]) -> Path:
    """Run ``demos/NAME.py ARGS`` on ``ranks`` ranks; copy its metrics and figures to docs/figures/NAME."""
    with tempfile.TemporaryDirectory() as tmp:
        entry, stdout = _run(REPO / "demos" / f"{name}.py", ranks, [*args, "--out", tmp])
        entry["command"] = entry["command"].replace(f" --out {tmp}", "")
        folder = FIGURES / name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp) / "metrics.json", folder / "metrics.json")
        for figure in DEMO_FIGURES.get(name, []):
            shutil.copyfile(Path(tmp) / figure, folder / figure)
    lines = stdout.splitlines()
    end = next((i for i, line in enumerate(lines) if line.startswith("{")), len(lines))   # metrics.json follows
    entry["log"] = lines[max(0, end - 5):end]
    (folder / "run.json").write_text(json.dumps(entry, indent=2) + "\n")
    print(f"[record] wrote {folder.relative_to(REPO)} ({entry['wall_s']:.0f} s)", file=sys.stderr, flush=True)
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    demos = sorted(path.stem for path in (REPO / "demos").glob("*.py"))
    p.add_argument("name", choices=[*DEFAULT_ARGS, "all", *demos])
    p.add_argument("--ranks", type=int, nargs="+", default=None, help="default: 1 2 (benchmarks), 2 (demos)")
    p.add_argument("args", nargs="*", help="after --: the script's arguments (default: the recorded ones)")
    # split at "--" ourselves: argparse (3.12) rejects "NAME --ranks 1 2 -- ARGS", the
    # positional args having been taken, empty, with NAME
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    ns = p.parse_args(argv[:cut])
    ns.args = argv[cut + 1:]
    if ns.name in demos:
        for ranks in ns.ranks or [2]:
            record_demo(ns.name, ranks, ns.args)
        return
    names = [n for n in DEFAULT_ARGS if n not in LONG] if ns.name == "all" else [ns.name]
    for name in names:
        for ranks in ns.ranks or [1, 2]:
            default = DEFAULT_ARGS[name]
            record(name, ranks, ns.args or (default[ranks] if isinstance(default, dict) else default))


if __name__ == "__main__":
    main()
