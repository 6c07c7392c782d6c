"""Other codes that the benchmarks compare against, installed outside the repository.

    python bench/peers.py fenicsx-beat        # install (once) and print the folder

fenicsx-beat 0.7.2 (Finsberg et al., FEniCSx cardiac electrophysiology) declares
``fenics-dolfinx`` and ``scifem`` as dependencies; here DOLFINx comes from the
``dolfinx-solver-real`` wheel under another name, so pip would try to build a second DOLFINx.
It is therefore installed with ``pip install --no-deps --target`` into
``~/.cache/deepnum-fem/peers/fenicsx-beat-0.7.2`` (``$DEEPNUM_FEM_PEERS`` moves it), together
with the pure-Python packages it and its code generator (gotranx, which turns the TT2006
``.ode`` file shipped in fenicsx-beat's wheel into a numpy module) import and our venv lacks,
each pinned to the version this was run with. ``scifem`` is not needed: fenicsx-beat imports it
only for DOLFINx < 0.11. Nothing is installed into the venv itself: the folder is put first on
``sys.path`` by :func:`activate`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: what each peer installs (``--no-deps``), pinned
PEERS = {
    "fenicsx-beat": [
        "fenicsx-beat==0.7.2",
        "gotranx==2.9.0", "lark==1.3.1", "structlog==26.1.0", "typer==0.29.2", "click==8.5.1",
        "shellingham==1.5.4", "annotated-doc==0.0.7",          # gotranx's imports (its CLI module)
        "pint==0.26.2", "flexcache==0.3", "flexparser==0.4",    # units, both packages
        "scipy==1.18.1",                                        # beat.ecg imports scipy.signal
    ],
}


def folder(name: str) -> Path:
    root = Path(os.environ.get("DEEPNUM_FEM_PEERS", Path.home() / ".cache" / "deepnum-fem" / "peers"))
    version = PEERS[name][0].split("==")[1]
    return root / f"{name}-{version}"


def install(name: str) -> Path:
    """Install ``name`` into :func:`folder` unless the same pins are already there; the folder."""
    target = folder(name)
    stamp = target / ".installed"
    pins = "\n".join(PEERS[name])
    if stamp.is_file() and stamp.read_text() == pins:
        return target
    target.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--upgrade", "--target", str(target), *PEERS[name]]
    print(f"[peers] {' '.join(cmd)}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    stamp.write_text(pins)
    return target


def activate(name: str, comm=None) -> Path:
    """Install ``name`` (on rank 0 of ``comm``) and put it first on ``sys.path``; the folder."""
    rank = 0 if comm is None else comm.rank
    error = None
    if rank == 0:
        try:
            install(name)
        except (OSError, subprocess.CalledProcessError) as e:
            error = f"installing {name} failed: {e}"
    if comm is not None:
        error = comm.bcast(error, root=0)
    if error:
        raise RuntimeError(error)
    target = folder(name)
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in PEERS:
        sys.exit(f"usage: python bench/peers.py {{{','.join(PEERS)}}}")
    print(install(sys.argv[1]))
