"""Compression: quantization and pruning in nndsl, their accuracy and speed, beside the tools a
PyTorch user would reach for.

    python benchmarks/bench_compress.py            # full run
    python benchmarks/bench_compress.py --quick    # smoke test: fewer epochs and runs
    python benchmarks/bench_compress.py --only gpt # one part: accuracy, gpt, resnet, static, recurrent

Three measurements, each printed as a table with its target next to it (a missed target is
marked ``missed``; the script never fails on one):

1. accuracy on scikit-learn's digits (the data ``nndsl train`` uses, prepared by nndsl's own data
   helpers, a seeded held-out split): ``mnist_cnn`` and ``mlp`` trained by a plain PyTorch loop,
   then the held-out accuracy of the float model and of every quantization scheme
   (``int8-dynamic``, ``int8-weight``, ``int4-weight``, ``f16``, ``bf16``), 50% channel pruning
   and 80% magnitude pruning, each pruning before and after a short fine-tune, and 80% gradual
   magnitude pruning (per layer and global) during training. Targets: the int8 schemes,
   channels=0.5 + fine-tune and 80% gradual pruning lose at most 1 point.
2. ``gpt_mini`` forward (eval, ``torch.no_grad()``): nndsl f32 against nndsl int8-dynamic on the
   torch backend and in onnxruntime (nndsl's own exports), beside the hand-written GPT of
   ``tests/reference_models.py`` with the same weights quantized by
   ``torch.ao.quantization.quantize_dynamic`` and by onnxruntime's ``quantize_dynamic`` of a
   ``torch.onnx.export`` (its defaults, per-channel scales, and uint8 weights). nndsl's export
   is shown in both int8 forms (``u8u8``, the default, and ``--onnx-int8 u8s8``). Target: each
   nndsl int8 row at least as fast (against the hand-written float model) as the fastest anchor
   on its backend that is at least as accurate.
4. ``resnet18`` forward, f32 against ``int8-static`` calibrated on digits, on the torch backend
   and in onnxruntime, beside onnxruntime's ``quantize_static`` (QDQ, per-channel, MinMax) of a
   ``torch.onnx.export`` of the hand-written ResNet-18 calibrated on the same batches. Target:
   nndsl's int8 speedup at least the anchor's.
3. ``resnet18`` forward (224x224, which the spec fixes): dense against ``prune="channels=0.5"`` on the torch backend (O1, O2)
   and in onnxruntime — parameters, FLOPs, time — beside Torch-Pruning's ``MagnitudePruner`` at
   ratio 0.5 on the hand-written ResNet-18 with the same weights. Target: >= 1.7x faster.
5. ``lstm_sentiment`` at width 256: nndsl f32 against int8-dynamic (LSTM weights stored in
   int8, the recurrence in float), beside ``torch.ao``'s dynamic int8 LSTM (int8 kernels in the
   recurrence) on the same ``nn.LSTM``: no target; it shows which lowering is faster.

All timed variants of a table run in turn within each repetition (interleaved), and every
speedup is the median of the per-repetition ratios, so that load on the shared machine moves
both sides of a ratio alike.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import io
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from torch import nn  # noqa: E402

import nndsl  # noqa: E402
import reference_models as R  # noqa: E402
from benchmarks.timing import OtherLoad, once  # noqa: E402
from nndsl.backends.onnx import save  # noqa: E402
from nndsl.ir.types import TensorType  # noqa: E402
from nndsl.train import data as data_mod  # noqa: E402
from nndsl.train.sparsity import MaskKeeper, training_targets  # noqa: E402

SPECS = ROOT / "specs"

MAX_ACCURACY_LOSS = 1.0     # points, for int8, channels=0.5 + fine-tune, 80% gradual pruning
PRUNE_SPEEDUP_TARGET = 1.7  # resnet18, channels=0.5 against dense
TEST_FRACTION = 0.25        # of the 1,797 digits, held out for the accuracy table
TUNE_RATE = 0.5             # fine-tunes start from this fraction of the training's peak rate
SEED = 0
ACCURACY_SEEDS = (0, 1, 2)  # the accuracy table's mean is over these (a split is 450 samples)

QUANT_SCHEMES = ("int8-dynamic", "int8-weight", "int4-weight", "f16", "bf16")
TP_INSTALL = "pip install torch-pruning"


# ---- formatting ----

def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def verdict(ok: bool) -> str:
    return "[green]met[/green]" if ok else "[red]missed[/red]"


def tie_verdict(ratio: float) -> str:
    """A speed target of ``ratio >= 1`` where 3% either side is within the noise."""
    if 0.97 <= ratio < 1.0:
        return "[yellow]tie[/yellow]"
    return verdict(ratio >= 1.0)


def kib(n: int) -> str:
    return f"{n / 1024:,.0f} KiB"


def giga(n: float) -> str:
    return f"{n / 1e9:,.2f} G"


# ---- timing ----

def interleaved(fns: list, warmup: int, runs: int) -> list[list[float]]:
    """Per-function lists of call times; within each repetition every function runs once, in
    order, so that slow and fast stretches of a noisy machine fall on all of them alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            times[i].append(once(fn))
    return times


