"""The compression benchmark runs end to end (its quick mode): a smoke test, not a timing.

It keeps ``benchmarks/bench_compress.py`` working as the compiler changes, and needs its
anchors installed (Torch-Pruning, onnxruntime's quantization tools). Its numbers are read by
people, never asserted: speed is measured in ``benchmarks/``, not in tests.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_compression_benchmark_quick_run():
    import torch_pruning  # noqa: F401  (an anchor the benchmark compares against)
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/bench_compress.py"), "--quick",
                          "--threads", "1"], capture_output=True, text=True, timeout=900,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    for title in ("1. Held-out accuracy", "2. gpt_mini forward", "3. resnet18",
                  "4. resnet18"):
        assert title in out.stdout
    assert "Torch-Pruning MagnitudePruner" in out.stdout
    assert "ort quantize_static" in out.stdout and "anchor failed" not in out.stdout


def test_levels_benchmark_runs_on_a_small_spec():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/bench_levels.py"), "--only",
                          "fundamentals/perceptron", "--time", "0.2", "--onnx"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    import re
    m = re.search(r"(\d+) faster, (\d+) within noise, (\d+) slower, (\d+) failed", out.stdout)
    assert m and sum(map(int, m.groups()[:3])) == 1 and m.group(4) == "0"   # one model, timed
    assert "fundamentals/perceptron.nn" in out.stdout


def test_levels_benchmark_shows_what_each_pass_buys():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/bench_levels.py"), "--only",
                          "vision/mnist_cnn", "--time", "0.3", "--passes"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "What each O2 pass buys" in out.stdout
    # the O2 passes that change mnist_cnn's graph each get a row, counted over one model
    import nndsl
    o2 = nndsl.compile(path=str(ROOT / "specs/vision/mnist_cnn.nn"), opt="O2")
    changed = {r.name for r in o2.passes if r.changed} - {"dce", "prune_params"}
    rows = [line for line in out.stdout.splitlines() if line.startswith("│ ") and " 1 │" in line
            and line.split("│")[1].strip() in changed]
    assert {r.split("│")[1].strip() for r in rows} == changed and len(changed) >= 2
