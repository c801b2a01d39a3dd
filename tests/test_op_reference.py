"""Every op with a NumPy reference on its record, run alone by both backends and compared with it.

The reference (``SIGNATURES[op].reference``, :mod:`nndsl.ir.ops.reference`) is the op's
definition in NumPy. Each case below builds a graph of one node of the op over graph inputs,
runs it in the torch module and in onnxruntime on nndsl's export, and compares both with the
reference: bit for bit where the record says the reference is exact and the result is not a
float, within a tolerance scaled to the values otherwise.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from nndsl.backends.onnx.export import to_onnx
from nndsl.backends.torch.module import GraphModule
from nndsl.ir.graph import Graph, Node
from nndsl.ir.ops import SIGNATURES, infer, ops_of_kind
from nndsl.ir.ops.reference import as_dtype
from nndsl.ir.ops.signatures import BINARY, COMPARE, REDUCE
from nndsl.ir.types import TensorType
from nndsl.ir.verify import verify

RNG = np.random.default_rng(11)
F = "f32"


def _positive(*shape):
    return (RNG.random(shape) + 0.5).astype(np.float32)


def _normal(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _ints(*shape, low=1, high=6):
    return RNG.integers(low, high, shape).astype(np.int64)


# op -> (inputs, attrs); inputs are arrays (graph inputs) in operand order. Ops not named here
# that take one float tensor get a normal one; binary arithmetic and comparisons get two.
CASES = {
    "log": ([_positive(3, 4)], {}), "sqrt": ([_positive(3, 4)], {}),
    "rsqrt": ([_positive(3, 4)], {}),
    "logical_not": ([RNG.random((3, 4)) < 0.5], {}),
    "pow": ([_positive(3, 4), _normal(3, 4)], {}),
    "floor_div": ([_ints(3, 4, low=-9, high=9), _ints(3, 4)], {}),
    "mod": ([_ints(3, 4, low=-9, high=9), _ints(3, 4)], {}),
    "logical_and": ([RNG.random((3, 4)) < 0.5, RNG.random((3, 4)) < 0.5], {}),
    "logical_or": ([RNG.random((3, 4)) < 0.5, RNG.random((3, 4)) < 0.5], {}),
    "cast": ([_normal(3, 4) * 4], {"dtype": "i64"}),
    "clamp": ([_normal(3, 4)], {"min": -0.5, "max": 0.7}),
    "where": ([RNG.random((3, 4)) < 0.5, _normal(3, 4), _normal(3, 4)], {}),
    "masked_fill": ([_normal(3, 4), RNG.random((3, 4)) < 0.5], {"value": -2.5}),
    "tril": ([_normal(4, 5)], {"k": 1}), "triu": ([_normal(4, 5)], {"k": -1}),
    "matmul": ([_normal(2, 3, 4), _normal(4, 5)], {}),
    "reshape": ([_normal(2, 6)], {"shape": (3, 4)}),
    "flatten": ([_normal(2, 3, 4)], {"start": 1, "end": -1}),
    "squeeze": ([_normal(2, 1, 4)], {"dims": (1,)}),
    "unsqueeze": ([_normal(2, 4)], {"dim": 1}),
    "expand": ([_normal(1, 4)], {"shape": (3, 4)}),
    "transpose": ([_normal(2, 3, 4)], {"dim0": 0, "dim1": 2}),
    "permute": ([_normal(2, 3, 4)], {"dims": (2, 0, 1)}),
    "concat": ([_normal(2, 3), _normal(2, 5)], {"dim": 1}),
    "stack": ([_normal(2, 3), _normal(2, 3)], {"dim": 1}),
    "slice": ([_normal(6, 7)], {"axes": (0, 1), "starts": (1, 0), "ends": (5, 7),
                                "steps": (2, 3)}),
    "flip": ([_normal(3, 4)], {"dims": (0, 1)}),
    "roll": ([_normal(3, 4)], {"shifts": (1, -2), "dims": (0, 1)}),
    "repeat_interleave": ([_normal(3, 4)], {"repeats": 2, "dim": 1}),
    **{op: ([_normal(3, 4, 5)], {"dims": (1, 2), "keepdim": op == "sum"}) for op in REDUCE},
    "prod": ([_positive(3, 4, 5)], {"dims": (1,), "keepdim": False}),
    "cumsum": ([_normal(3, 4)], {"dim": 1}),
    "cumprod": ([_positive(3, 4)], {"dim": 0}),
    "index_select": ([_normal(5, 3), np.array([4, 0, 2, 2], dtype=np.int64)], {"dim": 0}),
    "one_hot": ([_ints(3, 4, low=0, high=5)], {"n": 5, "dtype": "i64"}),
    "elu": ([_normal(3, 4)], {"alpha": 0.7}),
    "leaky_relu": ([_normal(3, 4)], {"slope": 0.2}),
    "softplus": ([_normal(3, 4) * 8], {"beta": 2.0, "threshold": 5.0}),
    "softmax": ([_normal(3, 4, 5)], {"dim": 1}),
    "log_softmax": ([_normal(3, 4, 5)], {"dim": -1}),
    "logsumexp": ([_normal(3, 4, 5)], {"dims": (2,), "keepdim": True}),
    "var": ([_normal(3, 4, 5)], {"dims": (1,), "correction": 1, "keepdim": False}),
    "std": ([_normal(3, 4, 5)], {"dims": (0, 2), "correction": 0, "keepdim": True}),
    "argmax": ([_normal(3, 7)], {"dim": 1, "keepdim": False}),
    "layer_norm": ([_normal(2, 3, 6), _normal(6), _normal(6)],
                   {"normalized_shape": (6,), "eps": 1e-5}),
    "rms_norm": ([_normal(2, 3, 6), _normal(6)], {"normalized_shape": (6,), "eps": 1e-6}),
    "group_norm": ([_normal(2, 6, 5), _normal(6), _normal(6)], {"groups": 3, "eps": 1e-5}),
    "linear": ([_normal(4, 5), _normal(3, 5), _normal(3)], {"act": None}),
    "pixel_shuffle": ([_normal(2, 8, 3, 4)], {"r": 2}),
    "gelu": ([_normal(3, 4) * 3], {"approximate": "none"}),
}
CASES["gelu_tanh"] = ([_normal(3, 4) * 3], {"approximate": "tanh"})
CASES["linear_relu"] = ([_normal(4, 5), _normal(3, 5), _normal(3)], {"act": "relu"})
# integers: division rounds toward zero; with a float number, the IR promotes to float
CASES["div_int"] = ([_ints(3, 4, low=-9, high=9), _ints(3, 4)], {})
_HALF = np.array(0.5, dtype=np.float32)
CASES["add_int_float"] = ([_ints(3, 4, low=-9, high=9), _HALF], {})
CASES["maximum_int_float"] = ([_ints(3, 4, low=-9, high=9), _HALF], {})
CASES["lt_int_float"] = ([_ints(3, 4, low=-9, high=9), _HALF], {})
CASES["ne_int_float"] = ([_ints(3, 4, low=-2, high=2), np.array(1.0, dtype=np.float32)], {})
OP_OF = {"gelu_tanh": "gelu", "linear_relu": "linear", "div_int": "div",
         "add_int_float": "add", "maximum_int_float": "maximum", "lt_int_float": "lt",
         "ne_int_float": "ne"}
# sources read no operand and take their sizes from attributes
SOURCES = {"scalar": {"value": 2.5, "dtype": "f32"},
           "full": {"shape": (2, 3), "value": -1.5, "dtype": "f32"},
           "arange": {"n": 7, "dtype": "i64"}}

DTYPE = {np.dtype(np.float32): "f32", np.dtype(np.int64): "i64", np.dtype(np.bool_): "bool"}


def _case(name: str):
    op = OP_OF.get(name, name)
    if name in CASES:
        return op, CASES[name]
    if op in BINARY or op in COMPARE:
        return op, ([_normal(3, 4), _normal(3, 4)], {})
    return op, ([_normal(3, 4)], {})


def _one_op_graph(op: str, arrays: list, attrs: dict) -> Graph:
    g = Graph("one_op")
    operands = []
    for i, a in enumerate(arrays):
        t = TensorType(DTYPE[a.dtype], tuple(a.shape))
        node = g.add(Node.make(f"x{i}", "input", (), {"name": f"x{i}", "dtype": t.dtype,
                                                     "shape": t.shape}, (t,)))
        operands.append(node.out())
    types = infer(op, [g.type_of(v) for v in operands], {**SIGNATURES[op].attrs, **attrs})
    node = g.add(Node.make("y", op, operands, attrs, types))
    for i in range(len(types)):
        g.set_output(f"y{i}", node.out(i))
    verify(g)
    return g


def _reference(op: str, arrays: list, attrs: dict, g: Graph) -> np.ndarray:
    sig = SIGNATURES[op]
    ins_types = [g.type_of(g.node(f"x{i}").out()) for i in range(len(arrays))]
    out = g.type_of(g.node("y").out())
    with np.errstate(all="ignore"):
        want = sig.reference({**sig.attrs, **attrs}, arrays, ins_types, out)
    # an exact reference's value is rounded to the result's dtype, as constant folding does
    return as_dtype(want, out.dtype) if sig.exact else np.asarray(want)


def _compare(got: np.ndarray, want: np.ndarray, exact: bool, what: str) -> None:
    assert got.shape == want.shape, what
    if want.dtype.kind in "biu" or exact and want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=what)
        return
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=2e-5,
                               atol=2e-6 * scale, err_msg=what)


WITH_REFERENCE = [op for op, sig in SIGNATURES.items()
                  if sig.reference is not None and op not in SOURCES]
NAMES = WITH_REFERENCE + [n for n in CASES if n in OP_OF]


@pytest.mark.parametrize("name", NAMES)
def test_both_backends_compute_the_reference(name):
    op, (arrays, attrs) = _case(name)
    g = _one_op_graph(op, arrays, attrs)
    want = _reference(op, arrays, attrs, g)
    module = GraphModule(g).eval()
    with torch.no_grad():
        got = module(**{f"x{i}": torch.from_numpy(np.array(a, copy=True))
                        for i, a in enumerate(arrays)})
    _compare(got.numpy(), want, SIGNATURES[op].exact, f"{name} on torch")
    sess = ort.InferenceSession(to_onnx(g, {}).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    (onnx_out,) = sess.run(None, {f"x{i}": a for i, a in enumerate(arrays)})
    _compare(np.asarray(onnx_out), want, SIGNATURES[op].exact, f"{name} on onnxruntime")


@pytest.mark.parametrize("op", list(SOURCES))
def test_sources_compute_the_reference(op):
    g = Graph("one_op")
    attrs = SOURCES[op]
    types = infer(op, [], {**SIGNATURES[op].attrs, **attrs})
    node = g.add(Node.make("y", op, (), attrs, types))
    g.set_output("y0", node.out())
    want = np.asarray(SIGNATURES[op].reference({**SIGNATURES[op].attrs, **attrs}, [], [],
                                               types[0]), dtype=np.float64)
    with torch.no_grad():
        got = torch.as_tensor(GraphModule(g)()).numpy()   # a scalar runs as a number
    np.testing.assert_array_equal(got, want.astype(got.dtype))


def test_the_references_are_written_from_the_definitions():
    """Spot values worked out by hand, so a reference is not merely what the kernels give."""
    def ref(op, arrays, **attrs):
        return _reference(op, arrays, attrs, _one_op_graph(op, arrays, attrs))
    x = np.array([[-1.0, 0.0, 2.0]], dtype=np.float32)
    e = np.exp(x.astype(np.float64))
    np.testing.assert_allclose(ref("softmax", [x], dim=-1), e / e.sum(), rtol=1e-12)
    np.testing.assert_allclose(ref("hardswish", [x]), [[-1 * 2 / 6, 0.0, 2 * 5 / 6]],
                               rtol=1e-12)
    np.testing.assert_allclose(ref("elu", [x], alpha=2.0), [[2 * (np.exp(-1) - 1), 0, 2]],
                               rtol=1e-12)
    np.testing.assert_allclose(ref("gelu", [np.float32([[1.0]])], approximate="none"),
                               [[0.8413447460685429]], rtol=1e-12)   # Φ(1)
    v = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    np.testing.assert_allclose(ref("var", [v], dims=(1,), correction=1, keepdim=False),
                               [5 / 3], rtol=1e-12)
    np.testing.assert_allclose(ref("layer_norm", [v, np.ones(4, np.float32), np.zeros(4, np.float32)],
                                   normalized_shape=(4,), eps=0.0),
                               (v - 2.5) / np.sqrt(1.25), rtol=1e-6)
    p = np.arange(8, dtype=np.float32).reshape(1, 8, 1, 1)
    np.testing.assert_array_equal(ref("pixel_shuffle", [p], r=2)[0, :, :, :].ravel(),
                                  [0, 1, 2, 3, 4, 5, 6, 7])


def test_every_activation_and_normalizer_has_a_reference():
    missing = [op for op in ops_of_kind("activation") + ops_of_kind("norm")
               if SIGNATURES[op].reference is None]
    # dropout and drop_path are random in training and the identity in eval; batch_norm
    # reads running statistics (its train-mode arithmetic is checked against torch.nn in
    # tests/test_zoo_references.py)
    assert set(missing) == {"dropout", "drop_path", "batch_norm"}, missing


def test_an_op_added_to_the_tables_is_in_the_language_every_backend_and_import(tmp_path):
    """hardsigmoid, added as a newcomer adds an op: named in the language from its record,
    run by torch, onnxruntime and the generated source, and read back from PyTorch's export."""
    import nndsl
    from nndsl.backends.torch.codegen import generate_source
    from nndsl.importer import import_onnx
    c = nndsl.compile(source="model m() {\n    input x: f32[N, 6]\n"
                             "    output y = x |> hardsigmoid\n}\n")
    x = np.linspace(-4, 4, 12, dtype=np.float32).reshape(2, 6)
    want = np.clip(x.astype(np.float64) + 3, 0, 6) / 6
    with torch.no_grad():
        np.testing.assert_allclose(c.to_torch()(x=torch.from_numpy(x)).numpy(), want, atol=1e-6)
    sess = ort.InferenceSession(c.to_onnx().SerializeToString(),
                                providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], want, atol=1e-6)
    assert "F.hardsigmoid(" in generate_source(c.graph)
    path = tmp_path / "hs.onnx"
    torch.onnx.export(torch.nn.Hardsigmoid(), (torch.from_numpy(x),), str(path),
                      input_names=["x"], output_names=["y"], dynamo=False)
    imported = import_onnx(str(path))
    assert "hardsigmoid" in imported.text
    with torch.no_grad():
        got = imported.compile().to_torch()(torch.from_numpy(x))
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


def test_numbers_beside_half_precision_tensors_export_in_their_dtype():
    """where(c, s, -inf) over f16 scores: the number is cast to f16 in ONNX (onnxruntime
    refuses a Where of f16 and f32), and the masked softmax matches torch."""
    import nndsl
    c = nndsl.compile(source="model m() {\n    input s: f16[N, 4, 4]\n"
                             "    input c: bool[N, 4, 4]\n"
                             "    output y = where(c, s, -inf) |> softmax(dim=-1)\n"
                             "    output z = where(c, 0.5, s)\n}\n")
    s = RNG.standard_normal((2, 4, 4)).astype(np.float16)
    mask = np.tril(np.ones((4, 4), bool))[None].repeat(2, 0)
    sess = ort.InferenceSession(c.to_onnx().SerializeToString(),
                                providers=["CPUExecutionProvider"])
    y, z = sess.run(None, {"s": s, "c": mask})
    assert y.dtype == z.dtype == np.float16
    e = np.where(mask, np.exp(s.astype(np.float64)), 0.0)
    np.testing.assert_allclose(y.astype(np.float64), e / e.sum(-1, keepdims=True), atol=2e-3)
    np.testing.assert_array_equal(z, np.where(mask, np.float16(0.5), s))
