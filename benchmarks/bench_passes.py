"""What the optimizer buys: forward time at O0 vs O1/O2, onnxruntime on O2 vs O0 exports,
and the time each pass takes.

    python benchmarks/bench_passes.py [--quick]

Targets on a 2-core CPU: O2 >= 1.2x faster than O0 for resnet18 (batch 8, 224x224); O1 >= 1.5x
faster than O0 for gpt_mini at sequence 512 (fused attention); all passes together under 100 ms
for resnet50. Timings alternate between the variants and report medians of per-pair ratios.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnxruntime as ort
import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nndsl  # noqa: E402
from benchmarks.timing import paired  # noqa: E402


def torch_runner(spec, level, weights, xs):
    m = nndsl.compile(spec, opt=level).to_torch(weights=weights).eval()

    def run():
        with torch.no_grad():
            m(**xs)
    run()
    return run


def ort_runner(spec, level, weights, xs):
    model = nndsl.compile(spec, opt=level).to_onnx(weights=weights)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {k: v.numpy() for k, v in xs.items()}
    sess.run(None, feeds)
    return lambda: sess.run(None, feeds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    reps = 5 if args.quick else 15
    console = Console()

    resnet, gpt = ROOT / "specs/vision/resnet18.nn", ROOT / "specs/transformers/gpt_mini.nn"
    cases = [
        ("resnet18 8x3x224x224", resnet, {"batch": 8}, [("O0", "O2", 1.2)]),
        ("gpt_mini 4x512", gpt, {"batch": 4, "T": 512}, [("O0", "O1", 1.5), ("O0", "O2", None)]),
    ]
    table = Table(title="Forward time by optimization level (eval, no_grad)")
    for col in ("model", "backend", "levels", "base", "optimized", "speed-up", "target"):
        table.add_column(col, justify="right" if col in ("base", "optimized", "speed-up") else "left")
    for label, spec, shape, pairs in cases:
        c0 = nndsl.compile(spec, opt="O0")
        weights = c0.to_torch().state_dict()
        xs = c0.example_inputs(**shape)
        for base, level, target in pairs:
            a, b, r = paired(torch_runner(spec, base, weights, xs),
                             torch_runner(spec, level, weights, xs), reps)
            table.add_row(label, "torch", f"{base} -> {level}", f"{a * 1e3:.1f} ms",
                          f"{b * 1e3:.1f} ms", f"{r:.2f}x",
                          f">= {target}x {'met' if r >= target else 'missed'}" if target else "")
        a, b, r = paired(ort_runner(spec, "O0", weights, xs), ort_runner(spec, "O2", weights, xs),
                         reps)
        table.add_row(label, "onnxruntime", "O0 -> O2", f"{a * 1e3:.1f} ms", f"{b * 1e3:.1f} ms",
                      f"{r:.2f}x", "")
    console.print(table)

    timing = Table(title="Time per pass (O2 pipeline, best of 5 compiles)")
    timing.add_column("pass")
    specs = {"resnet50": ROOT / "specs/vision/resnet50.nn", "gpt_mini": gpt}
    for name in specs:
        timing.add_column(name, justify="right")
    per = {}
    for name, spec in specs.items():
        text = spec.read_text()
        best = None
        for _ in range(5):
            c = nndsl.compile(text, opt="O2")
            times = [(r.name, r.seconds) for r in c.passes]
            if best is None or sum(t for _, t in times) < sum(t for _, t in best):
                best = times
        per[name] = best
    names = [n for n, _ in per["resnet50"]]
    for i, pname in enumerate(names):
        timing.add_row(pname, *(f"{per[s][i][1] * 1e3:.1f} ms" for s in specs))
    totals = {s: sum(t for _, t in per[s]) for s in specs}
    timing.add_row("all passes", *(f"{totals[s] * 1e3:.1f} ms" for s in specs))
    console.print(timing)
    print(f"resnet50 passes total {totals['resnet50'] * 1e3:.0f} ms (target < 100 ms: "
          f"{'met' if totals['resnet50'] < 0.1 else 'missed'}); torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {reps} alternating runs per pair")


if __name__ == "__main__":
    main()
