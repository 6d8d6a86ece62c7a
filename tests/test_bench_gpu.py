"""benchmarks/bench_gpu.py runs end to end on the CPU (``--device cpu --tiny``): the script a GPU
machine would run is kept working where CI has no GPU. Nothing about its speed is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_gpu_smoke_on_cpu():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/bench_gpu.py"), "--device", "cpu", "--tiny",
                           "--rounds", "2"], capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "fedrs-rsclip-tiny/random-init (32 px) on cpu" in out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| fp32 |")
            or line.startswith("| bf16 |")}
    assert set(rows) == {"fp32", "bf16"}
    assert "bf16 / fp32 speed: training" in out
    drift_rows = [line for line in out.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(drift_rows) == 2 and "nan" not in out.lower()
