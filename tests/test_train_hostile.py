"""Hostile input to `nndsl train` gets a clear error and exit 1: paths a spec names resolve
against the spec's folder only and only regular files are read; data values are checked against
the targets' types and ranges; a loss that turns NaN stops the run with the last good
checkpoint kept; a tampered run folder is refused naming the file and the field; an unwritable
--out is named; generated data sets have ranges and a size limit."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from nndsl.cli import main

TAB = """
model tab(classes: int = 2) {
    input x: f32[N, 3]
    output logits = x |> linear(8) as fc1 |> relu |> linear(classes) as fc2
}
train tab {
    target label: i64[N]
    data = DATA
    loss = cross_entropy(logits, label)
    epochs = 1
    batch = 8
    EXTRA
}
"""

SEQ = """
model seq(vocab: int = 50) {
    input tokens: i64[N, T]
    output logits = tokens |> embedding(vocab, 4) |> mean(dim=1) |> linear(2)
}
train seq {
    target label: i64[N]
    data = DATA
    loss = cross_entropy(logits, label)
    epochs = 1
}
"""

REG = """
model reg() {
    input x: f32[N, 3]
    output y = x |> linear(1)
}
train reg {
    target t: f32[N, 1]
    data = "reg.csv"
    loss = mse(y, t)
    optimizer = sgd(lr=0.5)
    epochs = 3
    batch = 8
    val_split = 0
}
"""


def rows(n=24, label=lambda i: i % 2):
    return ["a,b,c,label"] + [f"{i % 7},{(i * 3) % 5},{i % 3},{label(i)}" for i in range(n)]


def write_csv(path: Path, lines) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def write_spec(folder: Path, data='"data.csv"', extra="", text=TAB, name="net.nn") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(text.replace("DATA", data).replace("EXTRA", extra))
    return p


def train(capsys, *args) -> tuple[int, str]:
    rc = main(["train", *map(str, args), "--quiet"])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return rc, err


def fails(capsys, code: str, *args) -> str:
    rc, err = train(capsys, *args)
    assert rc == 1, err
    assert err.startswith(f"error[{code}]"), err
    return err


# 1. paths resolve against the spec's folder only; only regular files ----------------------

def test_data_is_the_specs_not_the_working_folders(tmp_path, capsys, monkeypatch):
    spec = write_spec(tmp_path / "spec")
    write_csv(tmp_path / "spec" / "data.csv", rows())
    (tmp_path / "cwd").mkdir()
    write_csv(tmp_path / "cwd" / "data.csv", ["x,y", "1,2"])     # must not stand in
    monkeypatch.chdir(tmp_path / "cwd")
    rc, err = train(capsys, spec, "--out", tmp_path / "run")
    assert rc == 0, err
    conf = json.loads((tmp_path / "run" / "config.json").read_text())
    assert conf["samples"]["train"] + conf["samples"]["val"] == 24


def test_data_typed_on_the_command_line_is_the_working_folders(tmp_path, capsys, monkeypatch):
    spec = write_spec(tmp_path / "spec")
    write_csv(tmp_path / "spec" / "mine.csv", ["a,b,c,label", "1,2,3,0"])   # must not stand in
    (tmp_path / "cwd").mkdir()
    write_csv(tmp_path / "cwd" / "mine.csv", rows())
    monkeypatch.chdir(tmp_path / "cwd")
    rc, err = train(capsys, spec, "--data", "mine.csv", "--out", tmp_path / "run")
    assert rc == 0, err
    conf = json.loads((tmp_path / "run" / "config.json").read_text())
    assert conf["samples"]["train"] + conf["samples"]["val"] == 24


def test_train_reads_imports_from_lib_folders(tmp_path, capsys):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "tabnet.nn").write_text(TAB.split("train tab")[0])
    (tmp_path / "spec").mkdir()
    spec = tmp_path / "spec" / "run.nn"
    write_csv(tmp_path / "spec" / "data.csv", rows())
    spec.write_text('import "tabnet.nn"\ntrain tab' + TAB.split("train tab")[1]
                    .replace("DATA", '"data.csv"').replace("EXTRA", ""))
    err = fails(capsys, "E0504", spec, "--out", tmp_path / "r0")
    assert "--lib" in err
    rc, err = train(capsys, spec, "--lib", lib, "--out", tmp_path / "r1")
    assert rc == 0, err


def test_data_only_in_the_working_folder_is_not_found(tmp_path, capsys, monkeypatch):
    spec = write_spec(tmp_path / "spec")
    (tmp_path / "cwd").mkdir()
    write_csv(tmp_path / "cwd" / "data.csv", rows())
    monkeypatch.chdir(tmp_path / "cwd")
    err = fails(capsys, "E1215", spec, "--out", tmp_path / "run")
    assert f"data not found: {tmp_path / 'spec' / 'data.csv'}" in err
    assert "net.nn:8:12" in err and "spec's folder" in err
    assert not (tmp_path / "run").exists()          # a refused run leaves no folder


def test_init_only_in_the_working_folder_is_not_found(tmp_path, capsys, monkeypatch):
    spec = write_spec(tmp_path / "spec", extra='init = "w.safetensors"')
    write_csv(tmp_path / "spec" / "data.csv", rows())
    (tmp_path / "cwd").mkdir()
    save_file({"fc1.weight": torch.zeros(8, 3)}, str(tmp_path / "cwd" / "w.safetensors"))
    monkeypatch.chdir(tmp_path / "cwd")
    err = fails(capsys, "E1217", spec, "--out", tmp_path / "run")
    assert f"init weights not found: {tmp_path / 'spec' / 'w.safetensors'}" in err


@pytest.mark.parametrize("target", ["/dev/zero", "fifo"])
def test_devices_and_fifos_are_refused_unread(tmp_path, capsys, target):
    spec = write_spec(tmp_path)
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo.csv")     # opening it would block forever
        target = str(tmp_path / "fifo.csv")
    os.symlink(target, tmp_path / "data.csv")
    err = fails(capsys, "E1215", spec, "--out", tmp_path / "run")
    assert "not a regular file" in err and ("a device" in err or "a FIFO" in err)


def test_a_linked_foreign_file_is_not_echoed(tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cretuser:x:0:0:TOPSECRET:/home:/bin/bash\nsecond line\n")
    os.symlink(secret, tmp_path / "data.csv")
    err = fails(capsys, "E1215", write_spec(tmp_path), "--out", tmp_path / "run")
    assert "s3cret" not in err and "TOPSECRET" not in err and "second" not in err
    assert "has no column `label`" in err and "does not read like a header" in err


TEACHER = """
model teacher() {
    input x: f32[N, 3]
    output logits = x |> linear(2)
}
"""


@pytest.mark.parametrize("where, message", [
    ("cwd", "teacher spec not found"),
    ("outside", "is outside the spec's folder"),
    ("fifo", "a FIFO, not a regular file"),
    ("suffix", "is not a .nn file"),
])
def test_distill_teacher_follows_the_import_rule(tmp_path, capsys, monkeypatch, where, message):
    spec_dir = tmp_path / "a" / "spec"
    name = {"cwd": "t.nn", "outside": "../t.nn", "fifo": "t.nn", "suffix": "t.txt"}[where]
    spec = write_spec(spec_dir, extra=f'recipe = distill(teacher="{name}")')
    write_csv(spec_dir / "data.csv", rows())
    (tmp_path / "a" / "t.nn").write_text(TEACHER)
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "t.nn").write_text(TEACHER)
    if where == "fifo":
        os.mkfifo(spec_dir / "t.nn")
    if where == "suffix":
        (spec_dir / "t.txt").write_text(TEACHER)
    monkeypatch.chdir(tmp_path / "cwd")
    err = fails(capsys, "E1225", spec, "--out", tmp_path / "run")
    assert message in err and "net.nn:" in err


def test_distill_weights_resolve_against_the_spec(tmp_path, capsys, monkeypatch):
    spec = write_spec(tmp_path / "spec",
                      extra='recipe = distill(teacher="t.nn", weights="tw.safetensors")')
    write_csv(tmp_path / "spec" / "data.csv", rows())
    (tmp_path / "spec" / "t.nn").write_text(TEACHER)
    (tmp_path / "cwd").mkdir()
    save_file({"linear_0.weight": torch.zeros(2, 3), "linear_0.bias": torch.zeros(2)},
              str(tmp_path / "cwd" / "tw.safetensors"))
    monkeypatch.chdir(tmp_path / "cwd")
    err = fails(capsys, "E1225", spec, "--out", tmp_path / "run")
    assert f"the teacher's weights not found: {tmp_path / 'spec' / 'tw.safetensors'}" in err


# 2. data values against the targets' types and ranges -------------------------------------

@pytest.mark.parametrize("row, message", [
    ("1,nan,2,0", "line 7, column 2 (`b`): the value is NaN"),
    ("1,inf,2,0", "line 7, column 2 (`b`): the value is infinite"),
    ("1,1e400,2,0", "line 7, column 2 (`b`): the value is infinite"),
    ("1,2,2,0.5", "line 7, column 4 (`label`): 0.5 is not a whole number"),
    ("1,2,2,7", "line 7, column 4 (`label`): 7 is out of range for `label`: `logits` "
                "scores 2 classes, so its values are from 0 to 1"),
    ("1,2,2,-1", "line 7, column 4 (`label`): -1 is out of range"),
    ("1,2,2,1e30", "line 7, column 4 (`label`): the value 1e+30 does not fit `label`: i64[N]"),
])
def test_bad_values_in_a_csv_are_located(tmp_path, capsys, row, message):
    lines = rows()
    lines.insert(6, row)
    write_csv(tmp_path / "data.csv", lines)
    err = fails(capsys, "E1226", write_spec(tmp_path), "--out", tmp_path / "run")
    assert f"{tmp_path / 'data.csv'}, {message}" in err, err
    assert "net.nn:8:12" in err


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.array([[1.0, 2, 3]] * 9 + [[1, 1e300, 3]])},
     "array `x`, sample 9, position [1]: the value 1e+300 is out of range for f32"),
    ({"label": np.arange(10) % 2 + 1}, "array `label`, sample 1: 2 is out of range"),
    ({"label": np.full(10, 2**40)}, "sample 0: 1099511627776 is out of range for `label`"),
])
def test_bad_values_in_an_npz_are_located(tmp_path, capsys, arrays, message):
    full = {"x": np.ones((10, 3), np.float32), "label": np.arange(10) % 2, **arrays}
    np.savez(tmp_path / "d.npz", **full)
    err = fails(capsys, "E1226", write_spec(tmp_path, data='"d.npz"'), "--out", tmp_path / "r")
    assert message in err, err


def test_token_ids_past_the_vocabulary_are_refused(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", tokens=np.full((10, 4), 3), label=np.arange(10) % 2)
    np.savez(tmp_path / "e.npz", tokens=np.full((10, 4), 50), label=np.arange(10) % 2)
    spec = write_spec(tmp_path, data='"e.npz"', text=SEQ)
    err = fails(capsys, "E1226", spec, "--out", tmp_path / "r")
    assert "50 is out of range for `tokens`" in err and "from 0 to 49" in err


@pytest.mark.parametrize("lr", ["inf", "nan", "-1", "0"])
def test_lr_must_be_positive_and_finite(tmp_path, capsys, lr):
    write_csv(tmp_path / "data.csv", rows())
    err = fails(capsys, "E1210", write_spec(tmp_path), "--out", tmp_path / "r", "--lr", lr)
    assert "--lr must be a positive finite number" in err


def test_infinite_optimizer_arguments_are_located(tmp_path, capsys):
    spec = write_spec(tmp_path, extra="optimizer = adam(lr=1e308 * 10)")
    rc = main(["check", str(spec)])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error[E1211]") and "a finite number" in err, err


# 3. a non-finite loss stops the run, keeping the last good checkpoint ---------------------

def test_diverging_loss_stops_with_the_checkpoint_kept(tmp_path, capsys):
    spec = write_spec(tmp_path, text=REG)
    write_csv(tmp_path / "reg.csv", ["a,b,c,t"] + [f"{i},{i * 3},{i % 5},{i * 2}"
                                                   for i in range(40)])
    err = fails(capsys, "E1227", spec, "--out", tmp_path / "run")
    assert "the loss became inf at step 6 (epoch 2, batch 1)" in err, err
    assert "the last finite loss was" in err and "at step 5 (epoch 1, batch 5)" in err
    assert "lower the learning rate" in err and "clip_grad" in err
    last = load_file(str(tmp_path / "run" / "checkpoints" / "last.safetensors"))
    assert all(torch.isfinite(v).all() for v in last.values())
    state = json.loads((tmp_path / "run" / "checkpoints" / "last.state.json").read_text())
    assert state["state"]["__dict__"]["epoch"] == 1


# 4. tampered --resume folders --------------------------------------------------------------

@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("base")
    write_csv(tmp / "data.csv", rows())
    spec = write_spec(tmp)
    assert main(["train", str(spec), "--out", str(tmp / "run"), "--quiet"]) == 0
    return spec, tmp / "run"


def _state(fn):
    def edit(run: Path):
        p = run / "checkpoints" / "last.state.json"
        j = json.loads(p.read_text())
        j = fn(j)
        p.write_text(json.dumps(j))
    return edit


def _field(key, value):
    def fn(j):
        if value is _DROP:
            del j["state"]["__dict__"][key]
        else:
            j["state"]["__dict__"][key] = value
        return j
    return _state(fn)


def _config(fn):
    def edit(run: Path):
        p = run / "config.json"
        p.write_text(json.dumps(fn(json.loads(p.read_text()))))
    return edit


def _rename(file, new="zz"):
    def edit(run: Path):
        from safetensors import safe_open
        p = run / "checkpoints" / file
        with safe_open(str(p), "pt") as f:
            meta = f.metadata()
        t = load_file(str(p))
        t[new] = t.pop(sorted(t)[0])
        save_file(t, str(p), metadata=meta)
    return edit


def _reshape_moment(run: Path):
    from safetensors import safe_open
    p = run / "checkpoints" / "last.state.safetensors"
    with safe_open(str(p), "pt") as f:
        meta = f.metadata()
    j = json.loads((run / "checkpoints" / "last.state.json").read_text())
    key = j["state"]["__dict__"]["optimizer"]["__dict__"]["state"]["__pairs__"][0][1][
        "__dict__"]["exp_avg"]["__tensor__"]
    t = load_file(str(p))
    t[key] = torch.zeros(5, 5)
    save_file(t, str(p), metadata=meta)


_DROP = object()


@pytest.mark.parametrize("edit, file, message", [
    (_state(lambda j: []), "last.state.json", "is not a checkpoint's state"),
    (_state(lambda j: {"token": j["token"]}), "last.state.json", "is not a checkpoint's state"),
    (_field("optimizer", _DROP), "last.state.json", "`state.optimizer` is missing"),
    (_field("rng", _DROP), "last.state.json", "`state.rng` is missing"),
    (_field("step", "abc"), "last.state.json",
     "`state.step` must be an integer, got the string 'abc'"),
    (_field("history", 3), "last.state.json", "`state.history` must be a list"),
    (_field("epoch", -5), "last.state.json", "`state.epoch` must be an integer from 0"),
    (_field("epoch", 3), "last.state.json", "`state.history` has 1 epochs"),
    (_field("batch", 10**6), "last.state.json", "`state.batch` must be an integer from 0"),
    (_field("lrs", [float("nan")]), "last.state.json", "`state.lrs[0]` must be a finite"),
    (_rename("last.state.safetensors"), "last.state.json", "which the state tensors file "
                                                          "does not hold"),
    (_reshape_moment, "last.state.json", "exp_avg` has shape [5, 5], but this run needs"),
    (_rename("last.safetensors"), "checkpoints", "unexpected: zz"),
    (_config(lambda j: []), "config.json", "must hold an object"),
    (_config(lambda j: {**j, "cli": "x"}), "config.json", "`cli` must be an object"),
    (_config(lambda j: {**j, "cli": {"epochs": "many"}}), "config.json", "`cli.epochs`"),
])
def test_tampered_resume_folders_are_refused(base_run, tmp_path, capsys, edit, file, message):
    spec, run = base_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    edit(copy)
    before = {p.name: p.read_bytes() for p in (copy / "checkpoints").iterdir()}
    err = fails(capsys, "E1218", spec, "--resume", copy, "--epochs", "2")
    assert file in err and message in err, err
    after = {p.name: p.read_bytes() for p in (copy / "checkpoints").iterdir()}
    assert before == after                    # nothing was overwritten


# 5. an unwritable --out ---------------------------------------------------------------------

@pytest.mark.parametrize("out, message", [
    ("file/run", "a part of the path is a file"),
    ("file", "it is a file"),
    ("/proc/nndsl-run", "cannot make the run folder /proc/nndsl-run"),
])
def test_unwritable_out_is_named(tmp_path, capsys, out, message):
    write_csv(tmp_path / "data.csv", rows())
    (tmp_path / "file").write_text("")
    out = out if out.startswith("/") else tmp_path / out
    err = fails(capsys, "E1228", write_spec(tmp_path), "--out", out)
    assert message in err and str(out) in err and "--out" in err


# 6. generated data sets: ranges and a size limit --------------------------------------------

@pytest.mark.parametrize("data, col, message", [
    ("blobs(n=0)", 18, "`n` of blobs must be an integer from 1 to 2,147,483,647, got 0"),
    ("blobs(n=-5)", 18, "got -5"),
    ("blobs(classes=0)", 18, "`classes` of blobs must be an integer from 1"),
    ("blobs(spread=-1)", 18, "`spread` of blobs must be a number > 0"),
    ("blobs(n=10**12)", 18, "got 1000000000000"),
])
def test_generator_arguments_have_ranges(tmp_path, capsys, data, col, message):
    spec = write_spec(tmp_path, data=data)
    rc = main(["check", str(spec)])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error[E1211]") and message in err, err
    assert f"net.nn:8:{col}" in err


def test_sequences_length_zero_is_located(tmp_path, capsys):
    spec = write_spec(tmp_path, data="sequences(length=0)", text=SEQ)
    err = fails(capsys, "E1211", spec, "--out", tmp_path / "r")
    assert "`length` of sequences must be an integer from 1" in err and "net.nn:8:22" in err


@pytest.mark.parametrize("data, text", [
    ("sequences(n=10**9, length=10**6)", SEQ),
    ("blobs(n=2**31 - 1)", TAB),
])
def test_generated_data_has_a_size_limit(tmp_path, capsys, data, text):
    err = fails(capsys, "E1229", write_spec(tmp_path, data=data, text=text), "--out",
                tmp_path / "r")
    assert "of memory, more than the limit of 4.0 GiB" in err
    assert "NNDSL_MAX_DATA_BYTES" in err and "net.nn:8:12" in err


def test_the_size_limit_applies_to_files(tmp_path, capsys, monkeypatch):
    write_csv(tmp_path / "data.csv", rows(200))
    monkeypatch.setenv("NNDSL_MAX_DATA_BYTES", "1000")
    err = fails(capsys, "E1229", write_spec(tmp_path), "--out", tmp_path / "r")
    assert "data.csv would take" in err and "NNDSL_MAX_DATA_BYTES" in err
    monkeypatch.setenv("NNDSL_MAX_DATA_BYTES", "lots")
    err = fails(capsys, "E1229", write_spec(tmp_path), "--out", tmp_path / "r")
    assert "is not a positive number of bytes" in err


def test_huge_train_section_numbers_are_refused_quickly(tmp_path, capsys):
    spec = write_spec(tmp_path, data="blobs(n=10**10**8)")
    rc = main(["check", str(spec)])
    err = capsys.readouterr().err
    assert rc == 1 and "too large" in err, err


def test_sequences_length_must_fit_a_fixed_input(tmp_path, capsys):
    text = SEQ.replace("i64[N, T]", "i64[N, 8]")
    err = fails(capsys, "E1214", write_spec(tmp_path, data="sequences(length=5)", text=text),
                "--out", tmp_path / "r")
    assert "does not fit the model's input `tokens`: i64[N, 8], 8 tokens per sequence" in err


def test_sampling_a_tampered_run_folder_is_refused(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("[]")
    rc = main(["sample", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error[E1218]") and "Traceback" not in err, err
    assert "config.json is not a run's configuration" in err


def test_train_takes_the_compile_limits(tmp_path, capsys):
    spec = write_spec(tmp_path / "spec")
    write_csv(tmp_path / "spec" / "data.csv", rows())
    err = fails(capsys, "E0607", spec, "--max-nodes", "3", "--out", tmp_path / "r0")
    assert "`--max-nodes 6`" in err and not (tmp_path / "r0").exists()
    rc, err = train(capsys, spec, "--max-nodes", "1000", "--out", tmp_path / "r1")
    assert rc == 0, err
