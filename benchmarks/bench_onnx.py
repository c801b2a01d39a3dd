"""ONNX export and onnxruntime inference: nndsl's IR lowering vs torch.onnx.export.

For resnet18 and gpt_mini, in one run:
  1. the time of a whole export to a file (graph, weights, serialization): nndsl (compile +
     to_onnx + save) vs ``torch.onnx.export(..., dynamo=False)`` of the hand-written PyTorch model;
  2. onnxruntime inference time of both files on the same inputs.
Targets: our export at least 5x faster; our model no slower in onnxruntime.

    python benchmarks/bench_onnx.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nndsl  # noqa: E402
from benchmarks.timing import paired  # noqa: E402
from nndsl.backends.onnx import save  # noqa: E402
from tests.reference_models import GPT, ResNet18, to_reference  # noqa: E402

CASES = {
    "resnet18": (ROOT / "specs/vision/resnet18.nn", {}, lambda: ResNet18(), {"batch": 8}),
    "gpt_mini": (ROOT / "specs/transformers/gpt_mini.nn", {}, lambda: GPT(flash=False),
                 {"batch": 4, "T": 128}),
}


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    rep_export, rep_run = (3, 7) if args.quick else (7, 21)
    table = Table(title="ONNX: nndsl (from the IR) vs torch.onnx.export (dynamo=False)")
    for col in ("model", "what", "nndsl", "torch.onnx", "ratio", "target"):
        table.add_column(col, justify="right" if col not in ("model", "what", "target") else "left")
    tmp = Path(tempfile.mkdtemp())
    for name, (spec, params, make_ref, shape) in CASES.items():
        text = spec.read_text()
        c = nndsl.compile(text, params=params)
        weights = c.to_torch().state_dict()
        ref = make_ref().eval()
        ref.load_state_dict(to_reference(ref, weights))
        xs = c.example_inputs(batch=shape["batch"], **{k: v for k, v in shape.items()
                                                        if k != "batch"})
        ours, theirs = tmp / f"{name}.onnx", tmp / f"{name}_torch.onnx"

        def export_ours():
            cc = nndsl.compile(text, params=params)
            save(cc.to_onnx(weights=weights), ours)

        def export_torch():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                names = list(xs)
                dyn = {n: {0: "N"} for n in names}
                if "T" in shape:
                    dyn = {n: {0: "N", 1: "T"} for n in names}
                torch.onnx.export(ref, tuple(xs.values()), str(theirs), input_names=names,
                                  output_names=c.output_names, dynamic_axes=dyn, dynamo=False,
                                  opset_version=17)

        t_torch, t_ours, speedup = paired(export_torch, export_ours, rep_export)
        table.add_row(name, "export to file", f"{t_ours * 1e3:.0f} ms", f"{t_torch * 1e3:.0f} ms",
                      f"{speedup:.1f}x faster", ">= 5x faster")
        feeds = {k: v.numpy() for k, v in xs.items()}
        s_ours, s_torch = session(ours), session(theirs)
        out_ours = s_ours.run(None, feeds)[0]
        out_torch = s_torch.run(None, feeds)[0]
        diff = float(np.abs(out_ours - out_torch).max())
        for s in (s_ours, s_torch):
            s.run(None, feeds)
        r_ours, r_torch, rel = paired(lambda: s_ours.run(None, feeds),
                                      lambda: s_torch.run(None, feeds), rep_run)
        table.add_row(name, f"onnxruntime {'x'.join(str(v) for v in shape.values())}",
                      f"{r_ours * 1e3:.1f} ms", f"{r_torch * 1e3:.1f} ms",
                      f"{rel:.2f}x time", "<= 1.00x")
        table.add_row("", "max |difference|", f"{diff:.1e}", "", "", "")
    Console().print(table)
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, "
          f"{torch.get_num_threads()} threads; {rep_export} exports / {rep_run} runs each, "
          f"alternating; ratios are medians of per-pair ratios")


if __name__ == "__main__":
    main()
