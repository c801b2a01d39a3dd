"""``nndsl bench SPEC``: its argparse parser, and the table it prints.

``add_bench_parser(sub)`` adds the subcommand to an argparse subparsers object and sets ``fn``
to :func:`run_bench`. The table goes to stdout (``--json``: the report as JSON instead);
progress lines go to stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import sys


def _seconds(text: str) -> float:
    try:
        v = float(text) if len(text) <= 20 else None
    except ValueError:
        v = None
    if v is None or not 0 < v <= 3600:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a time: seconds in (0, 3600]")
    return v


def add_bench_parser(sub) -> argparse.ArgumentParser:
    from nndsl.cli_args import _count, _seed, limit_flags, spec_arguments
    p = sub.add_parser("bench", help="time every way nndsl can run a spec, side by side")
    spec_arguments(p)
    p.add_argument("--weights", help="a .safetensors file of weights in the spec's names")
    p.add_argument("--batch", type=_count, default=1, help="batch size of the inputs (default 1)")
    p.add_argument("--dim", action="append", metavar="NAME=INT", help="bind a symbolic dim")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the inputs and weights")
    p.add_argument("--quantize", metavar="S,S", default=None,
                   help="quantized schemes to time too, comma-separated, or none "
                        "(default int8-dynamic)")
    p.add_argument("--calibrate", metavar="NAME|PATH",
                   help="calibration data, for --quantize int8-static")
    p.add_argument("--skip", action="append", metavar="WORD", default=[],
                   help="leave out the paths whose names have this word (compile, O0, "
                        "onnxruntime, int8-dynamic, ...; repeatable)")
    p.add_argument("--no-compile", action="store_true",
                   help="leave out torch.compile (its first call compiles, which takes a while)")
    p.add_argument("--passes", action="store_true",
                   help="also time O2 without each pass that changed the graph, one at a time "
                        "(what each pass buys)")
    p.add_argument("--rounds", type=_count, default=None,
                   help="rounds to time (default: as many as fit in --time)")
    p.add_argument("--time", type=_seconds, default=10.0, metavar="SECONDS",
                   help="time budget of the timed rounds (default 10)")
    p.add_argument("--no-memory", action="store_true",
                   help="do not measure each path's peak memory (a fresh process per path)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where torch runs (default cpu)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    limit_flags(p)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.set_defaults(fn=run_bench)
    return p


def run_bench(args) -> int:
    from nndsl.bench import Options, bench, schemes_of
    from nndsl.cli_args import _dims, _limits, _params, _typed_path
    options = Options(args.spec, model=args.model, params=_params(args.param),
                      lib=tuple(args.lib or ()), weights=args.weights, batch=args.batch,
                      dims=_dims(args.dim), seed=args.seed, device=args.device,
                      calibrate=_typed_path(args.calibrate), limits=_limits(args))
    quiet = args.json or not sys.stderr.isatty()
    report = bench(options, schemes=schemes_of(args.quantize), compile_=not args.no_compile,
                   skip=tuple(args.skip), rounds=args.rounds, budget_s=args.time,
                   memory=not args.no_memory, passes=args.passes,
                   progress=None if quiet else lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(render(report), end="")
    return 0


def _ms(s) -> str:
    if s is None:
        return "—"
    return f"{s * 1e3:,.2f}" if s < 0.1 else f"{s * 1e3:,.1f}"


def _mib(b) -> str:
    return "—" if b is None else f"{b / 2**20:,.1f}"


def render(report) -> str:
    from nndsl.bench.measure import MIN_ROUNDS, most_exact
    from rich.console import Console
    from rich.table import Table
    m = report.machine
    o = report.options
    dims = "".join(f", {k}={v}" for k, v in o.dims.items())
    t = Table(title=f"{report.model}: batch {o.batch}{dims}, {o.device}, {report.rounds} rounds "
                    f"(speed: median of per-round ratios to {report.reference}; middle half in "
                    f"brackets)")
    for col in ("path", "median ms", "speed", "middle half", "max deviation", "peak MiB",
                "build s", "compile s"):
        t.add_column(col, justify="left" if col == "path" else "right")
    for r in report.results:
        if r.unavailable:
            t.add_row(r.name, "—", "—", "—", "—", "—", "—", "—")
            continue
        t.add_row(r.name, _ms(r.median_s), f"{r.speedup:.2f}×", f"{r.low:.2f}–{r.high:.2f}",
                  f"{r.deviation:.1e}", _mib(r.peak_bytes), f"{r.build_s:.2f}",
                  "—" if r.compile_s is None else f"{r.compile_s:.1f}")
    buf = io.StringIO()
    Console(file=buf, width=150, color_system=None, force_terminal=False).print(t)
    lines = [f"machine: torch {m.get('torch')}, onnxruntime {m.get('onnxruntime')}, "
             f"{m.get('threads')} threads, {m.get('cpu_capability', m.get('cpu'))}"
             + (f", load {m['load']}" if "load" in m else "")]
    for r in report.results:
        if r.unavailable:
            lines.append(f"not timed: {r.name}: {r.unavailable}")
        elif r.memory_note:
            lines.append(f"no peak memory for {r.name}: {r.memory_note}")
    b = report.best
    if b is None and report.rounds < MIN_ROUNDS:
        lines.append(f"{report.rounds} round(s) are too few to name a fastest path: give "
                     f"--rounds {MIN_ROUNDS} or more, or a longer --time")
    if b is not None:
        pick = b
        if report.ties:
            lines.append(f"fastest: {b.name} ({b.speedup:.2f}×), but within the noise of "
                         + ", ".join(f"{r.name} ({r.speedup:.2f}×)" for r in report.ties)
                         + ": no single winner on this machine now")
            pick = most_exact(b, report.ties)
            lines.append(f"  the most exact of them, {pick.name}:")
        else:
            lines.append(f"fastest: {b.name} ({b.speedup:.2f}× {report.reference}; its middle "
                         f"half clears every other path's)")
        lines.append(f"  {pick.command}")
        if pick.deviation and pick.deviation > 1e-3:
            lines.append(f"  note: its outputs differ from {report.reference}'s by up to "
                         f"{pick.deviation:.1e} of their scale (quantization)")
    if report.noisy:
        widest = max((r for r in report.results if r.speedup is not None),
                     key=lambda r: r.spread)
        lines.append(f"the machine is noisy: {widest.name}'s middle half spans "
                     f"{widest.spread:.0%} of its median; rerun with a longer --time on a "
                     f"quieter machine before trusting small differences")
    return buf.getvalue() + "\n".join(lines) + "\n"
