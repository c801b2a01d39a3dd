"""Hostile inputs to export: checkpoints of the wrong dtype, crashes while writing an ONNX pair,
leftovers of killed exports, file modes, bad symbolic dims for FLOPs."""

from __future__ import annotations

import os
import re
import stat

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import save_file

import nndsl
from nndsl.backends.onnx import save
from nndsl.cli import main
from nndsl.fsutil import atomic_write_bytes

NET = """
model net() {
    input x: f32[N, 64]
    output y = x |> linear(32) |> relu |> linear(3)
}
"""

DATA = re.compile(r"net\.onnx\.[0-9a-f]{16}\.data")


@pytest.fixture(scope="module")
def compiled():
    return nndsl.compile(NET)


def _state(c, seed=0):
    return {k: v.clone() for k, v in c.spec_state(seed=seed).items()}


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


# ---- weights of the wrong dtype ----

@pytest.mark.parametrize("dtype", [torch.float64, torch.int64, torch.bool, torch.int32])
def test_weights_of_a_wrong_dtype_are_refused_with_the_parameter_and_the_fix(
        tmp_path, capsys, dtype):
    c = nndsl.compile(NET)
    sd = {k: v.to(dtype) for k, v in _state(c).items()}
    w = tmp_path / "w.safetensors"
    save_file(sd, str(w))
    spec = tmp_path / "net.nn"
    spec.write_text(NET)
    out = tmp_path / "net.onnx"
    assert main(["compile", str(spec), "--to", "onnx", "-o", str(out), "--weights", str(w)]) == 1
    err = capsys.readouterr().err
    found = {torch.float64: "f64", torch.int64: "i64", torch.bool: "bool",
             torch.int32: "i32"}[dtype]
    assert "error[E1001]" in err and "wrong dtype" in err
    assert "0.weight" in err and f"expected f32, got {found}" in err
    assert "tensor.float()" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_weights_widen_exactly_to_f32(tmp_path, dtype):
    c = nndsl.compile(NET)
    half = {k: v.to(dtype) for k, v in _state(c).items()}
    w = tmp_path / "w.safetensors"
    save_file(half, str(w))
    path = tmp_path / "net.onnx"
    save(c.to_onnx(weights=str(w)), path)
    x = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
    want = c.to_torch(weights={k: v.float() for k, v in half.items()})(torch.from_numpy(x))
    np.testing.assert_allclose(_run(path, x), want.detach().numpy(), rtol=1e-5, atol=1e-6)
    state = c.spec_state(weights=str(w))
    assert all(v.dtype == torch.float32 for v in state.values())
    assert all(torch.equal(state[k], half[k].float()) for k in half)


def test_narrowing_and_wrong_shape_are_listed_together(compiled):
    sd = _state(compiled)
    sd["linear_0.weight"] = sd["linear_0.weight"].double()
    sd["linear_1.bias"] = torch.zeros(4)
    with pytest.raises(nndsl.WeightsError) as e:
        compiled.to_onnx(weights=sd)
    msg = str(e.value)
    assert "0.weight" in msg and "expected f32, got f64" in msg
    assert "1.bias: expected [3], got [4]" in msg


@pytest.mark.parametrize("dtype, name", [(torch.int64, "i64"), (torch.bool, "bool"),
                                         (torch.float64, "f64")])
def test_to_torch_checks_weight_dtypes_too(compiled, dtype, name):
    sd = {k: v.to(dtype) for k, v in _state(compiled).items()}
    with pytest.raises(nndsl.WeightsError) as e:
        compiled.to_torch(weights=sd)
    assert "wrong dtype" in str(e.value) and "linear_0.weight" in str(e.value)
    assert f"expected f32, got {name}" in str(e.value)


def test_to_torch_widens_half_weights_exactly(compiled):
    sd = {k: v.half() for k, v in _state(compiled).items()}
    m = compiled.to_torch(weights=sd)
    for k, v in m.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, sd[k].float()), k


def test_export_refuses_arrays_of_another_dtype_than_the_graph(compiled):
    from nndsl.backends.onnx import to_onnx
    arrays = {k: v.numpy().astype(np.float64) for k, v in _state(compiled).items()}
    with pytest.raises(nndsl.NndslError, match=r"`linear_0.weight` holds float64 values"):
        to_onnx(compiled.graph, arrays)


# ---- the .onnx / .data pair ----

def _export(c, path, seed, threshold=0):
    return save(c.to_onnx(weights=_state(c, seed)), path, external_threshold=threshold)


