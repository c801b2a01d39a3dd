"""Hostile inputs to `nndsl run`: ids out of range, sizes the spec's asserts forbid, empty
inputs, damaged or pickled input files, outputs that cannot be written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nndsl
from nndsl.cli import main
from nndsl.runner import load_inputs, save_outputs

ROOT = Path(__file__).resolve().parents[1]
GPT = "specs/transformers/gpt_mini.nn"
SMALL = ["--param", "layers=1", "--param", "width=32", "--param", "heads=2",
         "--param", "vocab=50", "--param", "ctx=8"]

PAIR = """
model pair() {
    input a: f32[N, D]
    input b: f32[N, D]
    output y = a + b
}
"""


@pytest.fixture(autouse=True)
def _root(root, monkeypatch):
    monkeypatch.chdir(root)


@pytest.fixture(scope="module")
def gpt_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "gpt.onnx"
    assert main(["compile", str(ROOT / GPT), "--to", "onnx", "-o", str(path)] + SMALL) == 0
    return path


def _tokens(tmp_path, arr, name="t.npy"):
    p = tmp_path / name
    np.save(p, np.asarray(arr, dtype=np.int64))
    return p


def _run(capsys, target, *args, extra=()):
    rc = main(["run", str(target), *args] + (SMALL if str(target).endswith(".nn") else [])
              + list(extra))
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "internal error" not in out.err
    return rc, out.err


@pytest.fixture(params=["spec", "onnx"])
def target(request, gpt_onnx):
    return GPT if request.param == "spec" else gpt_onnx


@pytest.mark.parametrize("bad", [50, 7000, -1])
def test_ids_outside_the_vocabulary_name_the_value_its_position_and_the_range(
        tmp_path, capsys, target, bad):
    ids = np.zeros((2, 5), np.int64)
    ids[1, 3] = bad
    rc, err = _run(capsys, target, "--input", f"tokens={_tokens(tmp_path, ids)}")
    assert rc == 1 and "error[E1111]" in err
    assert f"holds {bad} at position [1, 3]" in err and "[0, 50)" in err
    assert "from 0 to 49" in err


def test_every_bad_id_is_counted(tmp_path, capsys):
    ids = np.full((1, 6), 99, np.int64)
    rc, err = _run(capsys, GPT, "--input", f"tokens={_tokens(tmp_path, ids)}")
    assert rc == 1 and "position [0, 0]" in err and "6 values are outside it" in err


def test_a_sequence_longer_than_the_context_breaks_the_spec_assert(tmp_path, capsys, target):
    rc, err = _run(capsys, target, "--input",
                   f"tokens={_tokens(tmp_path, np.zeros((1, 9)))}")
    assert rc == 1 and "error[E1110]" in err
    assert "T <= 8" in err and "the sequence is longer than the context" in err
    assert "`T` = 9 (dim 1 of `tokens`)" in err
    ids = np.arange(16).reshape(2, 8) % 50            # the longest allowed runs
    rc, err = _run(capsys, target, "--input", f"tokens={_tokens(tmp_path, ids)}")
    assert rc == 0, err


def test_the_spec_assert_is_quoted_from_the_spec(tmp_path, capsys):
    rc, err = _run(capsys, GPT, "--input", f"tokens={_tokens(tmp_path, np.zeros((1, 9)))}")
    assert "gpt_mini.nn:9" in err and "assert T <= ctx" in err


def test_empty_inputs_are_refused(tmp_path, capsys, target):
    rc, err = _run(capsys, target, "--input", f"tokens={_tokens(tmp_path, np.zeros((1, 0)))}")
    assert rc == 1 and "`tokens` is empty: dim 1 (`T`) is 0" in err


def test_inputs_that_disagree_on_a_dim_are_refused_before_running(tmp_path):
    c = nndsl.compile(PAIR)
    from nndsl.runner import run_spec
    with pytest.raises(nndsl.NndslError, match=r"dim `D` is 3 in `a` \(dim 1\) and 4 in `b`"):
        run_spec(c, {"a": np.zeros((2, 3), np.float32), "b": np.zeros((2, 4), np.float32)}, 2)


def test_inputs_too_small_for_the_model_are_refused(tmp_path, capsys):
    spec = tmp_path / "small.nn"
    spec.write_text("model small() {\n    input x: f32[N, 3, S, S]\n"
                    "    output y = x |> conv2d(4, 5) |> conv2d(4, 5)\n}\n")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3, 6, 6), np.float32))
    rc = main(["run", str(spec), "--input", f"x={x}"])
    err = capsys.readouterr().err
    assert rc == 1 and "S - 8 = -2" in err and "Traceback" not in err


# ---- input files ----

def test_object_arrays_are_never_unpickled(tmp_path, capsys):
    np.savez(tmp_path / "obj.npz", tokens=np.array([1, "a", None], dtype=object))
    np.save(tmp_path / "obj.npy", np.array([1, None], dtype=object))
    for arg in (str(tmp_path / "obj.npz"), f"tokens={tmp_path / 'obj.npy'}"):
        rc, err = _run(capsys, GPT, "--input", arg)
        assert rc == 1 and "error[E1106]" in err and "Python objects" in err


def test_a_file_numpy_would_unpickle_is_refused(tmp_path):
    import pickle
    p = tmp_path / "evil.npy"
    p.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(nndsl.NndslError, match="neither an .npy nor an .npz"):
        load_inputs([f"tokens={p}"])


def _damaged_npz(tmp_path, how):
    p = tmp_path / f"{how}.npz"
    if how == "compressed":
        np.savez_compressed(p, tokens=np.arange(5000).reshape(1, 5000) % 50)
    else:
        np.savez(p, tokens=np.zeros((1, 64), np.int64))
    data = bytearray(p.read_bytes())
    start = data.find(b"\x93NUMPY")
    if how == "crc":
        data[start + 200] ^= 0xFF
    elif how == "truncated":
        data = data[:len(data) // 2]
    else:
        mid = len(data) // 2                                  # inside the deflate stream
        data[mid:mid + 30] = b"\0" * 30
    p.write_bytes(bytes(data))
    return p


def test_damaged_archives_are_clear_errors(tmp_path, capsys):
    for how in ("crc", "compressed", "truncated"):
        rc, err = _run(capsys, GPT, "--input", str(_damaged_npz(tmp_path, how)))
        assert rc == 1 and "error[E1106]" in err and "damaged" in err, (how, err)


def test_an_input_given_twice_is_an_error(tmp_path):
    a = _tokens(tmp_path, np.zeros((1, 4)))
    np.savez(tmp_path / "b.npz", tokens=np.ones((1, 4), np.int64))
    with pytest.raises(nndsl.NndslError, match=r"`tokens` is given twice"):
        load_inputs([f"tokens={a}", str(tmp_path / "b.npz")])


def test_big_endian_arrays_are_read_as_their_values(tmp_path):
    p = tmp_path / "be.npy"
    np.save(p, np.arange(6, dtype=">i8").reshape(2, 3))
    arr = load_inputs([f"tokens={p}"])["tokens"]
    assert arr.dtype == np.int64 and arr.dtype.isnative
    np.testing.assert_array_equal(arr, np.arange(6).reshape(2, 3))


# ---- outputs ----

def test_outputs_are_saved_under_any_name_and_only_where_they_can_be(tmp_path):
    out = {"file": np.ones(3, np.float32), "allow_pickle": np.zeros((2, 2), np.int64)}
    save_outputs(out, tmp_path / "o.npz")
    with np.load(tmp_path / "o.npz") as d:
        assert d.files == ["file", "allow_pickle"]
        np.testing.assert_array_equal(d["allow_pickle"], out["allow_pickle"])
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(nndsl.NndslError, match=r"cannot write .*dir.npz"):
        save_outputs({"y": np.ones(2)}, tmp_path / "dir.npz")
    (tmp_path / "file").write_text("x")
    with pytest.raises(nndsl.NndslError, match=r"cannot write"):
        save_outputs({"y": np.ones(2)}, tmp_path / "file" / "o.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.npz", "file", "o.npz"]
    assert list((tmp_path / "dir.npz").iterdir()) == []
