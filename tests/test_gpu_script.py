"""bench/gpu_cardiac.py, the prepared GPU check: it runs where there is no GPU (on the CPU, and
says so), it checks the device's ionic step against the CPU's, and asking for CUDA where torch
sees none is a clear error, not a silent fallback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_cardiac.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--quick", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.skip_in_parallel
def test_the_gpu_script_runs_on_the_device_it_finds(tmp_path):
    out = tmp_path / "gpu.json"
    proc = _run("--device", "auto", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert result["agreement_max_relative"] < 1e-10
    for name in ("ionic", "hybrid"):
        assert result["ionic"][name]["step_ms"] > 0
        # the backward pass costs more than the step it differentiates
        assert result["ionic"][name]["forward_backward_ms"] > result["ionic"][name]["step_ms"]
    step = result["step"]
    assert step["nodes"] == 1000 and step["step_ms"] > step["ionic_ms"] > 0


@pytest.mark.skip_in_parallel
def test_asking_for_cuda_without_a_gpu_is_an_error_that_says_so():
    proc = _run("--device", "cuda")
    if torch.cuda.is_available():
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:
        assert proc.returncode != 0
        assert "sees no CUDA device" in proc.stderr
