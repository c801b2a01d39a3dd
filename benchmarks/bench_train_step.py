"""Training step: one optimizer step of nndsl-compiled models against the hand-written PyTorch
models of ``tests/reference_models.py``.

    python benchmarks/bench_train_step.py             # full run, about 2-3 min on 2 idle cores
    python benchmarks/bench_train_step.py --quick     # fewer rounds, a smoke test
    python benchmarks/bench_train_step.py --tiny      # reduced model sizes (the test suite's)
    python benchmarks/bench_train_step.py --compile   # also under torch.compile (minutes more)
    python benchmarks/bench_train_step.py --threads 1

A step is: forward in train mode, cross-entropy (over every token for gpt_mini), backward,
AdamW step, ``zero_grad(set_to_none=True)``. nndsl's side is ``nndsl.compile(spec, opt="O1")
.to_torch()``; the hand-written side gets the same initial weights (``to_reference``), the same
batches and the same optimizer settings.

1. the step of the module alone: the two sides alternate pair by pair after warm-up steps; the
   ratio is the median of the per-pair ratios, with the middle half (25th-75th percentile);
2. correctness: one step from identical weights on the same batch; the losses, every gradient
   and every updated parameter and buffer, each difference relative to the tensor's scale;
3. the step inside nndsl's training loop (``nndsl.train``'s loop, started by ``run_training``
   on a copy of the spec with a train section): a loop hook runs the hand-written step and the
   bare compiled module's step between two loop steps, so the three alternate; the loop step
   is the time between hook calls (batching, the loss expression, the finite-loss check,
   backward, the optimizer step and the schedule);
4. peak memory: each side in a fresh process (this script's ``--memory-probe`` mode): the
   resident size of the built model, and the peak resident size (``VmHWM``) of a few training
   steps above it;
5. with ``--compile``: both modules under ``torch.compile`` (a fresh inductor cache, so the
   compile time is a cold one), the first step's time and the steady-state ratio.

It never fails on a missed target; it marks it ``met`` or ``missed``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import nndsl  # noqa: E402
import reference_models as R  # noqa: E402
from benchmarks.timing import OtherLoad, once, paired  # noqa: E402
from nndsl.bench.memory import _status_kb, supported as memory_supported  # noqa: E402

SPECS = ROOT / "specs"
STEP_TARGET = 1.0        # nndsl step time / hand-written step time: at least as fast
MEMORY_TARGET = 1.0      # nndsl peak / hand-written peak: no higher
LR, WEIGHT_DECAY = 1e-3, 0.01
GPT_TINY = {"vocab": 64, "ctx": 32, "width": 32, "heads": 4, "layers": 2, "p": 0.0}


@dataclass
class Case:
    name: str                   # the zoo model
    spec: str                   # under specs/
    params: dict                # compile parameters (the reduced sizes of --tiny)
    ref_cls: type
    ref_kw: dict                # the hand-written constructor's arguments for those sizes
    variants: list              # (label, extra constructor arguments) of the hand-written side
    kind: str                   # "image" or "tokens"
    shape: tuple                # one batch: (N, 3, H, W) images or (N, T) tokens
    classes: int                # labels or vocabulary
    batch_label: str = field(default="")


def cases(tiny: bool) -> list[Case]:
    resnet = Case("resnet18", "vision/resnet18.nn", {}, R.ResNet18, {},
                  [("torchvision-style", {})], "image", (8, 3, 224, 224), 1000)
    gpt = Case("gpt_mini", "transformers/gpt_mini.nn", {}, R.GPT, {},
               [("nanoGPT, SDPA", {}), ("nanoGPT, attention written out", {"flash": False})],
               "tokens", (4, 128), 4096)
    if tiny:
        resnet.params = resnet.ref_kw = {"classes": 10, "width": 8}
        resnet.shape, resnet.classes = (2, 3, 224, 224), 10
        gpt.params = gpt.ref_kw = dict(GPT_TINY)
        gpt.shape, gpt.classes = (2, 16), GPT_TINY["vocab"]
    for c in (resnet, gpt):
        c.batch_label = "x".join(map(str, c.shape)) + (" images" if c.kind == "image"
                                                        else " tokens")
    return [resnet, gpt]


def pick(all_cases: list[Case], only: str | None) -> list[Case]:
    return [c for c in all_cases if only is None or c.name == only]


# ---------------------------------------------------------------------------- building

def compiled(case: Case):
    return nndsl.compile(SPECS / case.spec, params=case.params or None, opt="O1")


def build_pair(case: Case, variant_kw: dict, c=None):
    """The nndsl module and the hand-written one, in train mode, with the same weights."""
    c = c if c is not None else compiled(case)
    m = c.to_torch(seed=0).train()
    ref = case.ref_cls(**case.ref_kw, **variant_kw)
    ref.load_state_dict(R.to_reference(ref, m.state_dict()))
    return m, ref.train()


def make_batches(case: Case, count: int, seed: int = 0) -> list:
    """``count`` (input, target) batches, the same for both sides."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        if case.kind == "image":
            x = torch.randn(case.shape, generator=g)
            y = torch.randint(0, case.classes, case.shape[:1], generator=g)
        else:
            n, t = case.shape
            seq = torch.randint(0, case.classes, (n, t + 1), generator=g)
            x, y = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()
        out.append((x, y))
    return out