DISTORTED = "the torch rows are distorted"    # what a busy neighbour does to the tables


def speedup(base: list[float], other: list[float]) -> float:
    """The median of the per-repetition ratios ``base / other`` (above 1: ``other`` is faster)."""
    return statistics.median(a / b for a, b in zip(base, other))


def ort_session(path: Path) -> ort.InferenceSession:
    """A CPU session with torch's thread count. Its threads do not spin-wait after a run: the
    torch models run in between, and spinning threads would take their cores."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def session_runner(session: ort.InferenceSession, feed: dict):
    """A no-argument call of ``session`` on ``feed``, for the timing loop."""
    return lambda: session.run(None, feed)


@contextlib.contextmanager
def quiet():
    """Silence the deprecation warnings and progress chatter of the tools compared against."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                yield
            finally:
                root.setLevel(level)


# ---- 1. accuracy on digits ----

@dataclass
class Digits:
    """The digits prepared for one spec's input, split into training and held-out samples."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def digits_for(c, seed: int = SEED) -> Digits:
    """scikit-learn's digits shaped for the compiled model ``c`` the way ``nndsl train`` shapes
    them (8x8 images scaled to [0, 1], resized to the declared input, flattened for an MLP),
    with a seeded split of ``TEST_FRACTION`` held out."""
    (out_type,) = c.output_types.values()
    target = {"label": TensorType("i64", out_type.shape[:1])}
    data = data_mod.load({"name": "digits"}, c.input_types, target, seed, None)
    splits = data_mod.split(data.n, 0.0, TEST_FRACTION, seed)
    data_mod.standardize(data, splits.train)     # a no-op for images; kept for other sets
    (x,) = (data.arrays[n] for n in c.input_names)
    y = data.arrays["label"]
    return Digits(x[splits.train], y[splits.train], x[splits.test], y[splits.test])


def fit(model: nn.Module, d: Digits, epochs: int, lr: float, weight_decay: float, batch: int,
        schedule: str = "one_cycle", after_step=None, seed: int = SEED) -> nn.Module:
    """A plain PyTorch training loop over seeded shuffles of the training split: AdamW on
    cross-entropy, the rate following ``schedule`` (``one_cycle``: warm up over the first
    quarter to ``lr``, then anneal, as the specs' train sections do; ``cosine``: from ``lr``
    down to zero, for fine-tunes). ``after_step(optimizer)`` runs after every optimizer step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(d.y_train) / batch)
    if schedule == "one_cycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                    pct_start=0.25)
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(d.y_train), generator=gen)
        for b in range(math.ceil(len(order) / batch)):
            idx = order[b * batch:(b + 1) * batch]
            loss = F.cross_entropy(model(d.x_train[idx]), d.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if after_step is not None:
                after_step(opt)
    return model.eval()


def accuracy(model: nn.Module, d: Digits) -> float:
    """Held-out accuracy in percent (eval mode, no gradients)."""
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(d.x_test[i:i + 256]).argmax(-1)
                          for i in range(0, len(d.x_test), 256)])
    return 100.0 * (pred == d.y_test).float().mean().item()


def zero_fraction(state: dict) -> float:
    """The fraction of zeros in the conv and linear weights (tensors of rank >= 2)."""
    ws = [v for v in state.values() if v.is_floating_point() and v.dim() >= 2]
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


# name -> (spec, and from its train section: peak learning rate, weight decay, batch size)
ACCURACY_MODELS = {
    "mnist_cnn": ("vision/mnist_cnn.nn", 2e-3, 0.01, 32),
    "mlp": ("fundamentals/mlp.nn", 1e-3, 0.05, 64),
}


