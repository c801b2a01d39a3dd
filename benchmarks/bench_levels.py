"""O2 against O1 on every model of the zoo: is the most optimized level ever slower?

    python benchmarks/bench_levels.py                 # every model, about 5 minutes on 2 cores
    python benchmarks/bench_levels.py --only vision   # the specs whose path has this text
    python benchmarks/bench_levels.py --time 4 --batch 4
    python benchmarks/bench_levels.py --passes        # and what each O2 pass buys, per model

Each model runs through ``nndsl bench``'s machinery (nndsl/bench/): torch O1 and torch O2 (and,
with ``--onnx``, onnxruntime on the O2 export) built from the same weights, checked to compute
the same outputs, and timed alternately on the same inputs. Models over ``--max-params``
parameters run at the reduced size the test suite uses (``tests/sizes/``), marked ``small``. The
verdict says ``slower`` only when O2's whole middle half of per-round ratios lies below 1,
``faster`` when it lies above, and ``noise`` otherwise.

With ``--passes``, O2 without each pass that changed the model's graph is timed in the same
rounds, and a second table gives each pass's contribution: the median over rounds of
(O2 without the pass) / O2, with its middle half — above 1 the pass pays for itself on that
model — and a verdict per pass over the zoo in the same terms.
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
    ap.add_argument("--passes", action="store_true",
                    help="also O2 without each pass that changed the graph: what each pass buys")
    args = ap.parse_args()
    contributions: dict[str, list] = {}
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
                      schemes=(), compile_=False, skip=skip, budget_s=args.time, memory=False,
                      passes=args.passes)
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
        verdict = _verdict(o2.low, o2.high)
        counts[verdict] += 1
        for name, x in by.items():
            if name.startswith("torch O2 without ") and x.times:
                contributions.setdefault(name.removeprefix("torch O2 without "), []).append(
                    (key, _middle([a / b for a, b in zip(x.times, o2.times)])))
        ort_cell = ()
        if args.onnx:
            x = by.get("onnxruntime O2")
            ort_cell = (f"{x.speedup:.2f}×" if x and x.speedup else "—",)
        table.add_row(rel, model, "small" if params else "full", f"{o1.median_s * 1e3:.2f}",
                      f"{o2.median_s * 1e3:.2f}", f"{o2.speedup:.2f}×",
                      f"{o2.low:.2f}–{o2.high:.2f}", verdict, *ort_cell)
    Console(width=160).print(table)
    if args.passes:
        Console(width=160).print(_pass_table(contributions))
    from nndsl.bench import machine
    m = machine()
    print(f"{counts['faster']} faster, {counts['noise']} within noise, {counts['slower']} slower, "
          f"{counts['failed']} failed; torch {m['torch']}, {m['threads']} threads, "
          f"{m.get('cpu_capability', '')}, load {m.get('load', '?')}, "
          f"{time.perf_counter() - t0:.0f} s")
    return 0


def _verdict(low: float, high: float) -> str:
    return "slower" if high < 1.0 else "faster" if low > 1.0 else "noise"


def _middle(per: list) -> tuple:
    """Median and middle half of per-round ratios."""
    per = sorted(per)
    q = statistics.quantiles(per, n=4, method="inclusive") if len(per) > 1 else [per[0]] * 3
    return statistics.median(per), q[0], q[2]


def _pass_table(contributions: dict) -> Table:
    """Per pass: on how many models it pays (its whole middle half above 1), is within the
    noise, or costs; its median contribution; the models where it costs."""
    t = Table(title="What each O2 pass buys: (O2 without it) / O2, per model; above 1 it pays")
    for col in ("pass", "models it changed", "pays", "noise", "costs", "median", "largest",
                "where it costs"):
        t.add_column(col, justify="left" if col in ("pass", "where it costs") else "right")
    for name, rows in sorted(contributions.items()):
        verdicts = [_verdict(lo, hi) for _, (_, lo, hi) in rows]
        meds = [m for _, (m, _, _) in rows]
        best = max(rows, key=lambda r: r[1][0])
        costs = [f"{k} {m:.2f}×" for (k, (m, lo, hi)), v in zip(rows, verdicts) if v == "slower"]
        t.add_row(name, str(len(rows)), str(verdicts.count("faster")),
                  str(verdicts.count("noise")), str(verdicts.count("slower")),
                  f"{statistics.median(meds):.2f}×", f"{best[1][0]:.2f}× ({best[0]})",
                  ", ".join(costs) or "—")
    return t


if __name__ == "__main__":
    sys.exit(main())
