"""Indexing a tensor as NumPy does, with shapes known when compiling: `none` inserts a dim of
size 1 (`unsqueeze`), with slices, integers and `...`; an i64 tensor of ids picks slices along
a dim (`index_select`, with reshapes around it for a 0-d or n-d index, the result has the
index's dims in place of the dim: NumPy's `take`). Values are compared with NumPy in the torch
module and in onnxruntime. A boolean mask, whose result's shape depends on the data, is a
located error."""

from __future__ import annotations

import textwrap

import numpy as np
import onnxruntime as ort
import pytest
import torch

import nndsl

from helpers import compile_text, concrete


def _session(model):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def run_both(c: nndsl.Compiled, inputs: dict) -> tuple[list, list]:
    """The outputs of ``c`` on ``inputs`` (NumPy arrays) from torch and from onnxruntime."""
    m = c.to_torch(seed=0).eval()
    with torch.no_grad():
        out = m(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    out = out if isinstance(out, tuple) else (out,)
    return [o.numpy() for o in out], _session(c.to_onnx(weights=m.state_dict())).run(None,
                                                                                     inputs)


def _spec(index: str, shape: str = "f32[N, 3, 4]", extra: str = "") -> str:
    return textwrap.dedent(f"""\
        model m() {{
            input x: {shape}
            {extra}
            output y = x[{index}]
        }}
        """)


X = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) - 7.5
N = None   # NumPy's newaxis, spelt `none` in the language

NEW_AXES = [
    (":, none", (slice(None), N), "unsqueeze"),
    ("none", (N,), "unsqueeze"),
    ("..., none", (Ellipsis, N), "unsqueeze"),
    ("none, :, 1:", (N, slice(None), slice(1, None)), "slice"),
    ("none, ..., 1:3, none", (N, Ellipsis, slice(1, 3), N), "slice"),
    ("0, none, :, -1", (0, N, slice(None), -1), "squeeze"),
    (":, none, 1, none", (slice(None), N, 1, N), "squeeze"),
    ("none, none, ..., ::2", (N, N, Ellipsis, slice(None, None, 2)), "slice"),
    ("1:, none, 2", (slice(1, None), N, 2), "squeeze"),
]


@pytest.mark.parametrize("index, numpy_index, op", NEW_AXES,
                         ids=[i for i, _, _ in NEW_AXES])
def test_none_inserts_a_dim_as_numpy_does(index, numpy_index, op):
    c = compile_text(_spec(index))
    want = X[numpy_index]
    assert concrete(c.output_types["y"], {"N": 2}) == want.shape
    ops = [n.op for n in c.unoptimized if n.op not in ("input", "param")]
    assert "unsqueeze" in ops and op in ops
    assert set(ops) <= {"slice", "squeeze", "unsqueeze"}      # existing ops only
    for got in run_both(c, {"x": X}):
        np.testing.assert_array_equal(got[0], want)


def test_the_type_keeps_symbolic_dims():
    c = compile_text(_spec("none, :, none, 1:"))
    assert str(c.output_types["y"]) == "f32[1, N, 1, 2, 4]"


IDS = np.array([2, 0, 2, 1], dtype=np.int64)
IDS2 = np.array([[3, 0, 1], [1, 1, 2]], dtype=np.int64)

TENSOR_INDEX = [
    ("ids", "input ids: i64[K]", {"ids": IDS[IDS < 2]}, lambda a: X[a["ids"]]),
    (":, ids", "input ids: i64[K]", {"ids": IDS}, lambda a: X[:, a["ids"]]),
    ("..., ids", "input ids: i64[2, 3]", {"ids": IDS2}, lambda a: X[..., a["ids"]]),
    (":, :, ids", "input ids: i64[2, 3]", {"ids": IDS2}, lambda a: X[:, :, a["ids"]]),
    ("1:, ids, none", "input ids: i64[K]", {"ids": IDS},
     lambda a: X[1:, a["ids"], None]),
    ("none, :, ids, ::2", "input ids: i64[K]", {"ids": IDS},
     lambda a: X[None, :, a["ids"], ::2]),
]


@pytest.mark.parametrize("index, decl, inputs, want", TENSOR_INDEX,
                         ids=[i for i, _, _, _ in TENSOR_INDEX])
