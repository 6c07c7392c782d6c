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
