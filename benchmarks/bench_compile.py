"""Compile time of large legal models, phase by phase: is it linear in the number of nodes?

    python benchmarks/bench_compile.py                  # 500, 1000, 2000 and 4000 blocks
    python benchmarks/bench_compile.py --blocks 250 500 --profile elaborate

It builds ResNet-50 with ``B`` bottleneck blocks in its first stage (``blocks=[B, 1, 1, 1]``; a
narrow ``--width`` keeps the weights small, the node count does not depend on it) and times each
phase on its own: parse (the spec and its ``std`` imports), elaborate (including the unused-value
warnings), verify, every pass of the ``-O`` pipeline (the pass and the verify after it), and
lowering to torch (``GraphModule``, weights initialised). The table shows microseconds per node
for each phase: a phase whose figure grows with the size is superlinear. ``--profile PHASE``
prints the top of a cProfile of that phase at the largest size.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nndsl.elab import Elaborator, load_program  # noqa: E402
from nndsl.ir.verify import verify  # noqa: E402
from nndsl.passes import run_pipeline  # noqa: E402

SPEC = (ROOT / "specs" / "vision" / "resnet50.nn").read_text(encoding="utf-8")


def compile_phases(blocks: int, width: int, opt: str, profile: str | None = None,
                   torch_too: bool = True) -> tuple[int, dict]:
    """(nodes after elaboration, {phase: seconds}) for one size."""
    times: dict[str, float] = {}
    prof = cProfile.Profile() if profile else None

    def timed(name, fn):
        if prof is not None and name == profile:
            prof.enable()
        t = time.process_time()
        out = fn()
        times[name] = time.process_time() - t
        if prof is not None and name == profile:
            prof.disable()
        return out

    program = timed("parse", lambda: load_program(SPEC, "resnet50.nn"))
    overrides = {"blocks": (blocks, 1, 1, 1), "width": width}
    graph = timed("elaborate",
                  lambda: Elaborator(program).elaborate("resnet50", overrides))
    nodes = len(graph)
    timed("verify", lambda: verify(graph))
    run = timed("passes", lambda: run_pipeline(graph, opt))
    for r in run.records:
        times["pass " + r.name] = r.cpu_seconds
    if torch_too:
        from nndsl.backends.torch import GraphModule
        timed("torch", lambda: GraphModule(run.graph, seed=0))
    if prof is not None:
        print(f"\ncProfile of `{profile}` at {blocks} blocks ({nodes:,} nodes):")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    return nodes, times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    ap.add_argument("--width", type=int, default=4, help="the stem width (64 in ResNet-50)")
    ap.add_argument("--opt", default="O1")
    ap.add_argument("--no-torch", action="store_true", help="skip lowering to torch")
    ap.add_argument("--no-gc", action="store_true",
                    help="with Python's cyclic garbage collector off (what it costs)")
    ap.add_argument("--profile", default=None,
                    help="cProfile this phase at the largest size (parse, elaborate, verify, "
                         "passes, torch)")
    args = ap.parse_args()
    if args.no_gc:
        import gc
        gc.disable()
    rows = []
    sizes = sorted(args.blocks)
    for b in sizes:
        prof = args.profile if b == sizes[-1] else None
        nodes, times = compile_phases(b, args.width, args.opt, prof, not args.no_torch)
        rows.append((b, nodes, times))
        total = sum(v for k, v in times.items() if not k.startswith("pass "))
        print(f"{b} blocks: {nodes:,} nodes, {total:.2f} s", file=sys.stderr, flush=True)
    phases = [k for k in rows[-1][2] if not k.startswith("pass ")] + \
        [k for k in rows[-1][2] if k.startswith("pass ")]
    head = ["phase"] + [f"{b} blk/{n:,} nodes" for b, n, _ in rows]
    width = max(len(h) for h in head) + 2
    print(f"\nmicroseconds per node, by phase (-{args.opt}; seconds in brackets)")
    print(f"{'phase':<28}" + "".join(f"{h:>{width}}" for h in head[1:]))
    for ph in phases + ["total"]:
        cells = []
        for _, n, times in rows:
            s = sum(v for k, v in times.items() if not k.startswith("pass ")) \
                if ph == "total" else times.get(ph, 0.0)
            cells.append(f"{s / n * 1e6:8.1f} ({s:6.2f})")
        print(f"{ph:<28}" + "".join(f"{c:>{width}}" for c in cells))


if __name__ == "__main__":
    main()