def test_an_i64_tensor_picks_slices_as_numpy_take_does(index, decl, inputs, want):
    c = compile_text(_spec(index, extra=decl))
    inputs = {"x": X, **inputs}
    expected = want(inputs)
    env = {"N": 2, "K": len(inputs["ids"])}
    assert concrete(c.output_types["y"], env) == expected.shape
    ops = {n.op for n in c.unoptimized if n.op not in ("input", "param")}
    assert "index_select" in ops and ops <= {"slice", "squeeze", "unsqueeze", "index_select",
                                             "reshape"}
    for got in run_both(c, inputs):
        np.testing.assert_array_equal(got[0], expected)


def test_a_0d_index_drops_the_dim():
    c = compile_text(_spec(":, ids[1]", extra="input ids: i64[2]"))
    assert str(c.output_types["y"]) == "f32[N, 4]"
    ids = np.array([0, 2], dtype=np.int64)
    for got in run_both(c, {"x": X, "ids": ids}):
        np.testing.assert_array_equal(got[0], X[:, 2])


def test_ids_computed_in_the_model_and_their_range():
    c = compile_text("""
        model m() {
            input table: f32[V, 8]
            input ids: i64[N, T]
            output y = table[ids]
        }
        """)
    assert str(c.output_types["y"]) == "f32[N, T, 8]"
    assert c.graph.meta["input_ranges"]["ids"][0] == 0       # example ids are valid rows
    ins = c.example_inputs(batch=3, V=5, T=2)
    assert int(ins["ids"].max()) < 5
    table = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    ids = np.array([[4, 0], [1, 1], [3, 2]], dtype=np.int64)
    for got in run_both(c, {"table": table, "ids": ids}):
        np.testing.assert_allclose(got[0], table[ids])


def test_generated_source_indexes_alike(tmp_path):
    import importlib.util

    from nndsl.backends.torch.codegen import write_package
    c = compile_text(_spec("none, :, ids, 1:", extra="input ids: i64[2, 3]"))
    write_package(c, tmp_path / "pkg")
    spec = importlib.util.spec_from_file_location("indexing_generated", tmp_path / "pkg" /
                                                  "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = next(v for v in vars(mod).values() if isinstance(v, type) and
                 issubclass(v, torch.nn.Module) and v.__module__ == mod.__name__)()
    ids = torch.from_numpy(IDS2 % 3)
    got = model(torch.from_numpy(X), ids)
    np.testing.assert_array_equal(got.numpy(), X[None, :, IDS2 % 3, 1:])


# ---------------------------------------------------------------- mistakes

def _error(index: str, extra: str = "", shape: str = "f32[N, 3, 4]") -> nndsl.NndslError:
    text = _spec(index, shape=shape, extra=extra)
    with pytest.raises(nndsl.NndslError) as err:
        compile_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "output y" in ln)
    assert err.value.span is not None and err.value.span.line == line   # at the index
    return err.value


def test_a_boolean_mask_is_a_located_error_with_a_hint():
    e = _error("mask", extra="input mask: bool[N, 3, 4]")
    assert e.code == "E0340"
    assert "boolean mask" in e.message and "depend" in e.message
    assert "where(mask, x, 0)" in e.hint and "masked_fill" in e.hint
    assert e.span.col == 18                                  # the mask, in `x[mask]`


def test_a_comparison_as_a_mask_is_the_same_error():
    e = _error("x > 0")
    assert e.code == "E0340"


@pytest.mark.parametrize("index, extra, code, text", [
    ("f", "input f: f32[4]", "E0304", "i64 ids"),
    ("i32", "input i32: i32[4]", "E0304", "cast(index, i64)"),
    ("a, b", "input a: i64[2]\n    input b: i64[2]", "E0250", "one tensor index at a time"),
    ("a, 0", "input a: i64[2]", "E0250", "integer index"),
    ("0, 1, 2, 3", "", "E0302", "too many indices"),
    ("none, 0, 1, 2, 3", "", "E0302", "too many indices"),
    ("..., ...", "", "E0243", "at most one `...`"),
    ("\"a\"", "", "E0242", "an index must be"),
])
def test_mistakes_are_located(index, extra, code, text):
    e = _error(index, extra=extra)
    assert e.code == code, e.render()
    assert text in e.render()


def test_none_spelt_the_python_way_is_pointed_to_none():
    e = _error(":, None")
    assert e.code == "E0201" and "`none`" in e.hint
