"""Training runs end to end: accuracy on digits, exact resume, the run folder, ONNX export of
the best checkpoint, user data files, transfer learning, early stopping, mixed precision, the
command line, and data-parallel training with two processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import nndsl
from nndsl.cli import main
from nndsl.errors import TrainError
from nndsl.train.run import run_training

ROOT = Path(__file__).resolve().parents[1]

MLP = """
model digits_mlp(classes: int = 10, p: float = 0.1) {
    input image: f32[N, 1, 8, 8]
    output logits = image |> flatten |> linear(32) as fc1 |> relu |> dropout(p)
                          |> linear(classes) as fc2
}
"""

SECTION = """
train digits_mlp {
    target label: i64[N]
    data = digits
    loss = cross_entropy(logits, label, smoothing=0.05)
    optimizer = OPT
    schedule = SCHED
    augment = [noise(0.05)]
    metrics = [accuracy, f1, roc_auc]
    epochs = EPOCHS
    batch = 64
    val_split = 0.15
    test_split = 0.1
    clip_grad = 5.0
    seed = 3
}
"""


def spec(tmp_path: Path, opt="adamw(lr=1e-2)", sched="cosine(warmup=10)", epochs=4,
         name="net.nn", extra="") -> Path:
    text = MLP + SECTION.replace("OPT", opt).replace("SCHED", sched) \
        .replace("EPOCHS", str(epochs)).replace("}\n", extra + "}\n", 1) if extra else \
        MLP + SECTION.replace("OPT", opt).replace("SCHED", sched).replace("EPOCHS", str(epochs))
    p = tmp_path / name
    p.write_text(text)
    return p


def losses(history):
    return [(r["train_loss"], r["val_loss"], r["train_accuracy"], r["val_accuracy"])
            for r in history]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("digits")
    s = spec(tmp)
    return s, run_training(s, out=tmp / "run", quiet=True)


def test_digits_run_beats_chance_clearly(digits_run):
    _, r = digits_run
    assert r.best["val_accuracy"] > 0.85          # chance is 0.1
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    assert r.test["test_accuracy"] > 0.85
    assert len(r.history) == 4 and not r.interrupted


def test_run_folder_contents(digits_run):
    s, r = digits_run
    out = r.out
    for f in ["config.json", "metrics.jsonl", "summary.json", "checkpoints/last.safetensors",
              "checkpoints/last.state.safetensors", "checkpoints/last.state.json",
              "checkpoints/best.safetensors", "checkpoints/best.state.safetensors",
              "checkpoints/best.state.json", "plots/loss.png", "plots/accuracy.png",
              "plots/f1.png", "plots/lr.png"]:
        assert (out / f).is_file(), f
    assert (out / "plots/loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in records] == [1, 2, 3, 4]
    for rec in records:
        for k, v in rec.items():
            if k.endswith(("accuracy", "f1", "roc_auc")):
                assert k.startswith(("train_", "val_", "test_")) and 0 <= v <= 1, (k, v)
    assert "test_accuracy" in records[-1]
    conf = json.loads((out / "config.json").read_text())
    assert conf["optimizer"]["name"] == "adamw" and conf["schedule"]["warmup"] == 10
    assert conf["loss"] == "cross_entropy(logits, label, smoothing=0.05)"
    assert conf["samples"] == {"train": 1347, "val": 270, "test": 180}
    # weights in the spec's names
    c = nndsl.compile(s)
    names = {n.name for n in c.graph.params()}
    best = load_file(str(out / "checkpoints/best.safetensors"))
    assert set(best) == names
    # the three files of a checkpoint carry one token
    tokens = set()
    for f in ("last.safetensors", "last.state.safetensors"):
        with safe_open(str(out / "checkpoints" / f), framework="pt") as h:
            tokens.add(h.metadata()["nndsl.token"])
    tokens.add(json.loads((out / "checkpoints/last.state.json").read_text())["token"])
    assert len(tokens) == 1
    # no pickles anywhere
    for p in out.rglob("*"):
        if p.is_file():
            assert not p.read_bytes().startswith(b"\x80"), p


def test_best_checkpoint_exports_to_onnx(digits_run, tmp_path, capsys):
    s, r = digits_run
    onnx_path = tmp_path / "net.onnx"
    best = r.out / "checkpoints/best.safetensors"
    rc = main(["compile", str(s), "--to", "onnx", "--weights", str(best), "-o", str(onnx_path)])
    assert rc == 0, capsys.readouterr().err
    import onnxruntime as ort
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(np.float32)
    got = ort.InferenceSession(str(onnx_path)).run(None, {"image": x})[0]
    m = nndsl.compile(s).to_torch(weights=str(best)).eval()
    want = m(torch.from_numpy(x)).detach().numpy()
    assert np.allclose(got, want, atol=1e-5)


def _interrupt_at(epoch_, batch_):
    def hook(run, epoch, b):
        if (epoch, b) == (epoch_, batch_):
            os.kill(os.getpid(), signal.SIGINT)
    return hook


@pytest.mark.parametrize("opt", ["adamw(lr=3e-3)", "lookahead(adam(lr=3e-3), k=3)",
                                 "sam(sgd(lr=0.05, momentum=0.9), rho=0.05)"])
def test_ctrl_c_then_resume_equals_an_uninterrupted_run(tmp_path, opt):
    s = spec(tmp_path, opt=opt, epochs=3)
    a = run_training(s, out=tmp_path / "a", quiet=True)
    b = run_training(s, out=tmp_path / "b", quiet=True, hooks=[_interrupt_at(1, 7)])
    assert b.interrupted and len(b.history) == 1
    state = json.loads((tmp_path / "b/checkpoints/last.state.json").read_text())["state"]
    assert state["__dict__"]["epoch"] == 1 and state["__dict__"]["batch"] == 8
    b2 = run_training(s, resume=tmp_path / "b", quiet=True)
    assert losses(b2.history) == losses(a.history)          # bit for bit
    wa = load_file(str(tmp_path / "a/checkpoints/last.safetensors"))
    wb = load_file(str(tmp_path / "b/checkpoints/last.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "a/metrics.jsonl").read_text() .count("\n") == \
        (tmp_path / "b/metrics.jsonl").read_text().count("\n")


def test_resume_to_more_epochs_on_the_command_line(tmp_path, capsys):
    s = spec(tmp_path, sched="step(every=1, gamma=0.7)", epochs=4)
    assert main(["train", str(s), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert main(["train", str(s), "--out", str(tmp_path / "b"), "--epochs", "2", "--quiet"]) == 0
    assert main(["train", str(s), "--resume", str(tmp_path / "b"), "--epochs", "4",
                 "--quiet"]) == 0

    def recs(d):
        return [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
    ra, rb = recs("a"), recs("b")
    assert [r["epoch"] for r in rb] == [1, 2, 3, 4]
    for x, y in zip(ra, rb):
        for k in ("train_loss", "val_loss", "val_accuracy", "lr", "test_accuracy"):
            assert x.get(k) == y.get(k), k


def test_ctrl_c_on_the_command_line_saves_and_exits_130(tmp_path, capsys, monkeypatch):
    s = spec(tmp_path, epochs=2)
    import nndsl.train.loop as loop
    real = loop._Run.__init__

    def patched(self, *a, **k):
        real(self, *a, **k)
        self.hooks.append(_interrupt_at(0, 3))
    monkeypatch.setattr(loop._Run, "__init__", patched)
    rc = main(["train", str(s), "--out", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert rc == 130
    assert "continue with --resume" in out
    assert (tmp_path / "r/checkpoints/last.safetensors").exists()


def test_data_files(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 5)).astype(np.float32)
    w = rng.standard_normal((5, 1)).astype(np.float32)
    y = x @ w
    model = """
