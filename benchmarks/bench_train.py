"""Training: the mnist_cnn target run, and `nndsl train`'s throughput against a hand-written
PyTorch loop on the same model, data and batches.

    python benchmarks/bench_train.py [--quick]

1. ``nndsl train specs/vision/mnist_cnn.nn --data digits`` as a user runs it (a subprocess,
   fixed seed): target >= 97% validation accuracy at the best epoch in under 60 s (wall time,
   interpreter start-up included).
2. Training throughput (samples/s over the training part of an epoch; validation excluded on
   both sides): the nndsl loop (spec compiled at O1, its train section with a constant rate)
   against `tests/reference_models.MnistCNN` trained by a plain loop — forward, cross-entropy,
   backward, AdamW step, `loss.item()` — over the same batches from the same initial weights.
   Epochs alternate between the two; the ratio is the median of per-pair ratios. Target: within
   5%.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nndsl.train import data as data_mod  # noqa: E402
from nndsl.train.run import run_training  # noqa: E402
from tests.reference_models import MnistCNN, to_reference  # noqa: E402

SPEC = ROOT / "specs/vision/mnist_cnn.nn"


def target_run(tmp: Path) -> dict:
    out = tmp / "target"
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "nndsl", "train", str(SPEC), "--data", "digits",
                        "--out", str(out), "--quiet"], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    summary = json.loads((out / "summary.json").read_text())
    return {"wall": wall, "train_seconds": summary["seconds"], "best": summary["best"],
            "epochs": summary["epochs"]}


def hand_epoch(model, opt, x, y, order, batch: int) -> float:
    model.train()
    t = time.perf_counter()
    total = 0.0
    for b in range(math.ceil(len(order) / batch)):
        idx = order[b * batch:(b + 1) * batch]
        xb, yb = x[idx], y[idx]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    return time.perf_counter() - t


def throughput(tmp: Path, repeat: int, batch: int) -> dict:
    import nndsl
    c = nndsl.compile(SPEC)
    data = data_mod.load({"name": "digits"}, c.input_types, {"label": c.output_types["logits"]
                                                            .with_shape(c.output_types["logits"]
                                                                        .shape[:1])
                                                            .with_dtype("i64")}, 0, None)
    splits = data_mod.split(data.n, 0.1, 0.0, 0)
    x, y = data.arrays["image"], data.arrays["label"]
    ref = MnistCNN()
    ref.load_state_dict(to_reference(MnistCNN, c.spec_state(seed=0)))
    opt = torch.optim.AdamW(ref.parameters(), lr=2e-3, weight_decay=0.01)
    ours, hand, ratios = [], [], []
    for i in range(repeat):
        r = run_training(SPEC, out=tmp / f"tp{i}", quiet=True,
                         overrides={"epochs": 1, "batch": batch, "data": "digits"})
        t_ours = r.history[0]["time"]
        n = len(splits.train)
        order = data_mod.epoch_order(splits.train, 0, 0)
        t_hand = hand_epoch(ref, opt, x, y, order, batch)
        ours.append(n / t_ours)
        hand.append(n / t_hand)
        ratios.append((n / t_ours) / (n / t_hand))
    return {"ours": statistics.median(ours), "hand": statistics.median(hand),
            "ratio": statistics.median(ratios), "n": len(splits.train)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    con = Console()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t = target_run(tmp)
        acc = t["best"]["val_accuracy"]
        table = Table(title="nndsl train specs/vision/mnist_cnn.nn --data digits")
        for col in ("epochs", "best epoch", "best val accuracy", "training s", "wall s",
                    "target"):
            table.add_column(col, justify="right")
        ok = acc >= 0.97 and t["wall"] < 60
        table.add_row(str(t["epochs"]), str(t["best"]["epoch"]), f"{acc:.4f}",
                      f"{t['train_seconds']:.1f}", f"{t['wall']:.1f}",
                      ">= 0.97 in < 60 s: " + ("met" if ok else "missed"))
        con.print(table)
        tp = throughput(tmp, 3 if args.quick else 7, 32)
        table = Table(title=f"training throughput, mnist_cnn on digits 28x28, batch 32, "
                            f"{tp['n']} samples/epoch")
        for col in ("nndsl train", "hand-written loop", "ratio", "target"):
            table.add_column(col, justify="right")
        table.add_row(f"{tp['ours']:,.0f} samples/s", f"{tp['hand']:,.0f} samples/s",
                      f"{tp['ratio']:.3f}", ">= 0.95: " + ("met" if tp["ratio"] >= 0.95
                                                           else "missed"))
        con.print(table)


if __name__ == "__main__":
    main()
