"""The deepnum-fem command: info prints once, also under mpirun."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import dolfinx
import pytest
import torch

BIN = Path(sys.executable).parent
MPIRUN = BIN / "mpirun" if (BIN / "mpirun").exists() else Path(shutil.which("mpirun") or "mpirun")
DNF = BIN / "deepnum-fem" if (BIN / "deepnum-fem").exists() else Path(shutil.which("deepnum-fem") or "deepnum-fem")


@pytest.mark.skip_in_parallel
@pytest.mark.parametrize("ranks", [1, 2])
def test_info_reports_versions_once(ranks):
    cmd = [str(MPIRUN), "-n", str(ranks), str(DNF), "info"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.count("deepnum-fem  ") == 1
    assert f"DOLFINx      {dolfinx.__version__}" in out
    assert f"torch        {torch.__version__}" in out
    assert "mumps yes" in out and "scalar float64" in out
    assert f"ranks        {ranks}" in out


@pytest.mark.skip_in_parallel
def test_demo_command_passes_options_to_the_demo(tmp_path):
    import json

    cmd = [str(DNF), "demo", "quickstart", "--iterations", "5", "--target", "1", "--h", "0.1", "--out", str(tmp_path)]
    subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["iterations"] == 5 and metrics["ranks"] == 1


@pytest.mark.skip_in_parallel
@pytest.mark.parametrize("env, threads", [({}, 1), ({"DNF_TORCH_THREADS": "2"}, 2), ({"OMP_NUM_THREADS": "2"}, 2),
                                          ({"DNF_TORCH_THREADS": "0"}, None)])
def test_torch_uses_one_thread_unless_told_otherwise(env, threads):
    """Serially too: torch's thread per core spun against the solver's work on a loaded machine."""
    import os

    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "DNF_TORCH_THREADS")}
    code = "import deepnum_fem, torch; print(torch.get_num_threads())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**base, **env})
    if threads is None:
        assert proc.returncode != 0 and "DNF_TORCH_THREADS must be a positive integer" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert int(proc.stdout.strip().splitlines()[-1]) == threads