model reg() {
    input x: f32[N, 5]
    output pred = x |> linear(1) as head
}
"""
    np.savez(tmp_path / "d.npz", x=x, y=y[:, 0])
    (tmp_path / "r.nn").write_text(model + """
train reg {
    target y: f32[N, 1]
    data = "d.npz"
    loss = mse(pred, y)
    optimizer = sgd(lr=0.1, momentum=0.9, nesterov=true)
    metrics = [mse, r2]
    epochs = 20
    batch = 16
}
""")
    r = run_training(tmp_path / "r.nn", out=tmp_path / "o1", quiet=True)
    assert r.best["val_r2"] > 0.99
    # the same data as CSV, given on the command line
    lines = ["a,b,c,d,e,y"] + [",".join(f"{v:.6f}" for v in row) for row in np.c_[x, y]]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    r = run_training(tmp_path / "r.nn", out=tmp_path / "o2", quiet=True,
                     overrides={"data": str(tmp_path / "d.csv")})
    assert r.best["val_r2"] > 0.99
    # an autoencoder on an .npy file: no targets, the loss compares the output with the input
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "ae.nn").write_text("""
model ae() {
    input x: f32[N, 5]
    output recon = x |> linear(3) as enc |> linear(5) as dec
}
train ae {
    data = "x.npy"
    loss = mse(recon, x)
    optimizer = adam(lr=1e-2)
    epochs = 15
    batch = 20
}
""")
    r = run_training(tmp_path / "ae.nn", out=tmp_path / "o3", quiet=True)
    assert r.history[-1]["val_loss"] < 0.7 * r.history[0]["val_loss"]


def test_image_folder(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for k, cls in enumerate(["dark", "light"]):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(12):
            a = (rng.random((10, 12, 3)) * 100 + 150 * k).astype(np.uint8)
            Image.fromarray(a).save(tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "i.nn").write_text("""