def accuracy_rows(spec: str, lr: float, wd: float, batch: int, epochs: int,
                  tune_epochs: int, seed: int) -> list[tuple]:
    """One seed's rows for one model: ``(variant, compiled, module, accuracy, target)``, the
    float model first. The seed fixes the held-out split, the initial weights and the shuffles."""
    path = SPECS / spec
    torch.manual_seed(seed)
    c = nndsl.compile(path)
    d = digits_for(c, seed)
    trained = fit(c.to_torch(seed=seed), d, epochs, lr, wd, batch, seed=seed)
    sd = {key: v.detach().clone() for key, v in trained.state_dict().items()}
    rows = [("float (f32)", c, trained, accuracy(trained, d), False)]
    for scheme in QUANT_SCHEMES:
        cq = nndsl.compile(path, quantize=scheme, weights=sd)
        mq = cq.to_torch().eval()
        rows.append((scheme, cq, mq, accuracy(mq, d), scheme.startswith("int8")))

    # 50% of the channels, ranked by the trained weights' L2 norms; the result is a smaller
    # dense model whose weights train like any module's
    cc = nndsl.compile(path, prune="channels=0.5", weights=sd)
    mc = cc.to_torch().eval()
    rows.append(("channels=0.5", cc, copy.deepcopy(mc), accuracy(mc, d), False))
    fit(mc, d, tune_epochs, lr * TUNE_RATE, wd, batch, "cosine", seed=seed)
    rows.append(("channels=0.5 + fine-tune", cc, mc, accuracy(mc, d), True))

    # 80% of every conv/linear weight zeroed; the fine-tune keeps the zeros where they are
    cm = nndsl.compile(path, prune="magnitude=0.8", weights=sd)
    mm = cm.to_torch().eval()
    rows.append(("magnitude=0.8", cm, copy.deepcopy(mm), accuracy(mm, d), False))
    masks = [(p, p.detach() == 0) for p in mm.parameters() if p.dim() >= 2]

    def reapply(opt):
        with torch.no_grad():
            for p, zero in masks:
                p.masked_fill_(zero, 0.0)
    fit(mm, d, tune_epochs, lr * TUNE_RATE, wd, batch, "cosine", after_step=reapply, seed=seed)
    tuned = {k: v.detach().clone() for k, v in mm.state_dict().items()}
    cm2 = nndsl.compile(path, prune="magnitude=0.8", weights=tuned)
    mm2 = cm2.to_torch().eval()
    rows.append(("magnitude=0.8 + fine-tune", cm2, mm2, accuracy(mm2, d), False))

    # gradual pruning while training (Zhu & Gupta's cubic schedule), from the same start as
    # the float model: what `nndsl train --prune magnitude=0.8` (or global=0.8) does
    for prune in ("magnitude=0.8", "global=0.8"):
        torch.manual_seed(seed)
        cg = nndsl.compile(path)
        mg = cg.to_torch(seed=seed)
        kind, value, names = training_targets(cg, prune)
        params = dict(mg.named_parameters())
        keeper = MaskKeeper(kind, value, {n: params[n] for n in names},
                            epochs * math.ceil(len(d.y_train) / batch))
        steps = [0]

        def prune_step(opt, keeper=keeper, steps=steps):
            steps[0] += 1
            keeper.apply(steps[0], opt)
        fit(mg, d, epochs, lr, wd, batch, after_step=prune_step, seed=seed)
        tuned = {k: v.detach().clone() for k, v in mg.state_dict().items()}
        cg2 = nndsl.compile(path, prune=prune, weights=tuned)
        mg2 = cg2.to_torch().eval()
        rows.append((f"{prune}, gradual in training", cg2, mg2, accuracy(mg2, d), True))
    return rows


def bench_accuracy(epochs: int, tune_epochs: int, seeds: tuple) -> Table:
    table = Table(title=f"1. Held-out accuracy on digits ({TEST_FRACTION:.0%} of 1,797 held "
                        f"out), trained {epochs} epochs; fine-tunes {tune_epochs} "
                        f"epoch{'s' if tune_epochs > 1 else ''}; mean over seeds "
                        f"{', '.join(map(str, seeds))}",
                  caption="each seed fixes the held-out split, the initial weights and the "
                          "shuffles (one held-out sample is 0.22 points)\nfloat: the trained "
                          "weights; each scheme is compiled with weights=<trained>, so it derives "
                          "its weights from them\nsize: Compiled.size_bytes() (parameters and "
                          "buffers as stored); zeros: fraction of zero conv/linear weights in the "
                          "float modules run\ntraining: AdamW, one-cycle schedule; fine-tunes: "
                          "AdamW from half the peak rate, cosine-annealed to zero; magnitude: "
                          "masked weights re-zeroed after every step, then recompiled with the "
                          "tuned weights\nΔ points: the mean over seeds of (variant − float) "
                          "of the same seed, with the lowest and highest; the target is on the "
                          "mean")
    for col, just in (("model", "left"), ("variant", "left"), ("params", "right"),
                      ("size", "right"), ("zeros", "right"), ("accuracy", "right"),
                      ("Δ points", "right"), ("range", "right"), ("target", "right"),
                      ("", "center")):
        table.add_column(col, justify=just)

    for k, (name, (spec, lr, wd, batch)) in enumerate(ACCURACY_MODELS.items()):
        if k:
            table.add_section()
        runs = [accuracy_rows(spec, lr, wd, batch, epochs, tune_epochs, seed)
                for seed in seeds]
        for i, (variant, comp, module, _, target) in enumerate(runs[0]):
            accs = [run[i][3] for run in runs]
            deltas = [run[i][3] - run[0][3] for run in runs]
            delta = round(statistics.mean(deltas), 2) + 0.0      # no "-0.00"
            quantized = comp.compression is not None and comp.compression.quantize is not None
            table.add_row(name if i == 0 else "", variant, f"{comp.param_count():,}",
                          kib(comp.size_bytes()),
                          "-" if quantized else f"{zero_fraction(module.state_dict()):.3f}",
                          f"{statistics.mean(accs):.2f}%", "" if i == 0 else f"{delta:+.2f}",
                          "" if i == 0 or len(seeds) == 1 else
                          f"{min(deltas):+.2f} .. {max(deltas):+.2f}",
                          f"loss <= {MAX_ACCURACY_LOSS:g}" if target else "",
                          verdict(-delta <= MAX_ACCURACY_LOSS) if target else "")
    return table


