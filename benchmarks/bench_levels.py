"""O2 against O1 on every model of the zoo: is the most optimized level ever slower?

    python benchmarks/bench_levels.py                 # every model, about 5 minutes on 2 cores
    python benchmarks/bench_levels.py --only vision   # the specs whose path has this text
    python benchmarks/bench_levels.py --time 4 --batch 4

Each model runs through ``nndsl bench``'s machinery (nndsl/bench/): torch O1 and torch O2 (and,
with ``--onnx``, onnxruntime on the O2 export) built from the same weights, checked to compute
the same outputs, and timed alternately on the same inputs. Models over ``--max-params``
parameters run at the reduced size the test suite uses (``tests/sizes/``), marked ``small``. The
verdict says ``slower`` only when O2's whole middle half of per-round ratios lies below 1,
``faster`` when it lies above, and ``noise`` otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import nndsl  # noqa: E402
from make_zoo_table import load_sizes, spec_files  # noqa: E402
from nndsl.bench import Options, bench  # noqa: E402


def models():
    """(spec path, model, stem key) of every model of the zoo."""
    for path in spec_files():
        program, _ = nndsl.api.load(path=path)
        for m in program.models:
            key = path.stem if len(program.models) == 1 else f"{path.stem}:{m}"
            yield path, m, key


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="only the specs whose path contains this text")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--time", type=float, default=2.0, help="seconds of timed rounds per model")
    ap.add_argument("--max-params", type=float, default=30e6,
                    help="above this, the model runs at its test size (default 30M)")
    ap.add_argument("--onnx", action="store_true", help="also onnxruntime on the O2 export")
    args = ap.parse_args()
    small, _ = load_sizes()
    table = Table(title=f"O2 vs O1, batch {args.batch}, {args.time:g} s of rounds per model "
                        f"(speed: median of per-round ratios to O1)")
    for col in ("spec", "model", "size", "O1 ms", "O2 ms", "O2 speed", "middle half",
                "verdict") + (("onnxruntime speed",) if args.onnx else ()):
        table.add_column(col, justify="left" if col in ("spec", "model", "size", "verdict")
                         else "right")
    counts = {"faster": 0, "noise": 0, "slower": 0, "failed": 0}
    t0 = time.perf_counter()
    for path, model, key in models():
        rel = path.relative_to(ROOT / "specs").as_posix()
        if args.only and args.only not in rel:
            continue
        params = {}
        try:
            full = nndsl.compile(path=path, model=model, opt="O0").param_count()
            if full > args.max_params and key in small:
                params = dict(small[key])
            skip = ("O0",) + (() if args.onnx else ("onnxruntime",))
            r = bench(Options(str(path), model=model, params=params, batch=args.batch),
                      schemes=(), compile_=False, skip=skip, budget_s=args.time, memory=False)
        except Exception as e:   # a benchmark keeps going; the row says what stopped it
            counts["failed"] += 1
            table.add_row(rel, model, "", "", "", "", "", f"failed: {type(e).__name__}: {str(e)[:60]}")
            continue
        by = {x.name: x for x in r.results}
        o1, o2 = by["torch O1"], by["torch O2"]
        if o2.speedup is None:
            counts["failed"] += 1
            table.add_row(rel, model, "", "", "", "", "", f"O2: {o2.unavailable}")
            continue
        verdict = "slower" if o2.high < 1.0 else "faster" if o2.low > 1.0 else "noise"
        counts[verdict] += 1
        ort_cell = ()
        if args.onnx:
            x = by.get("onnxruntime O2")
            ort_cell = (f"{x.speedup:.2f}×" if x and x.speedup else "—",)
        table.add_row(rel, model, "small" if params else "full", f"{o1.median_s * 1e3:.2f}",
                      f"{o2.median_s * 1e3:.2f}", f"{o2.speedup:.2f}×",
                      f"{o2.low:.2f}–{o2.high:.2f}", verdict, *ort_cell)
    Console(width=160).print(table)
    from nndsl.bench import machine
    m = machine()
    print(f"{counts['faster']} faster, {counts['noise']} within noise, {counts['slower']} slower, "
          f"{counts['failed']} failed; torch {m['torch']}, {m['threads']} threads, "
          f"{m.get('cpu_capability', '')}, load {m.get('load', '?')}, "
          f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