model tiny() {
    input image: f32[N, 3, 8, 8]
    output logits = image |> global_avg_pool |> linear(2) as head
}
train tiny {
    target label: i64[N]
    data = "imgs"
    loss = cross_entropy(logits, label)
    optimizer = adam(lr=0.1)
    augment = [flip, crop(pad=1)]
    metrics = [accuracy]
    epochs = 15
    batch = 8
    val_split = 0.25
}
""")
    r = run_training(tmp_path / "i.nn", out=tmp_path / "o", quiet=True)
    assert any("24 images in 2 classes" in n for n in r.notes)
    assert r.best["val_accuracy"] == 1.0


def test_init_and_freeze(digits_run, tmp_path):
    _, first = digits_run
    best = first.out / "checkpoints/best.safetensors"
    s = spec(tmp_path, epochs=1, extra=f'    init = load("{best}", only=["fc1"])\n'
                                        '    freeze = ["fc1"]\n')
    r = run_training(s, out=tmp_path / "ft", quiet=True)
    before, after = load_file(str(best)), load_file(str(r.out / "checkpoints/last.safetensors"))
    assert torch.equal(before["fc1.weight"], after["fc1.weight"])        # loaded and frozen
    assert not torch.equal(before["fc2.weight"], after["fc2.weight"])
    assert r.best["val_accuracy"] > 0.7
    assert any("frozen" in n for n in r.notes)
    # strict init: every weight
    s2 = spec(tmp_path, epochs=1, name="strict.nn", extra=f'    init = "{best}"\n')
    r2 = run_training(s2, out=tmp_path / "strict", quiet=True)
    assert r2.history[0]["val_accuracy"] > 0.8
    # a checkpoint of another shape is refused, naming the tensors
    s3 = tmp_path / "other.nn"
    s3.write_text(s2.read_text().replace("linear(32)", "linear(16)"))
    with pytest.raises(TrainError, match="fc1.weight: expected"):
        run_training(s3, out=tmp_path / "other", quiet=True)


def test_early_stopping_and_l1(tmp_path):
    s = spec(tmp_path, opt="sgd(lr=1e-9)", sched="constant", epochs=10,
             extra="    early_stopping = 2\n    monitor = val_accuracy\n    l1 = 1e-4\n")
    r = run_training(s, out=tmp_path / "r", quiet=True)
    assert len(r.history) == 3 and "early stopping" in r.stopped


def test_amp_bf16_on_cpu(tmp_path):
    s = spec(tmp_path, epochs=2)
    r = run_training(s, out=tmp_path / "r", quiet=True, overrides={"amp": True})
    assert r.best["val_accuracy"] > 0.8
    assert json.loads((r.out / "config.json").read_text())["amp"] is True


def test_without_a_train_section_from_a_builtin_set(tmp_path):
    model = (ROOT / "specs/fundamentals/mlp.nn").read_text().split("\ntrain mlp")[0]
    (tmp_path / "mlp.nn").write_text(model)      # the model alone: no train section
    r = run_training(tmp_path / "mlp.nn", params={"inputs": 4, "classes": 3},
                     overrides={"data": "iris", "epochs": 30, "lr": 0.01},
                     out=tmp_path / "r", quiet=True)
    assert r.best["val_accuracy"] >= 0.8


def test_synthetic_sequences(tmp_path):
    # imports resolve inside the spec's folder tree: the zoo spec sits beside the train section
    shutil.copy(ROOT / "specs/sequence/lstm_sentiment.nn", tmp_path / "lstm_sentiment.nn")
    (tmp_path / "s.nn").write_text("""