# ---- 2. gpt_mini, int8-dynamic ----

def export_reference(model: nn.Module, example: torch.Tensor, path: Path) -> str:
    """``torch.onnx.export`` of a hand-written GPT to ``path``; the exporter used (the default,
    then the TorchScript one, ``dynamo=False``). Raises if neither can export it."""
    kw = dict(input_names=["tokens"], output_names=["logits"])
    errors = []
    for label, extra in (("torch.onnx.export", {}),
                         ("torch.onnx.export(dynamo=False)",
                          {"dynamo": False, "opset_version": 17,
                           "dynamic_axes": {"tokens": {0: "N", 1: "T"}}})):
        try:
            with quiet():
                torch.onnx.export(model, (example,), str(path), **kw, **extra)
            return label
        except Exception as e:     # a missing onnxscript, an exporter failure
            errors.append(f"{label}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
    raise RuntimeError("; ".join(errors))


def bench_gpt(batch: int, tokens: int, warmup: int, runs: int, tmp: Path) -> Table:
    path = SPECS / "transformers/gpt_mini.nn"
    c = nndsl.compile(path)
    f32 = c.to_torch(seed=SEED).eval()
    sd = f32.state_dict()
    cq = nndsl.compile(path, quantize="int8-dynamic", weights=sd)
    int8 = cq.to_torch().eval()
    x = c.example_inputs(batch=batch, T=tokens, seed=SEED)["tokens"]
    feed = {"tokens": x.numpy()}

    ref = R.GPT().eval()
    ref.load_state_dict(R.to_reference(ref, sd))
    with quiet():
        ref_int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(ref), {nn.Linear},
                                                          dtype=torch.qint8)
    save(c.to_onnx(weights=sd), tmp / "gpt_f32.onnx")
    save(cq.to_onnx(), tmp / "gpt_int8.onnx")
    save(cq.to_onnx(int8="u8s8"), tmp / "gpt_int8_u8s8.onnx")
    ours_f32, ours_int8 = ort_session(tmp / "gpt_f32.onnx"), ort_session(tmp / "gpt_int8.onnx")
    ours_u8s8 = ort_session(tmp / "gpt_int8_u8s8.onnx")

    # (name, family: the group whose first row is the float model its speedup is against, call)
    variants: list[tuple[str, str, object]] = [
        ("nndsl f32", "nndsl torch", lambda: f32(x)),
        ("nndsl int8-dynamic", "nndsl torch", lambda: int8(x)),
        ("hand-written f32", "hand torch", lambda: ref(x)),
        ("hand-written + torch.ao quantize_dynamic", "hand torch", lambda: ref_int8(x)),
        ("nndsl f32 export", "nndsl ort", session_runner(ours_f32, feed)),
        ("nndsl int8-dynamic export (u8u8, default)", "nndsl ort", session_runner(ours_int8, feed)),
        ("nndsl int8-dynamic export (--onnx-int8 u8s8)", "nndsl ort",
         session_runner(ours_u8s8, feed)),
    ]
    try:
        exporter = export_reference(ref, x, tmp / "ref_f32.onnx")
    except RuntimeError as e:
        exporter, export_error = None, str(e)
    if exporter is not None:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        # onnxruntime's defaults (int8 weights: u8·s8 kernels), per-channel scales like
        # nndsl's, and uint8 weights (u8·u8 kernels, which nndsl's default export uses)
        quantized = {"  + ort quantize_dynamic": {},
                     "  + ort quantize_dynamic(per_channel=True)": {"per_channel": True},
                     "  + ort quantize_dynamic(per_channel=True, QUInt8)":
                         {"per_channel": True, "weight_type": QuantType.QUInt8}}
        variants.append((f"hand-written, {exporter}", "hand ort",
                         session_runner(ort_session(tmp / "ref_f32.onnx"), feed)))
        for k, (label, kw) in enumerate(quantized.items()):
            out = tmp / f"ref_int8_{k}.onnx"
            with quiet():
                quantize_dynamic(tmp / "ref_f32.onnx", out,
                                 **{"weight_type": QuantType.QInt8, **kw})
            variants.append((label, "hand ort", session_runner(ort_session(out), feed)))

    def as_array(out):
        return out[0] if isinstance(out, list) else out.numpy()

    with torch.no_grad():
        outputs = [as_array(fn()) for _, _, fn in variants]
        with OtherLoad() as other:
            times = interleaved([fn for _, _, fn in variants], warmup, runs)
    truth = outputs[0]
    errors = [float(np.abs(o - truth).max()) for o in outputs]

    # a family's float model is its first row; speedups are against it. Across families of one
    # backend, times are compared as ratios to the hand-written float model of that backend.
    backend_of = {"nndsl torch": "torch", "hand torch": "torch", "nndsl ort": "onnxruntime",
                  "hand ort": "onnxruntime"}
    base_of, hand_of = {}, {}
    for i, (_, fam, _) in enumerate(variants):
        base_of.setdefault(fam, i)
        if fam.startswith("hand"):
            hand_of.setdefault(backend_of[fam], i)
    ups = [speedup(times[base_of[fam]], times[i]) for i, (_, fam, _) in enumerate(variants)]
    vs_hand = [speedup(times[hand_of[backend_of[fam]]], times[i])
               if backend_of[fam] in hand_of else None for i, (_, fam, _) in enumerate(variants)]
    anchors = [i for i, (_, fam, _) in enumerate(variants)
               if fam.startswith("hand") and i != base_of[fam]]

    def target(i):
        """nndsl's int8 row ``i`` against the fastest anchor of its backend that is at least
        as accurate (all of them when none is): (that anchor or None, the median per-repetition
        ratio of its time to row i's)."""
        same = [j for j in anchors if backend_of[variants[j][1]] == backend_of[variants[i][1]]
                and vs_hand[j] is not None]
        rivals = [j for j in same if errors[j] >= errors[i] * 0.95] or same
        if not rivals:
            return None, None
        j = max(rivals, key=lambda j: vs_hand[j])
        return j, speedup(times[j], times[i])

    table = Table(title=f"2. gpt_mini forward, {batch}x{tokens} tokens, eval, no_grad: "
                        f"{warmup} warm-up, median of {runs}, all variants interleaved",
                  caption="speedup: median of per-repetition ratios against the float model of "
                          "the same group (first row of each); vs hand f32: the same against "
                          "the hand-written float model on the same backend\nmax |diff|: "
                          "largest absolute difference of the logits from nndsl f32 (largest "
                          f"|logit|: {np.abs(truth).max():.1f}); hand-written: "
                          "tests/reference_models.GPT() (nanoGPT, SDPA: what O1 fuses the spec's "
                          "attention into)\nonnxruntime: u8·s8 kernels (int8 weights) saturate "
                          "16-bit pair sums on x86 without VNNI (this CPU: "
                          f"{'VNNI' if has_vnni() else 'no VNNI'}); u8·u8 are exact everywhere"
                          "\ntarget: nndsl int8 at least as fast (median per-repetition ratio "
                          "of the times) as the fastest anchor on its backend whose max |diff| "
                          "is no smaller (within 5%); 'tie': within 3%, inside this machine's "
                          "run-to-run noise"
                          + other.describe(DISTORTED))
    for col, just in (("backend", "left"), ("model", "left"), ("time", "right"),
                      ("speedup", "right"), ("vs hand f32", "right"), ("max |diff|", "right"),
                      ("target", "right"), ("", "center")):
        table.add_column(col, justify=just)
    shown = set()
    for i, (label, fam, _) in enumerate(variants):
        if i > 0 and fam != variants[i - 1][1] and backend_of[fam] not in shown:
            table.add_section()
        is_ours_int8 = fam.startswith("nndsl") and i != base_of[fam]
        rival, ratio = target(i) if is_ours_int8 else (None, None)
        table.add_row("" if backend_of[fam] in shown else backend_of[fam], label,
                      ms(statistics.median(times[i])),
                      "1.00x" if i == base_of[fam] else f"{ups[i]:.2f}x",
                      "-" if vs_hand[i] is None else f"{vs_hand[i]:.2f}x",
                      f"{errors[i]:.2e}",
                      f"{ratio:.2f}x of {variants[rival][0].strip(' +')}"
                      if rival is not None else "",
                      tie_verdict(ratio) if rival is not None else "")
        shown.add(backend_of[fam])
    if exporter is None:
        table.add_row("onnxruntime", "hand-written: cannot export", "-", "-", "-", "-", "", "")
        table.caption += f"\ntorch.onnx.export failed: {export_error}"
    return table


