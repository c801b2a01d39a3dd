"""nndsl's torch O2 against onnxruntime on the convnets of the zoo, on the CPU.

    python benchmarks/bench_convnets.py                       # resnet18, mobilenet_v2, efficientnet_b0
    python benchmarks/bench_convnets.py --batch 8 --time 20   # longer: a steadier median
    python benchmarks/bench_convnets.py --only mobilenet --small --batch 1 --time 0.5   # smoke

Per model, in one process and on the same inputs and weights: torch O1, torch O2, torch O2 with
its oneDNN mode off (``GraphModule.use_onednn(False)``: every op its plain torch op, as before
that mode), onnxruntime on nndsl's O2 export, and the hand-written torchvision-style model of
``tests/reference_models.py`` where there is one (eval mode, NCHW). Every path's outputs are
checked against torch O0's (``max |out - ref| / max |ref|``, after the weights' constant
tensors are perturbed so that the output depends on the input); then the paths are timed
alternately (``nndsl.bench.measure.time_rounds``: each round runs each path once, the order
rotated), and each speed is the median of per-round ratios, so that the machine's drift touches
both sides of each ratio alike. The table's ``÷ ORT`` column is torch O2's time over
onnxruntime's (1.00: as fast; the goal is at most 1.05). Exit status 1 when some path's outputs
disagree with O0's by more than ``--tol``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import nndsl  # noqa: E402
from helpers import perturbed  # noqa: E402
from nndsl.bench import machine  # noqa: E402
from nndsl.bench.measure import Result, deviation, ratios, time_rounds  # noqa: E402
from nndsl.bench.paths import Options, PathSpec, example_inputs  # noqa: E402

MODELS = {"resnet18": ("vision/resnet18.nn", "ResNet18"),
          "mobilenet_v2": ("vision/mobilenet_v2.nn", None),
          "efficientnet_b0": ("vision/efficientnet_b0.nn", "EfficientNet")}


@torch.no_grad()
def _numpy(out) -> list:
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [np.asarray(v.detach().float().numpy() if hasattr(v, "detach") else v) for v in outs]


def torch_path(spec: Path, params: dict, opt: str, sd: dict, feeds: dict, onednn: bool = True):
    m = nndsl.compile(path=spec, params=params, opt=opt).to_torch(weights=sd)
    m.eval().use_onednn(onednn)

    def call():
        with torch.no_grad():
            return m(**feeds)
    return call


def ort_path(spec: Path, params: dict, sd: dict):
    import safetensors.torch
    import tempfile
    with tempfile.TemporaryDirectory() as d:   # the weights as a file: the export's own path
        path = Path(d) / "w.safetensors"
        safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
        built = PathSpec("onnxruntime O2", "onnxruntime", "O2").build(
            Options(str(spec), params=params, weights=str(path), batch=ARGS.batch))
    return built.call


def reference_path(cls_name: str, params: dict, sd: dict, feeds: dict):
    import reference_models as R
    cls = getattr(R, cls_name)
    ref = cls(**params).eval()
    ref.load_state_dict(R.to_reference(ref, sd), strict=True)
    (x,) = feeds.values()

    def call():
        with torch.no_grad():
            return ref(x)
    return call


def bench_model(key: str, params: dict, table: Table) -> bool:
    rel, ref_cls = MODELS[key]
    spec = ROOT / "specs" / rel
    c0 = nndsl.compile(path=spec, params=params, opt="O0")
    sd = perturbed(c0.to_torch(seed=ARGS.seed), ARGS.seed)
    feeds = example_inputs(c0, Options(str(spec), params=params, batch=ARGS.batch, seed=ARGS.seed))
    paths = {"torch O0": torch_path(spec, params, "O0", sd, feeds),
             "torch O1": torch_path(spec, params, "O1", sd, feeds),
             "torch O2": torch_path(spec, params, "O2", sd, feeds),
             "torch O2 plain": torch_path(spec, params, "O2", sd, feeds, onednn=False),
             "onnxruntime O2": ort_path(spec, params, sd)}
    if ref_cls is not None:
        paths["reference"] = reference_path(ref_cls, params, sd, feeds)
    outs = {name: _numpy(call()) for name, call in paths.items()}
    devs = {name: deviation(o, outs["torch O0"]) for name, o in outs.items()}
    del paths["torch O0"]
    results = [Result(name, "") for name in paths]
    times = time_rounds(list(paths.values()), [lambda: None] * len(paths), None, ARGS.time)
    for r, t in zip(results, times):
        r.times = t
    by = {r.name: r for r in results}
    ratios(results, by["torch O1"])
    ort = by["onnxruntime O2"]
    for r in results:
        per = sorted(a / b for a, b in zip(r.times, ort.times))
        q = statistics.quantiles(per, n=4, method="inclusive") if len(per) > 1 else per * 3
        ok = devs[r.name] <= ARGS.tol
        table.add_row(key, r.name, f"{r.median_s * 1e3:.1f}", f"{r.speedup:.2f}×",
                      f"{statistics.median(per):.2f}", f"{q[0]:.2f}–{q[2]:.2f}",
                      f"{devs[r.name]:.1e}" + ("" if ok else " ✗"), str(len(r.times)),
                      end_section=r is results[-1])
    return all(d <= ARGS.tol for d in devs.values())


def main() -> int:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="only the models whose name contains this text")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--time", type=float, default=10.0, help="seconds of timed rounds per model")
    ap.add_argument("--small", action="store_true",
                    help="the reduced sizes of the test suite (tests/sizes/), for a smoke run")
    ap.add_argument("--threads", type=int, help="torch's and onnxruntime's intra-op threads "
                    "(default: torch's own count); 1 is steadier on a shared machine")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-4,
                    help="largest deviation from O0 allowed, relative to its output's scale")
    ARGS = ap.parse_args()
    if ARGS.threads:
        torch.set_num_threads(ARGS.threads)   # onnxruntime's sessions take torch's count
    small = {}
    if ARGS.small:
        from make_zoo_table import load_sizes
        small, _ = load_sizes()
    m = machine()
    load_before = m.get("load", "?")
    table = Table(title=f"torch O2 vs onnxruntime, batch {ARGS.batch}"
                        f"{' (small sizes)' if ARGS.small else ''}, {ARGS.time:g} s of rounds "
                        f"per model; speed: median of per-round ratios")
    for col in ("model", "path", "ms", "speed vs O1", "÷ ORT", "÷ ORT middle half",
                "dev vs O0", "rounds"):
        table.add_column(col, justify="left" if col in ("model", "path") else "right")
    ok, t0 = True, time.perf_counter()
    for key in MODELS:
        if ARGS.only and ARGS.only not in key:
            continue
        ok &= bench_model(key, dict(small.get(key, {})), table)
    Console(width=160).print(table)
    m = machine()
    print(f"torch {m['torch']}, onnxruntime {m['onnxruntime']}, {m['threads']} threads, "
          f"{m.get('cpu_capability', '')}, load average {load_before} before, "
          f"{m.get('load', '?')} after, {time.perf_counter() - t0:.0f} s; outputs "
          f"{'agree' if ok else 'DISAGREE'} with O0 (tolerance {ARGS.tol:g} of the scale)")
    return 0 if ok else 1


ARGS: argparse.Namespace


if __name__ == "__main__":
    sys.exit(main())
