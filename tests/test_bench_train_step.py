"""The training-step benchmark runs end to end at the reduced sizes (``--quick --tiny``): a smoke
test, not a timing. Its speed numbers are read by people, never asserted; what is asserted is
that every table prints its rows and that the two sides compute the same step (the losses,
gradients and the state after one AdamW step agree from identical weights)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_step_benchmark_tiny_run(tmp_path):
    out_json = tmp_path / "numbers.json"
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/bench_train_step.py"), "--quick",
                          "--tiny", "--json", str(out_json)], capture_output=True, text=True,
                         timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    for title in ("1. One training step", "2. Correctness", "3. The step inside nndsl's "
                  "training loop", "4. Peak memory"):
        assert title in out.stdout
    for row in ("resnet18", "gpt_mini", "torchvision-style", "nanoGPT, SDPA",
                "attention written out"):
        assert row in out.stdout
    assert "load average" in out.stdout and "torch threads" in out.stdout
    numbers = json.loads(out_json.read_text())
    steps = numbers["step"]
    assert set(steps) == {"resnet18/torchvision-style", "gpt_mini/nanoGPT, SDPA",
                          "gpt_mini/nanoGPT, attention written out"}
    assert all(r["ours"] > 0 and r["hand"] > 0 and r["q1"] <= r["ratio"] <= r["q3"]
               for r in steps.values())
    for key, r in numbers["correctness"].items():
        assert r["loss_rel"] < 1e-5, (key, r)                   # the same loss
        assert abs(r["loss_nndsl"] - r["loss_hand"]) < 1e-4, (key, r)
        assert r["grad_rel"] < 1e-4, (key, r)                   # the same gradients
        assert r["state_rel"] < 1e-4, (key, r)                  # the same update
    for name, r in numbers["loop"].items():
        assert r["loss_rel"] < 1e-4, (name, r)                  # the loop trains the same
        assert r["steps"] >= 4
    memory = numbers["memory"]
    assert len(memory) == 3
    assert all(r["nndsl"]["steps_peak"] > 0 and r["hand"]["steps_peak"] > 0
               for r in memory.values())
