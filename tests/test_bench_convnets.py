"""``benchmarks/bench_convnets.py`` runs end to end at the test sizes: a smoke test, not a timing
(its numbers are read by people; speed is measured in ``benchmarks/``, not in tests). It checks
that every path the script times (torch O1, O2, O2 with the oneDNN mode off, onnxruntime, the
hand-written reference) computes what torch O0 does."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_convnets_benchmark_runs_at_the_small_sizes():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/bench_convnets.py"), "--small",
                          "--batch", "1", "--time", "0.2", "--threads", "1"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "outputs agree with O0" in out.stdout
    for model in ("resnet18", "mobilenet_v2", "efficientnet_b0"):
        assert model in out.stdout
    for path in ("torch O2 plain", "onnxruntime O2", "reference"):
        assert path in out.stdout
    assert "load average" in out.stdout