import "lstm_sentiment.nn"
train lstm_sentiment {
    target label: f32[N, 1]
    data = sequences(n=600, length=12)
    loss = bce(logit, label)
    optimizer = adam(lr=1e-2)
    metrics = [accuracy, roc_auc]
    epochs = 4
    batch = 32
}
""")
    r = run_training(tmp_path / "s.nn", params={"vocab": 40, "embed": 16, "hidden": 16,
                                                 "p": 0.0}, out=tmp_path / "r", quiet=True)
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    assert r.best["val_roc_auc"] > 0.75


def test_run_errors(tmp_path, capsys):
    s = spec(tmp_path, epochs=1)
    assert main(["train", str(s), "--data", "digts"]) == 1
    err = capsys.readouterr().err
    assert "error[E1206]: unknown data set `digts`" in err and "did you mean `digits`" in err
    assert main(["train", str(s), "--resume", str(tmp_path)]) == 1
    assert "not a run folder" in capsys.readouterr().err
    (tmp_path / "busy" / "checkpoints").mkdir(parents=True)
    assert main(["train", str(s), "--out", str(tmp_path / "busy")]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", str(ROOT / "specs/vision/lenet5.nn")]) == 1
    assert "no train section" in capsys.readouterr().err
    assert main(["train", str(s), "--data", str(tmp_path / "nothing.npz")]) == 1
    assert "data not found" in capsys.readouterr().err


def test_a_half_written_checkpoint_is_detected(tmp_path):
    s = spec(tmp_path, epochs=1)
    run_training(s, out=tmp_path / "r", quiet=True)
    shutil.copy(tmp_path / "r/checkpoints/best.state.json", tmp_path / "r/checkpoints/x.json")
    meta = json.loads((tmp_path / "r/checkpoints/last.state.json").read_text())
    meta["token"] = "other"
    (tmp_path / "r/checkpoints/last.state.json").write_text(json.dumps(meta))
    with pytest.raises(TrainError, match="incomplete"):
        run_training(s, resume=tmp_path / "r", quiet=True)


def test_mnist_cnn_spec_trains(tmp_path):
    """The zoo's CNN with its own train section (two epochs here; the full run is measured by
    benchmarks/bench_train.py)."""
    r = run_training(ROOT / "specs/vision/mnist_cnn.nn", out=tmp_path / "r", quiet=True,
                     overrides={"epochs": 2})
    assert any("resized to 28x28" in n for n in r.notes)
    assert r.best["val_accuracy"] > 0.85


@pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(
    os.path.join(os.path.dirname(sys.executable), "torchrun")), reason="torchrun not found")
@pytest.mark.parametrize("mode", ["--ddp", "--fsdp"])
def test_two_processes_match_one_process_with_twice_the_batch(tmp_path, mode):
    """DDP, and FSDP (sharded parameters, gradients and optimizer state), on two CPU
    processes: the same losses as one process with twice the batch. FSDP is stopped after
    epoch 1 and resumed, which gathers and re-shards the momentum buffers through the
    checkpoint."""
    s = spec(tmp_path, opt="sgd(lr=0.05, momentum=0.9)", sched="constant", epochs=2)
    text = s.read_text().replace("    augment = [noise(0.05)]\n", "") \
        .replace("p: float = 0.1", "p: float = 0.0").replace("val_split = 0.15", "val_split = 0.2")
    s.write_text(text)     # 1258 training samples: two equal shards, no padding
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable),
                                                        "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / mode[2:]

    def launch(*extra):
        cmd = [torchrun, "--nproc_per_node", "2", "--master_port",
               str(29500 + (os.getpid() + len(extra)) % 1000), "-m", "nndsl", "train", str(s),
               mode, "--batch", "32", "--quiet", *extra]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env,
                           cwd=tmp_path)
        assert p.returncode == 0, p.stdout + p.stderr
    if mode == "--fsdp":
        launch("--out", str(out), "--epochs", "1")
        launch("--resume", str(out), "--epochs", "2")
    else:
        launch("--out", str(out))
    single = run_training(s, out=tmp_path / "one", quiet=True, overrides={"batch": 64})
    multi = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    assert len(multi) == len(single.history) == 2
    for a, b in zip(multi, single.history):
        assert a["step"] == b["step"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    # the checkpoint holds whole tensors in the spec's names, whichever way it was trained
    w_multi = load_file(str(out / "checkpoints/last.safetensors"))
    w_one = load_file(str(tmp_path / "one/checkpoints/last.safetensors"))
    assert sorted(w_multi) == sorted(w_one)
    for k in w_one:
        torch.testing.assert_close(w_multi[k], w_one[k], rtol=1e-4, atol=1e-5)


def test_torch_compile_trains_like_eager(tmp_path):
    s = spec(tmp_path, epochs=1)
    s.write_text(s.read_text().replace("p: float = 0.1", "p: float = 0.0")
                 .replace("    augment = [noise(0.05)]\n", ""))
    eager = run_training(s, out=tmp_path / "e", quiet=True)
    compiled = run_training(s, out=tmp_path / "c", quiet=True, overrides={"compile": True})
    assert compiled.history[0]["train_loss"] == pytest.approx(eager.history[0]["train_loss"],
                                                              rel=1e-3)
    assert json.loads((tmp_path / "c/config.json").read_text())["compile"] is True


def test_denoising_sparse_autoencoder_example(tmp_path):
    r = run_training(ROOT / "examples/autoencoder.nn", out=tmp_path / "r", quiet=True,
                     overrides={"epochs": 4})
    assert r.history[-1]["val_loss"] < 0.8 * r.history[0]["val_loss"]
    conf = json.loads((tmp_path / "r/config.json").read_text())
    assert [t["fn"] for t in conf["loss_terms"]] == ["mse", "mean_abs"]
