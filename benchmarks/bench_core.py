"""Core benchmarks: nndsl against the hand-written PyTorch models of ``tests/reference_models.py``.

    python benchmarks/bench_core.py            # full run
    python benchmarks/bench_core.py --quick    # fewer repetitions
    python benchmarks/bench_core.py --device cuda

Three measurements, each printed as a table with the ratio to the hand-written model and the
target next to it:

1. source text -> verified IR (``nndsl.compile`` on the text), best of several runs;
2. a ready ``nn.Module``: ``nndsl.compile(path)`` + ``to_torch()`` against constructing the
   hand-written module (both on the CPU, weights initialised);
3. forward time in eval mode under ``torch.no_grad()``: warm-up, then the median of N runs, the
   two models run alternately so that drift affects both alike.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import nndsl  # noqa: E402
import reference_models as R  # noqa: E402
from benchmarks.timing import once  # noqa: E402

SPECS = ROOT / "specs"

TEXT_TO_IR_TARGET_MS = 50.0          # resnet50
MODULE_TARGET_RATIO = 1.3            # compile + to_torch vs hand-written construction
FORWARD_TARGET_RATIO = 1.05          # compiled forward vs hand-written forward

# name -> (spec, hand-written constructor)
MODELS = {
    "resnet18": ("vision/resnet18.nn", R.ResNet18),
    "resnet50": ("vision/resnet50.nn", R.ResNet50),
    "gpt_mini": ("transformers/gpt_mini.nn", R.GPT),
}


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:,.0f} µs"


def verdict(ok: bool) -> str:
    return "[green]met[/green]" if ok else "[red]missed[/red]"


# ---- 1. text -> verified IR ----

def bench_text_to_ir(reps: int) -> Table:
    table = Table(title="1. Source text -> verified IR (nndsl.compile on the text)",
                  caption="first call: the first compile of the text; the first in the process "
                          "(resnet50) also builds the parser tables\nhand-written: constructing the module on the meta "
                          "device (structure only, no weights), for scale")
    table.add_column("model")
    table.add_column("IR nodes", justify="right")
    table.add_column("first call", justify="right")
    table.add_column(f"nndsl, best of {reps}", justify="right")
    table.add_column("hand-written", justify="right")
    table.add_column("target", justify="right")
    table.add_column("", justify="center")
    for name in ("resnet50", "gpt_mini"):
        spec, ref_cls = MODELS[name]
        text = (SPECS / spec).read_text("utf-8")
        cold = once(lambda: nndsl.compile(text))
        best = min(once(lambda: nndsl.compile(text)) for _ in range(reps))
        c = nndsl.compile(text)

        def meta():
            with torch.device("meta"):
                ref_cls()
        meta()
        best_meta = min(once(meta) for _ in range(reps))
        if name == "resnet50":
            target = f"< {TEXT_TO_IR_TARGET_MS:.0f} ms"
            mark = verdict(best * 1e3 < TEXT_TO_IR_TARGET_MS)
        else:
            target, mark = "-", ""
        table.add_row(name, str(len(list(c.graph))), ms(cold), ms(best), ms(best_meta), target,
                      mark)
    return table


# ---- 2. a ready nn.Module ----

def bench_module(reps: int) -> Table:
    table = Table(title="2. Time to a ready nn.Module (CPU, weights initialised), "
                        f"median of {reps}",
                  caption="nndsl: nndsl.compile(path) + to_torch(); hand-written: the "
                          "constructor\nratio: median of the per-repetition ratios")
    table.add_column("model")
    table.add_column("params", justify="right")
    table.add_column("nndsl", justify="right")
    table.add_column("of which to_torch", justify="right")
    table.add_column("hand-written", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("target", justify="right")
    table.add_column("", justify="center")
    for name, (spec, ref_cls) in MODELS.items():
        path = SPECS / spec
        nndsl.compile(path).to_torch()       # warm the import paths and allocator
        ref_cls()
        t_nn, t_low, t_ref = [], [], []    # interleaved, as for the forward pass
        for _ in range(reps):
            gc.collect()
            t0 = time.perf_counter()
            c = nndsl.compile(path)
            t1 = time.perf_counter()
            m = c.to_torch()
            t2 = time.perf_counter()
            t_nn.append(t2 - t0)
            t_low.append(t2 - t1)
            del m
            gc.collect()
            t_ref.append(once(ref_cls))
        a, b = statistics.median(t_nn), statistics.median(t_ref)
        ratio = statistics.median(x / y for x, y in zip(t_nn, t_ref))
        table.add_row(name, f"{c.param_count():,}", ms(a), ms(statistics.median(t_low)), ms(b),
                      f"{ratio:.2f}x", f"<= {MODULE_TARGET_RATIO}x",
                      verdict(ratio <= MODULE_TARGET_RATIO))
    return table


# ---- 3. forward ----

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward_times(models: list, x: torch.Tensor, device, warmup: int, runs: int) -> list:
    """Per-model lists of forward times; the models run in turn within each repetition."""
    with torch.no_grad():
        for _ in range(warmup):
            for m in models:
                m(x)
        _sync(device)
        times = [[] for _ in models]
        for _ in range(runs):
            for i, m in enumerate(models):
                _sync(device)
                t0 = time.perf_counter()
                m(x)
                _sync(device)
                times[i].append(time.perf_counter() - t0)
    return times


def bench_forward(device: torch.device, warmup: int, runs: int) -> Table:
    table = Table(title=f"3. Forward, eval mode, torch.no_grad(), on {device}: "
                        f"{warmup} warm-up, median of {runs}",
                  caption="same weights in both; ratio: median of the per-repetition ratios "
                          "nndsl / hand-written\nmax |diff|: largest absolute difference "
                          "between the two outputs")
    table.add_column("model")
    table.add_column("input")
    table.add_column("hand-written model")
    table.add_column("nndsl", justify="right")
    table.add_column("hand-written", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("max |diff|", justify="right")
    table.add_column("target", justify="right")
    table.add_column("", justify="center")

    cases = [
        ("resnet18", "image", (8, 3, 224, 224), [("torchvision-style", {})]),
        ("gpt_mini", "tokens", (4, 128), [("nanoGPT, SDPA", {}),
                                          ("nanoGPT, attention written out",
                                           {"flash": False})]),
    ]
    gen = torch.Generator().manual_seed(0)
    for name, input_name, shape, variants in cases:
        spec, ref_cls = MODELS[name]
        c = nndsl.compile(SPECS / spec)
        m = c.to_torch().to(device).eval()
        if input_name == "tokens":
            x = torch.randint(0, 4096, shape, generator=gen)
        else:
            x = torch.randn(shape, generator=gen)
        x = x.to(device)
        refs = []
        for _, kw in variants:
            ref = ref_cls(**kw)
            ref.load_state_dict(R.to_reference(ref, m.state_dict()))
            refs.append(ref.to(device).eval())
        times = _forward_times([m, *refs], x, device, warmup, runs)
        med = [statistics.median(t) for t in times]
        with torch.no_grad():
            out = m(x)
            diffs = [(out - r(x)).abs().max().item() for r in refs]
        for i, (label, _) in enumerate(variants):
            # the median of per-repetition ratios: both runs of a pair see the same machine load
            ratio = statistics.median(a / b for a, b in zip(times[0], times[i + 1]))
            first = i == 0
            table.add_row(name if first else "", "x".join(map(str, shape)) if first else "",
                          label, ms(med[0]), ms(med[i + 1]),
                          f"{ratio:.3f}x", f"{diffs[i]:.1e}",
                          f"<= {FORWARD_TARGET_RATIO}x",
                          verdict(ratio <= FORWARD_TARGET_RATIO))
        del m, refs
        gc.collect()
    return table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--device", default="cpu", help="device for the forward benchmark")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.quick:
        ir_reps, mod_reps, warmup, runs = 5, 3, 2, 5
    else:
        ir_reps, mod_reps, warmup, runs = 20, 7, 5, 20

    console = Console() if sys.stdout.isatty() else Console(width=120)
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() \
        or platform.machine()
    console.print(f"nndsl core benchmarks — torch {torch.__version__}, python "
                  f"{platform.python_version()}, {torch.get_num_threads()} CPU threads, "
                  f"forward on {device} ({dev}){', quick' if args.quick else ''}")
    torch.manual_seed(0)
    console.print(bench_text_to_ir(ir_reps))   # first: its cold column includes grammar loading
    console.print(bench_module(mod_reps))
    console.print(bench_forward(device, warmup, runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