def test_external_data_is_named_by_its_contents_and_old_data_is_removed(tmp_path, compiled):
    x = np.ones((1, 64), np.float32)
    path = tmp_path / "net.onnx"
    first = _export(compiled, path, seed=1)
    assert first[0] == path and DATA.fullmatch(first[1].name)
    out1 = _run(path, x)
    second = _export(compiled, path, seed=2)
    assert second[1] != first[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["net.onnx", second[1].name])
    assert not np.allclose(_run(path, x), out1)
    # the same weights again: the same name, and nothing else left
    assert _export(compiled, path, seed=2) == second
    _export(compiled, tmp_path / "other.onnx", seed=3)     # another model in the same folder
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 4 and "net.onnx" in names and second[1].name in names
    # back to one file: the old data goes
    assert _export(compiled, path, seed=2, threshold=1 << 30) == [path]
    assert not second[1].exists()


def test_a_crash_between_the_renames_leaves_the_old_pair_working(tmp_path, compiled, monkeypatch):
    x = np.full((1, 64), 0.5, np.float32)
    path = tmp_path / "net.onnx"
    old = _export(compiled, path, seed=1)
    before = _run(path, x)
    real = os.replace
    calls = []

    def crash_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_second)
    with pytest.raises(OSError):
        _export(compiled, path, seed=2)
    monkeypatch.setattr(os, "replace", real)
    assert len(calls) == 2 and calls[1] == path
    np.testing.assert_array_equal(_run(path, x), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in old)


def test_a_failed_export_leaves_nothing(tmp_path, compiled, monkeypatch, capsys):
    import nndsl.backends.onnx.export as export
    path = tmp_path / "net.onnx"

    real = export.write_fd

    def interrupted(fd, chunks):         # Ctrl-C once part of the data is on disk
        real(fd, [next(iter(chunks))])
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "write_fd", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _export(compiled, path, seed=1)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    spec = tmp_path / "net.nn"                # and an export onto a folder: a clear error
    spec.write_text(NET)
    (tmp_path / "out.onnx").mkdir()
    assert main(["compile", str(spec), "--to", "onnx", "-o", str(tmp_path / "out.onnx")]) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and "folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.nn", "out.onnx"]
    assert list((tmp_path / "out.onnx").iterdir()) == []


def test_files_get_the_mode_a_plain_open_gives(tmp_path, compiled):
    old = os.umask(0o027)
    try:
        files = _export(compiled, tmp_path / "net.onnx", seed=1)
        atomic_write_bytes(tmp_path / "plain.bin", b"x")
    finally:
        os.umask(old)
    for p in files + [tmp_path / "plain.bin"]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o640, p


def test_leftovers_of_killed_exports_are_removed_by_the_next_one(tmp_path, compiled):
    from nndsl.fsutil import create_temp
    path = tmp_path / "net.onnx"
    dead = _dead_pid()
    leftovers = [tmp_path / f".net.onnx.{dead}.0123abcd.data.tmp",
                 tmp_path / f".net.onnx.{dead}.89abcdef.tmp"]
    for p in leftovers:
        p.write_bytes(b"\0" * 1000)
    legacy = tmp_path / ".net.onnx.k2x_9abc"            # what earlier versions' mkdtemp left
    legacy.mkdir()
    (legacy / "net.onnx.data").write_bytes(b"\0" * 1000)
    (legacy / "net.onnx").write_bytes(b"\0")
    fd, live = create_temp(path)                          # a write in progress: kept
    os.close(fd)
    mine = tmp_path / "notes.txt"
    mine.write_text("keep me")
    _export(compiled, path, seed=1)
    assert not any(p.exists() for p in leftovers) and not legacy.exists()
    assert live.exists() and mine.read_text() == "keep me"


def _dead_pid() -> int:
    pid = 999_999
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


# ---- symbolic dims for FLOPs ----

@pytest.mark.parametrize("dims", [{"T": -3}, {"T": 0}])
def test_non_positive_dims_are_refused_for_flops(dims):
    c = nndsl.compile("specs/transformers/gpt_mini.nn", params={"layers": 1})
    with pytest.raises(nndsl.NndslError, match=r"`T` must be a positive size"):
        c.summary(**dims)


def test_a_negative_batch_is_refused_for_flops(compiled):
    with pytest.raises(nndsl.NndslError, match=r"batch must be a positive"):
        compiled.summary(batch=-1)
    with pytest.raises(nndsl.NndslError, match=r"batch must be a positive"):
        compiled.layers(0)


def test_cli_dim_below_one_is_an_error(capsys):
    assert main(["inspect", "specs/transformers/gpt_mini.nn", "--dim", "T=-3"]) == 1
    err = capsys.readouterr().err
    assert "`T` must be a positive size" in err and "-3" in err