def has_vnni() -> bool:
    """Whether this CPU has VNNI dot products (Linux's /proc/cpuinfo flags; False elsewhere)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags or "amx_int8" in flags


# ---- 3. resnet18, channel pruning ----

def torch_pruned(ref: nn.Module, example: torch.Tensor):
    """Torch-Pruning's MagnitudePruner (L2 importance, ratio 0.5, the classifier left whole) on
    a copy of ``ref``; None when the package is missing."""
    try:
        import torch_pruning as tp
    except ImportError:
        return None
    model = copy.deepcopy(ref)
    with quiet():
        pruner = tp.pruner.MagnitudePruner(model, example,
                                           importance=tp.importance.MagnitudeImportance(p=2),
                                           pruning_ratio=0.5, ignored_layers=[model.fc])
        pruner.step()
    return model.eval()


def tp_flops_params(model: nn.Module, example: torch.Tensor) -> tuple[float, int]:
    """FLOPs (two per multiply-accumulate, nndsl's convention) and parameters, as counted by
    ``torch_pruning.utils.count_ops_and_params`` (which counts MACs)."""
    import torch_pruning as tp
    with quiet():
        macs, params = tp.utils.count_ops_and_params(model, example)
    return 2 * macs, int(params)


def bench_resnet(batch: int, warmup: int, runs: int, tmp: Path) -> Table:
    path = SPECS / "vision/resnet18.nn"
    params = {"classes": 10}
    dense = {opt: nndsl.compile(path, params=params, opt=opt) for opt in ("O1", "O2")}
    sd = dense["O1"].to_torch(seed=SEED).state_dict()
    pruned = {opt: nndsl.compile(path, params=params, opt=opt, prune="channels=0.5", weights=sd)
              for opt in ("O1", "O2")}
    (input_name,) = dense["O1"].input_names
    x = dense["O1"].example_inputs(batch=batch, seed=SEED)[input_name]
    feed = {input_name: x.numpy()}
    size = "x".join(map(str, x.shape[1:]))

    rows = []   # (backend, model, Compiled or (flops, params), callable, index of its dense)

    def add(backend, label, counts, fn, dense_row=None):
        rows.append((backend, label, counts, fn, dense_row))
        return len(rows) - 1

    for opt in ("O1", "O2"):
        md = dense[opt].to_torch(weights=sd).eval()
        mp = pruned[opt].to_torch().eval()
        i = add(f"torch {opt}", "nndsl dense", dense[opt], lambda m=md: m(x))
        add(f"torch {opt}", "nndsl channels=0.5", pruned[opt], lambda m=mp: m(x), i)
    save(dense["O1"].to_onnx(weights=sd), tmp / "resnet_dense.onnx")
    save(pruned["O1"].to_onnx(), tmp / "resnet_pruned.onnx")
    s_dense = ort_session(tmp / "resnet_dense.onnx")
    s_pruned = ort_session(tmp / "resnet_pruned.onnx")
    i = add("onnxruntime", "nndsl dense (O1 export)", dense["O1"],
            session_runner(s_dense, feed))
    add("onnxruntime", "nndsl channels=0.5 (O1 export)", pruned["O1"],
        session_runner(s_pruned, feed), i)

    ref = R.ResNet18(classes=10).eval()
    ref.load_state_dict(R.to_reference(ref, sd))
    one = torch.randn(1, *x.shape[1:])
    tp_model = torch_pruned(ref, one)
    if tp_model is not None:
        i = add("torch", "hand-written dense", tp_flops_params(ref, one), lambda: ref(x))
        add("torch", "Torch-Pruning MagnitudePruner 0.5", tp_flops_params(tp_model, one),
            lambda: tp_model(x), i)

    with torch.no_grad(), OtherLoad() as other:
        times = interleaved([r[3] for r in rows], warmup, runs)

    table = Table(title=f"3. resnet18 (classes=10) forward, batch {batch} at {size}, eval, "
                        f"no_grad: {warmup} warm-up, median of {runs}, all interleaved",
                  caption="channels=0.5 ranks channels by the L2 norms of the same (initial) "
                          "weights that every row runs with\nparams and FLOPs per image: "
                          "Compiled.param_count() / flops() for nndsl; for the hand-written "
                          "rows torch_pruning.utils.count_ops_and_params, 2 FLOPs per MAC\n"
                          "speedup: median of per-repetition ratios dense / pruned, same "
                          "backend" + other.describe(DISTORTED)
                          + ("" if tp_model is not None else
                             f"\nTorch-Pruning is not installed: {TP_INSTALL}"))
    for col, just in (("backend", "left"), ("model", "left"), ("params", "right"),
                      ("FLOPs", "right"), ("time", "right"), ("speedup", "right"),
                      ("target", "right"), ("", "center")):
        table.add_column(col, justify=just)
    for k, (backend, label, counts, _, dense_row) in enumerate(rows):
        if isinstance(counts, tuple):
            flops, n_params = counts
        else:
            flops, n_params = counts.flops(batch=1), counts.param_count()
        ours_pruned = dense_row is not None and label.startswith("nndsl")
        if k and dense_row is None:
            table.add_section()
        up = speedup(times[dense_row], times[k]) if dense_row is not None else None
        table.add_row(backend if dense_row is None else "", label, f"{n_params:,}", giga(flops),
                      ms(statistics.median(times[k])),
                      "1.00x" if up is None else f"{up:.2f}x",
                      f">= {PRUNE_SPEEDUP_TARGET}x" if ours_pruned else "",
                      verdict(up >= PRUNE_SPEEDUP_TARGET) if ours_pruned else "")
    if tp_model is None:
        table.add_section()
        table.add_row("torch", f"Torch-Pruning: not installed ({TP_INSTALL})", "-", "-", "-",
                      "-", "", "")
    return table


# ---- 4. resnet18, static int8 ----

STATIC_SPEEDUP_NOTE = "nndsl's int8 speedup >= the anchor's (onnxruntime quantize_static)"


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over a list of input batches."""

    def __init__(self, name: str, batches: list):
        self.items = iter([{name: b.numpy()} for b in batches])

    def get_next(self):
        return next(self.items, None)


def calibration_batches(c, samples: int) -> list:
    """The digits shaped for ``c``'s image input (``nndsl compile --calibrate digits`` uses the
    same preparation and the same evenly spaced ``samples``), in batches of 32."""
    data = data_mod.load({"name": "digits"}, c.input_types, {}, 0, None)
    idx = torch.arange(data.n)
    data_mod.standardize(data, idx)
    take = idx[torch.linspace(0, data.n - 1, min(samples, data.n)).long()]
    (name,) = c.input_names
    return [data.arrays[name][take[i:i + 32]] for i in range(0, len(take), 32)]


def bench_static(batch: int, samples: int, warmup: int, runs: int, tmp: Path) -> Table:
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    path = SPECS / "vision/resnet18.nn"
    params = {"classes": 10}
    f32 = nndsl.compile(path, params=params, opt="O2")
    sd = nndsl.compile(path, params=params).to_torch(seed=SEED).state_dict()
    q8 = nndsl.compile(path, params=params, opt="O2", quantize="int8-static",
                       calibrate="digits", calibrate_samples=samples, weights=sd)
    batches = calibration_batches(f32, samples)
    (name,) = f32.input_names
    x = torch.cat(batches)[:batch]          # timed on calibration-like images
    feed = {name: x.numpy()}
    m32, m8 = f32.to_torch(weights=sd).eval(), q8.to_torch().eval()
    save(f32.to_onnx(weights=sd), tmp / "rn_f32.onnx")
    save(q8.to_onnx(), tmp / "rn_int8.onnx")
    s32, s8 = ort_session(tmp / "rn_f32.onnx"), ort_session(tmp / "rn_int8.onnx")

    ref = R.ResNet18(classes=10).eval()
    ref.load_state_dict(R.to_reference(ref, sd))
    anchor_label = "hand-written, torch.onnx.export"
    try:
        with quiet():
            torch.onnx.export(ref, (x[:1],), str(tmp / "ref.onnx"), input_names=[name],
                              output_names=["logits"], dynamo=False, opset_version=17,
                              dynamic_axes={name: {0: "N"}})
            quantize_static(str(tmp / "ref.onnx"), str(tmp / "ref_int8.onnx"),
                            _Batches(name, batches), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=True, calibrate_method=CalibrationMethod.MinMax)
        a32, a8 = ort_session(tmp / "ref.onnx"), ort_session(tmp / "ref_int8.onnx")
    except Exception as e:       # an exporter or quantizer failure: said in the table
        a32 = a8 = None
        anchor_label = f"anchor failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}"

    rows = [("torch", "nndsl f32 (O2)", lambda: m32(x), None),
            ("", "nndsl int8-static", lambda: m8(x), 0),
            ("onnxruntime", "nndsl f32 export", session_runner(s32, feed), None),
            ("", "nndsl int8-static export", session_runner(s8, feed), 2)]
    if a32 is not None:
        rows += [("onnxruntime", anchor_label, session_runner(a32, feed), None),
                 ("", "  + ort quantize_static (QDQ, per-channel, MinMax)",
                  session_runner(a8, feed), 4)]
    with torch.no_grad(), OtherLoad() as other:
        times = interleaved([r[2] for r in rows], warmup, runs)
        ref_out = m32(x).numpy()
        outs = [m32(x).numpy(), m8(x).numpy(), s32.run(None, feed)[0], s8.run(None, feed)[0]]
        if a32 is not None:
            outs += [a32.run(None, feed)[0], a8.run(None, feed)[0]]
    ups = [None if base is None else speedup(times[base], times[k])
           for k, (_, _, _, base) in enumerate(rows)]
    best_anchor = ups[5] if a32 is not None else None
    table = Table(title=f"4. resnet18 (classes=10) forward, batch {batch} at 3x224x224 digits, "
                        f"eval, no_grad: f32 against int8-static calibrated on {samples} "
                        f"digits (minmax); {warmup} warm-up, median of {runs}, interleaved",
                  caption="speedup: median of per-repetition ratios against the f32 row above "
                          "it\nmax |diff|: largest difference of the logits from nndsl f32, "
                          f"as a fraction of the largest |logit| ({np.abs(ref_out).max():.3g})"
                          f"\ntarget: {STATIC_SPEEDUP_NOTE}" + other.describe(DISTORTED))
    for col, just in (("backend", "left"), ("model", "left"), ("weights", "right"),
                      ("time", "right"), ("speedup", "right"), ("max |diff|", "right"),
                      ("target", "right"), ("", "center")):
        table.add_column(col, justify=just)
    sizes = [f32.size_bytes(), q8.size_bytes(), f32.size_bytes(), q8.size_bytes()]
    if a32 is not None:
        sizes += [os.path.getsize(tmp / "ref.onnx"), os.path.getsize(tmp / "ref_int8.onnx")]
    for k, (backend, label, _, base) in enumerate(rows):
        ours = label.startswith("nndsl int8")
        if k and base is None:
            table.add_section()
        diff = np.abs(outs[k] - ref_out).max() / np.abs(ref_out).max()
        table.add_row(backend, label, kib(sizes[k]), ms(statistics.median(times[k])),
                      "1.00x" if ups[k] is None else f"{ups[k]:.2f}x", f"{diff:.2%}",
                      f">= {best_anchor:.2f}x" if ours and best_anchor else "",
                      verdict(ups[k] >= best_anchor) if ours and best_anchor else "")
    return table


# ---- main ----

# ---- 5. recurrent layers under int8-dynamic ----

def bench_recurrent(batch: int, tokens: int, warmup: int, runs: int) -> Table:
    """lstm_sentiment (width 256): nndsl f32 against nndsl int8-dynamic (int8-stored LSTM
    weights, float recurrence), beside torch.ao's dynamic int8 LSTM of the same nn.LSTM (its
    int8 kernels run the recurrence): which is faster decides nndsl's lowering."""
    path = SPECS / "sequence/lstm_sentiment.nn"
    params = {"hidden": 256, "embed": 256}
    c = nndsl.compile(path, params=params)
    f32 = c.to_torch(seed=SEED).eval()
    sd = f32.state_dict()
    q8 = nndsl.compile(path, params=params, quantize="int8-dynamic", weights=sd).to_torch().eval()
    x = c.example_inputs(batch=batch, T=tokens, seed=SEED)["tokens"]

    lstm = nn.LSTM(256, 256, batch_first=True).eval()
    lstm.load_state_dict({k.removeprefix("lstm."): v for k, v in sd.items()
                          if k.startswith("lstm.")})
    lstm.flatten_parameters()
    holder = nn.Sequential(lstm)              # quantize_dynamic swaps children only
    with quiet():
        ao = torch.ao.quantization.quantize_dynamic(holder, {nn.LSTM}, dtype=torch.qint8)[0]
    h = F.embedding(x, sd["embedding.weight"])        # the LSTM's input, for the nn.LSTM rows
    variants = [("nndsl f32", lambda: f32(x)), ("nndsl int8-dynamic", lambda: q8(x)),
                ("nn.LSTM f32 (the LSTM alone)", lambda: lstm(h)),
                ("  + torch.ao quantize_dynamic", lambda: ao(h))]
    with torch.no_grad():
        ref, ours = f32(x), q8(x)
        ref_l, ao_l = lstm(h)[0], ao(h)[0]
        with OtherLoad() as other:
            times = interleaved([fn for _, fn in variants], warmup, runs)
    table = Table(title=f"5. lstm_sentiment (embed 256, hidden 256), batch {batch}x{tokens} "
                        f"tokens: {warmup} warm-up, median of {runs}, interleaved",
                  caption="int8-dynamic stores the LSTM's weight matrices in int8 and runs the "
                          "recurrence in float; torch.ao's dynamic LSTM runs it with int8 "
                          "kernels\nmax |diff|: against the float row above it" +
                          other.describe(DISTORTED))
    for col, just in (("model", "left"), ("time", "right"), ("speedup", "right"),
                      ("max |diff|", "right")):
        table.add_column(col, justify=just)
    diffs = [0.0, float((ours - ref).abs().max()), 0.0, float((ao_l - ref_l).abs().max())]
    for i, (label, _) in enumerate(variants):
        base = times[0] if i < 2 else times[2]
        table.add_row(label, ms(statistics.median(times[i])),
                      f"{speedup(base, times[i]):.2f}x", f"{diffs[i]:.2e}")
    return table


def cpu_description() -> str:
    """The CPU's name and the vector extensions that decide which int8 kernels run (VNNI: 8-bit
    dot products without 16-bit saturation; without it onnxruntime's u8·s8 kernels saturate)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        return name
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    vnni = "" if {"avx512_vnni", "avx_vnni"} & flags else ", no VNNI"
    return f"{name} ({', '.join(isa) or 'no AVX2'}{vnni})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="a smoke test: fewer epochs and runs, smaller inputs")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--only", choices=("accuracy", "gpt", "resnet", "static", "recurrent"),
                    action="append",
                    help="run only this part (repeatable)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = args.only or ["accuracy", "gpt", "resnet", "static", "recurrent"]
    if args.quick:
        epochs, tune, gpt_shape, rn_batch, warmup, runs = 3, 1, (2, 128), 2, 1, 3
    else:
        epochs, tune, gpt_shape, rn_batch, warmup, runs = 10, 3, (4, 512), 8, 2, 10

    console = Console() if sys.stdout.isatty() else Console(width=140)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    console.print(f"nndsl compression benchmarks{' (quick)' if args.quick else ''} — torch "
                  f"{torch.__version__}, onnxruntime {ort.__version__}, python "
                  f"{platform.python_version()}")
    console.print(f"{cpu_description()}; {os.cpu_count()} CPUs, {torch.get_num_threads()} torch "
                  f"threads, load average (1, 5, 15 min) {load}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "accuracy" in parts:
            console.print(bench_accuracy(epochs, tune, (SEED,) if args.quick else ACCURACY_SEEDS))
        if "gpt" in parts:
            gc.collect()
            console.print(bench_gpt(*gpt_shape, warmup, runs, tmp))
        if "resnet" in parts:
            gc.collect()
            console.print(bench_resnet(rn_batch, warmup, runs, tmp))
        if "static" in parts:
            gc.collect()
            console.print(bench_static(rn_batch, 32 if args.quick else 128, warmup, runs, tmp))
        if "recurrent" in parts:
            gc.collect()
            console.print(bench_recurrent(*((4, 32) if args.quick else (16, 128)), warmup, runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