def loss_of(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy; logits [N, T, V] against tokens [N, T] as nanoGPT writes it."""
    if out.dim() == 3:
        return F.cross_entropy(out.reshape(-1, out.size(-1)), y.reshape(-1))
    return F.cross_entropy(out, y)


def optimizer(model) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)


def stepper(model, batches: list, call=None):
    """A function running one training step on the next batch (the batches in turn)."""
    opt = optimizer(model)
    call = call if call is not None else model
    state = {"i": 0}

    def step():
        x, y = batches[state["i"] % len(batches)]
        state["i"] += 1
        loss = loss_of(call(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss
    return step


# ---------------------------------------------------------------------------- measuring

NOISY = "absolute times are inflated and ratios noisier"


def spread(ratios: list[float]) -> dict:
    """The median ratio, the middle half of the ratios, and where that half lies against 1."""
    med = statistics.median(ratios)
    if len(ratios) >= 2:
        q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    else:
        q1 = q3 = med
    where = "faster" if q3 < 1 else "slower" if q1 > 1 else "noise"
    return {"ratio": med, "q1": q1, "q3": q3, "where": where}


def pairs(a, b, warmup: int, rounds: int) -> dict:
    """``a`` and ``b`` alternately (benchmarks/timing.py's ``paired``, one pair at a time, so
    every pair's ratio is kept), after ``warmup`` steps of each."""
    for _ in range(warmup):
        a()
        b()
    ta, tb, ratios = [], [], []
    for _ in range(rounds):
        x, y, r = paired(a, b, 1)
        ta.append(x)
        tb.append(y)
        ratios.append(r)
    return {"ours": statistics.median(ta), "hand": statistics.median(tb), **spread(ratios)}


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def verdict(ok: bool) -> str:
    return "[green]met[/green]" if ok else "[red]missed[/red]"


def ratio_cells(r: dict) -> list[str]:
    where = {"faster": "[green]faster[/green]", "slower": "[red]slower[/red]",
             "noise": "within noise"}[r["where"]]
    return [f"{r['ratio']:.3f}x", f"{r['q1']:.3f}-{r['q3']:.3f}", where]


def max_rel(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor | None = None) -> float:
    """max |a - b| (over the entries ``where`` says, all by default) over the scale of ``b``
    (its largest magnitude)."""
    a, b = a.detach().double(), b.detach().double()
    if not b.numel():
        return 0.0
    scale = b.abs().max().item()
    d = (a - b).abs()
    if where is not None:
        d = d[where]
    d = d.max().item() if d.numel() else 0.0
    return d / scale if scale > 0 else d


SIGNAL = 1e-3


def _signal(grad: torch.Tensor | None):
    """The entries whose gradient is above rounding: over ``SIGNAL`` times the tensor's largest.
    AdamW's first step divides each gradient by its own magnitude, so an entry whose gradient is
    zero up to rounding (attention's key bias: softmax ignores a shift of the keys) moves by up
    to lr either way, whatever the two sides computed."""
    if grad is None:
        return None
    return grad.abs() > SIGNAL * grad.abs().max()


# ---------------------------------------------------------------------------- 1. the step

def bench_step(all_cases: list[Case], warmup: int, rounds: int, results: dict) -> Table:
    table = Table(title=f"1. One training step of the module, eager, O1: {warmup} warm-up "
                        f"steps, then {rounds} pairs",
                  caption="step: forward (train mode), cross-entropy, backward, AdamW "
                          f"(lr {LR}, weight decay {WEIGHT_DECAY}), zero_grad\nratio: the "
                          "median of the per-pair ratios nndsl / hand-written; middle half: "
                          "their 25th-75th percentiles")
    for col, just in (("model", "left"), ("batch", "left"), ("hand-written model", "left"),
                      ("nndsl", "right"), ("hand-written", "right"), ("ratio", "right"),
                      ("middle half", "right"), ("", "left"), ("target", "right"),
                      (" ", "center")):
        table.add_column(col, justify=just)
    load = OtherLoad()
    with load:
        for case in all_cases:
            c = compiled(case)
            batches = make_batches(case, 4)
            for i, (label, kw) in enumerate(case.variants):
                m, ref = build_pair(case, kw, c)
                r = pairs(stepper(m, batches), stepper(ref, batches), warmup, rounds)
                results.setdefault("step", {})[f"{case.name}/{label}"] = r
                table.add_row(case.name if i == 0 else "", case.batch_label if i == 0 else "",
                              label, ms(r["ours"]), ms(r["hand"]), *ratio_cells(r),
                              f"<= {STEP_TARGET:.2f}x", verdict(r["ratio"] <= STEP_TARGET))
                del m, ref
                gc.collect()
    table.caption += load.describe(NOISY)
    return table


# ---------------------------------------------------------------------------- 2. correctness

def one_step_state(model, batch):
    """The loss, the gradients and the state after one step from the model's weights."""
    opt = optimizer(model)
    x, y = batch
    loss = loss_of(model(x), y)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
             if p.grad is not None}
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item(), grads, {k: v.detach().clone() for k, v in model.state_dict().items()}


def bench_correctness(all_cases: list[Case], results: dict) -> Table:
    table = Table(title="2. Correctness: one step from identical weights on the same batch",
                  caption="rel. diff: max |nndsl - hand-written| over the hand-written "
                          "tensor's largest magnitude, worst tensor named; every parameter's "
                          "gradient,\nevery parameter and buffer after the AdamW step (batch "
                          "norm's running statistics included), over the parameter entries "
                          f"whose gradient is above {SIGNAL:g} of the tensor's largest:\nAdamW's "
                          "first step divides a gradient by its own size, so one that is zero up "
                          "to rounding (attention's key bias) moves by up to lr either way")
    for col, just in (("model", "left"), ("hand-written model", "left"), ("loss nndsl", "right"),
                      ("loss hand-written", "right"), ("loss rel. diff", "right"),
                      ("gradients", "right"), ("worst gradient", "left"),
                      ("after the step", "right"), ("worst tensor", "left")):
        table.add_column(col, justify=just)
    for case in all_cases:
        c = compiled(case)
        batch = make_batches(case, 1, seed=1)[0]
        for i, (label, kw) in enumerate(case.variants):
            m, ref = build_pair(case, kw, c)
            key = case.ref_cls.from_nndsl_key
            tied = getattr(ref, "tied", {})
            lm, gm, sm = one_step_state(m, batch)
            lr_, gr, sr = one_step_state(ref, batch)
            names = {key(n): n for n in sm}
            g_worst = max(((max_rel(g, gr[key(n)]), n) for n, g in gm.items()),
                          default=(0.0, "-"))
            s_all = max(((max_rel(v, sr[key(n)]), n) for n, v in sm.items()
                         if key(n) not in tied), default=(0.0, "-"))
            s_worst = max(((max_rel(v, sr[key(n)], _signal(gr.get(key(n)))), n)
                           for n, v in sm.items() if key(n) not in tied), default=(0.0, "-"))
            assert set(names) | set(tied) >= set(sr), "a hand-written tensor was not compared"
            loss_rel = abs(lm - lr_) / max(abs(lr_), 1e-12)
            results.setdefault("correctness", {})[f"{case.name}/{label}"] = {
                "loss_nndsl": lm, "loss_hand": lr_, "loss_rel": loss_rel,
                "grad_rel": g_worst[0], "grad_worst": g_worst[1], "state_rel": s_worst[0],
                "state_worst": s_worst[1], "state_rel_all": s_all[0], "state_worst_all": s_all[1]}
            table.add_row(case.name if i == 0 else "", label, f"{lm:.6f}", f"{lr_:.6f}",
                          f"{loss_rel:.1e}", f"{g_worst[0]:.1e}", g_worst[1],
                          f"{s_worst[0]:.1e}", s_worst[1])
            del m, ref
            gc.collect()
    return table


# ---------------------------------------------------------------------------- 3. the loop

def _loop_spec(case: Case, folder: Path, steps: int) -> Path:
    """A copy of the spec with a train section over ``steps`` batches saved as an .npz."""
    batches = make_batches(case, steps, seed=2)
    xs = torch.cat([b[0] for b in batches]).numpy()
    ys = torch.cat([b[1] for b in batches]).numpy()
    inp, target = ("image", "label") if case.kind == "image" else ("tokens", "next")
    np.savez(folder / f"{case.name}.npz", **{inp: xs, target: ys})
    ttype = "i64[N]" if case.kind == "image" else "i64[N, T]"
    section = f"""
train {case.name} {{
    target {target}: {ttype}
    data = "{case.name}.npz"
    loss = cross_entropy(logits, {target})
    optimizer = adamw(lr={LR}, weight_decay={WEIGHT_DECAY})
    schedule = constant
    val_split = 0
    epochs = 1
    batch = {case.shape[0]}
    seed = 0
}}
"""
    path = folder / f"{case.name}.nn"
    path.write_text((SPECS / case.spec).read_text("utf-8") + section, "utf-8")
    return path


def bench_loop(all_cases: list[Case], warmup: int, rounds: int, results: dict) -> Table:
    from nndsl.train.run import run_training
    table = Table(title=f"3. The step inside nndsl's training loop (run_training): {warmup} "
                        f"warm-up steps, then {rounds} rounds",
                  caption="loop step: the time between two calls of a loop hook, which runs "
                          "the other two steps on the same batch, so the three alternate\n"
                          "module step: the compiled module stepped by a plain loop as in "
                          "table 1 (its own copy, the same weights)\nloss rel. diff: the "
                          "largest over the steps, the loop's loss against the hand-written "
                          "one's")
    for col, just in (("model", "left"), ("hand-written model", "left"),
                      ("loop step", "right"), ("module step", "right"),
                      ("hand-written", "right"), ("loop / hand-written", "right"),
                      ("middle half", "right"), ("", "left"), ("loop / module", "right"),
                      ("loss rel. diff", "right"), ("target", "right"), (" ", "center")):
        table.add_column(col, justify=just)
    load = OtherLoad()
    with load, tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        for case in all_cases:
            label, kw = case.variants[0]
            steps = warmup + rounds + 1
            spec = _loop_spec(case, folder, steps)
            c = nndsl.compile(spec, params=case.params or None, opt="O1")
            m, ref = build_pair(case, kw, c)
            opt_m, opt_r = optimizer(m), optimizer(ref)
            rec = {"loop": [], "module": [], "hand": [], "loss": []}
            last = {"t": None}
            bs = case.shape[0]

            def side_step(model, opt, x, y):
                loss = loss_of(model(x), y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                return loss.item()

            def hook(run, epoch, b):
                t_in = time.perf_counter()
                if last["t"] is not None:
                    rec["loop"].append(t_in - last["t"])
                idx = run.order[b * bs:(b + 1) * bs]
                arrays = run.data.arrays
                inp = run.input_names[0]
                target = next(k for k in arrays if k != inp)
                holder = {}

                def hand():
                    holder["loss"] = side_step(ref, opt_r, arrays[inp][idx], arrays[target][idx])

                def module():
                    side_step(m, opt_m, arrays[inp][idx], arrays[target][idx])
                rec["hand"].append(once(hand))
                rec["module"].append(once(module))
                rec["loss"].append((run.last_finite[0], holder["loss"]))
                last["t"] = time.perf_counter()

            run_training(spec, params=case.params or None, out=folder / f"run-{case.name}",
                         quiet=True, hooks=[hook])
            keep = slice(warmup, None)        # the first loop time is step 2's
            loop, mod, hand = rec["loop"][keep], rec["module"][1:][keep], rec["hand"][1:][keep]
            r_hand = spread([a / b for a, b in zip(loop, hand)])
            r_mod = spread([a / b for a, b in zip(loop, mod)])
            loss_rel = max(abs(a - b) / max(abs(b), 1e-12) for a, b in rec["loss"])
            results.setdefault("loop", {})[case.name] = {
                "loop": statistics.median(loop), "module": statistics.median(mod),
                "hand": statistics.median(hand), **r_hand, "vs_module": r_mod["ratio"],
                "vs_module_q1": r_mod["q1"], "vs_module_q3": r_mod["q3"], "loss_rel": loss_rel,
                "steps": len(rec["loss"])}
            table.add_row(case.name, label, ms(statistics.median(loop)),
                          ms(statistics.median(mod)), ms(statistics.median(hand)),
                          *ratio_cells(r_hand), f"{r_mod['ratio']:.3f}x", f"{loss_rel:.1e}",
                          f"<= {STEP_TARGET:.2f}x", verdict(r_hand["ratio"] <= STEP_TARGET))
            m = ref = opt_m = opt_r = None     # free them (the hook's closures read them)
            gc.collect()
    table.caption += load.describe(NOISY)
    return table


# ---------------------------------------------------------------------------- 4. memory

def _trim() -> None:
    """Give freed heap memory back to the system, so that what one phase freed does not hide
    the next phase's allocations from the resident size."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")   # the peak so far becomes the current
        return True
    except OSError:
        return False


def memory_probe(spec: dict) -> dict:
    """One side built and trained ``steps`` steps in this (fresh) process; sizes in bytes."""
    case = next(c for c in cases(spec["tiny"]) if c.name == spec["model"])
    kw = dict(case.variants[spec["variant"]][1])
    batches = make_batches(case, 2)
    # one step of a throwaway small model of the same kind first, so that lazy imports and
    # the libraries' one-time set-up (thread pools, kernels' tables) count for neither side
    small = next(c for c in cases(True) if c.name == case.name)
    stepper(small.ref_cls(**small.ref_kw).train(), make_batches(small, 1))()
    _trim()
    if not _reset_peak():
        return {"error": "the peak resident size cannot be reset here (/proc/self/clear_refs)"}
    base = _status_kb("VmRSS")
    if spec["side"] == "nndsl":
        model = compiled(case).to_torch(seed=0).train()
    else:
        model = case.ref_cls(**case.ref_kw, **kw).train()
    _trim()
    built, build_peak = _status_kb("VmRSS") - base, _status_kb("VmHWM") - base
    _reset_peak()
    base2 = _status_kb("VmRSS")
    step = stepper(model, batches)
    for _ in range(spec["steps"]):
        step()
    steps_peak = _status_kb("VmHWM") - base2
    return {"built": built * 1024, "build_peak": build_peak * 1024,
            "steps_peak": steps_peak * 1024,
            "total_peak": max(build_peak, built + steps_peak) * 1024}


def _probe(spec: dict) -> dict:
    try:
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--memory-probe",
                            json.dumps(spec), "--threads", str(torch.get_num_threads())],
                           capture_output=True, text=True, timeout=600, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": "the probe took over 600 s"}
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (p.stderr.strip().splitlines() or [""])[-1][:200]
        return {"error": f"the probe failed (exit {p.returncode}): {tail}"}


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def bench_memory(all_cases: list[Case], steps: int, tiny: bool, results: dict) -> Table:
    table = Table(title=f"4. Peak memory of {steps} training steps, each side in a fresh process",
                  caption="built: resident size of the built model above the imports (nndsl: "
                          "compile + to_torch); steps: peak resident size (VmHWM) of the steps "
                          "above the built model\n(gradients, AdamW's state, activations, "
                          "workspace); total: the peak above the imports; ratio: steps, nndsl / "
                          "hand-written")
    for col, just in (("model", "left"), ("hand-written model", "left"), ("built nndsl", "right"),
                      ("built hand", "right"), ("steps nndsl", "right"),
                      ("steps hand", "right"), ("total nndsl", "right"),
                      ("total hand", "right"), ("ratio", "right"), ("target", "right"),
                      (" ", "center")):
        table.add_column(col, justify=just)
    if not memory_supported():
        table.add_row("-", "peak memory is read from /proc (Linux only)", *[""] * 9)
        return table
    # every probe is its own process and reads only its own peak, so they may run side by
    # side: that shortens the wall time and changes no number
    jobs = {}
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        for case in all_cases:
            for side, variants in (("nndsl", [0]), ("hand", range(len(case.variants)))):
                for i in variants:
                    jobs[case.name, side, i] = pool.submit(_probe, {
                        "model": case.name, "variant": i, "side": side, "steps": steps,
                        "tiny": tiny})
    for case in all_cases:
        ours = jobs[case.name, "nndsl", 0].result()
        for i, (label, _) in enumerate(case.variants):
            hand = jobs[case.name, "hand", i].result()
            first = case.name if i == 0 else ""
            err = ours.get("error") or hand.get("error")
            if err:
                table.add_row(first, label, f"[red]{err}[/red]", *[""] * 8)
                continue
            ratio = ours["steps_peak"] / max(1, hand["steps_peak"])
            results.setdefault("memory", {})[f"{case.name}/{label}"] = {
                "nndsl": ours, "hand": hand, "ratio": ratio}
            table.add_row(first, label, mib(ours["built"]), mib(hand["built"]),
                          mib(ours["steps_peak"]), mib(hand["steps_peak"]),
                          mib(ours["total_peak"]), mib(hand["total_peak"]), f"{ratio:.3f}x",
                          f"<= {MEMORY_TARGET:.2f}x", verdict(ratio <= MEMORY_TARGET))
    return table


# ---------------------------------------------------------------------------- 5. torch.compile

def compile_unavailable() -> str | None:
    """Why torch.compile cannot run here, or None."""
    try:
        import torch._dynamo
        if not torch._dynamo.is_dynamo_supported():
            return f"TorchDynamo does not support Python {platform.python_version()} here"
    except Exception as e:  # noqa: BLE001  (any import failure is the answer)
        return f"torch._dynamo cannot be imported: {type(e).__name__}: {e}"
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None and shutil.which("c++") is None:
        return f"no C++ compiler ({cxx}) on PATH: inductor's CPU code needs one"
    return None


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160] if text else ''}"


def bench_compile(all_cases: list[Case], warmup: int, rounds: int, results: dict) -> Table:
    table = Table(title=f"5. torch.compile (inductor, default mode): the first step, then "
                        f"{warmup} warm-up steps and {rounds} pairs",
                  caption="first step: the first call's forward + backward + step, tracing and "
                          "compiling included (a fresh inductor cache: cold; reused: the "
                          "same nndsl graph compiled for the row above)\nratio: steady "
                          "state, the median of the per-pair ratios nndsl / hand-written")
    for col, just in (("model", "left"), ("hand-written model", "left"),
                      ("first step nndsl", "right"), ("first step hand", "right"),
                      ("nndsl", "right"), ("hand-written", "right"), ("ratio", "right"),
                      ("middle half", "right"), ("", "left"), ("target", "right"),
                      (" ", "center")):
        table.add_column(col, justify=just)
    why = compile_unavailable()
    if why is not None:
        table.add_row("-", f"[yellow]torch.compile unavailable: {why}[/yellow]", *[""] * 9)
        results["compile"] = {"unavailable": why}
        return table
    # the compiler's one-time start-up (imports, worker pool) on a throwaway function, so it
    # is charged to neither side
    try:
        w = torch.nn.Linear(4, 4)
        torch.compile(w)(torch.randn(2, 4)).sum().backward()
    except Exception as e:  # noqa: BLE001
        why = _short(e)
        table.add_row("-", f"[yellow]torch.compile failed on a trivial module: {why}[/yellow]",
                      *[""] * 9)
        results["compile"] = {"unavailable": why}
        return table
    load = OtherLoad()
    with load:
        for case in all_cases:
            c = compiled(case)
            batches = make_batches(case, 4)
            for i, (label, kw) in enumerate(case.variants):
                first = case.name if i == 0 else ""
                m, ref = build_pair(case, kw, c)
                steps, firsts, errors = [], [], []
                for model in (m, ref):
                    try:
                        s = stepper(model, batches, call=torch.compile(model))
                        firsts.append(once(s))
                        steps.append(s)
                    except Exception as e:  # noqa: BLE001
                        errors.append(("nndsl" if model is m else "hand-written") + ": " +
                                      _short(e))
                if errors:
                    results.setdefault("compile", {})[f"{case.name}/{label}"] = {
                        "error": errors}
                    table.add_row(first, label, f"[red]failed: {'; '.join(errors)}[/red]",
                                  *[""] * 8)
                    continue
                r = pairs(steps[0], steps[1], warmup, rounds)
                results.setdefault("compile", {})[f"{case.name}/{label}"] = {
                    "first_nndsl": firsts[0], "first_hand": firsts[1], **r}
                # the later variants' nndsl module runs the same code on the same graph as
                # the first's: torch.compile reuses that compilation, so its time is no cold one
                ours_first = f"{firsts[0]:.1f} s" if i == 0 else \
                    f"{firsts[0]:.1f} s (reused)"
                table.add_row(first, label, ours_first, f"{firsts[1]:.1f} s",
                              ms(r["ours"]), ms(r["hand"]), *ratio_cells(r),
                              f"<= {STEP_TARGET:.2f}x", verdict(r["ratio"] <= STEP_TARGET))
                del m, ref, steps
                gc.collect()
    table.caption += load.describe(NOISY)
    return table


# ---------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    ap.add_argument("--tiny", action="store_true",
                    help="reduced model sizes (resnet18 width 8, a 2-layer GPT of width 32)")
    ap.add_argument("--compile", action="store_true", help="also time under torch.compile")
    ap.add_argument("--only", choices=("resnet18", "gpt_mini"), default=None,
                    help="one model")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    ap.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_probe is not None:
        print(json.dumps(memory_probe(json.loads(args.memory_probe))))
        return 0
    if args.quick:
        warmup, rounds, loop_rounds, mem_steps, c_rounds = 2, 5, 4, 2, 3
    else:
        warmup, rounds, loop_rounds, mem_steps, c_rounds = 3, 15, 10, 3, 8
    if args.tiny:          # a smoke test of every table, not a measurement
        warmup, rounds, loop_rounds, mem_steps, c_rounds = 1, 3, 3, 1, 2

    console = Console() if sys.stdout.isatty() else Console(width=160)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) \
        if Path("/proc/loadavg").exists() else "unknown"
    console.print(f"nndsl training-step benchmark{' (quick)' if args.quick else ''}"
                  f"{' (tiny sizes)' if args.tiny else ''} — torch {torch.__version__}, python "
                  f"{platform.python_version()}, {platform.processor() or platform.machine()}")
    console.print(f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, load average "
                  f"(1, 5, 15 min) {load}")
    torch.manual_seed(0)
    chosen = pick(cases(args.tiny), args.only)
    results: dict = {"load": load, "torch": torch.__version__,
                     "threads": torch.get_num_threads()}
    took = {}

    def timed(name, fn, *a):
        t = time.perf_counter()
        console.print(fn(*a))
        took[name] = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as cache:
        timed("step", bench_step, chosen, warmup, rounds, results)
        timed("correctness", bench_correctness, chosen, results)
        timed("loop", bench_loop, chosen, warmup, loop_rounds, results)
        timed("memory", bench_memory, chosen, mem_steps, args.tiny, results)
        if args.compile:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache    # cold compiles, not cache hits
            timed("compile", bench_compile, chosen, warmup, c_rounds, results)
        else:
            console.print("5. torch.compile: not run (add --compile; it takes minutes)")
    results["seconds"] = took
    console.print(f"took {sum(took.values()):.0f} s (" +
                  ", ".join(f"{k} {v:.0f} s" for k, v in took.items()) + "); load average "
                  "now " + (" ".join(Path("/proc/loadavg").read_text().split()[:3])
                            if Path("/proc/loadavg").exists() else "unknown"))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
