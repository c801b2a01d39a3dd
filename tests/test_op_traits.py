"""Op kinds and traits: one record per op, every list derived from it, every backend in step.

The lists that passes, backends and the drawing use are derived from the records
(``ops_with``/``ops_of_kind``); where a backend keeps its own table for a trait (how it runs
each epilogue activation), the table's keys must be exactly the trait's ops, and each entry must
compute the activation it names.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

import nndsl
from nndsl.backends.onnx.lowering import ONNX_ACTIVATIONS
from nndsl.backends.torch.codegen import generate_source
from nndsl.backends.torch.codegen.ops import _ACT_SOURCE
from nndsl.backends.torch.lowering import ACTIVATIONS
from nndsl.ir.ops import FLOP_RULES, SIGNATURES, ops_of_kind, ops_with
from nndsl.ir.ops.flops import _zero
from nndsl.ir.ops.signatures import KINDS, TRAITS
from nndsl.ir.types import TensorType


def test_every_op_has_a_known_kind_and_known_traits():
    for op, sig in SIGNATURES.items():
        assert sig.kind in KINDS, op
        assert sig.traits <= set(TRAITS), op
    assert sum(len(ops_of_kind(k)) for k in KINDS) == len(SIGNATURES)
    with pytest.raises(KeyError):
        ops_with("fusable")
    with pytest.raises(KeyError):
        ops_of_kind("tensor")


def test_traits_imply_each_other_as_their_meanings_say():
    assert set(ops_with("affine")) <= set(ops_with("takes_act"))
    assert set(ops_with("type_determined")) <= set(ops_with("view"))
    assert set(ops_with("view")) <= set(ops_of_kind("movement"))
    assert set(ops_with("epilogue")) <= set(ops_of_kind("activation"))
    assert set(ops_with("takes_act")) <= set(ops_of_kind("layer"))
    assert set(ops_with("random")) <= set(ops_of_kind("activation"))


def test_movement_counts_no_flops():
    for op in ops_of_kind("movement"):
        assert FLOP_RULES[op] is _zero, op


@pytest.mark.parametrize("table", [ACTIVATIONS, ONNX_ACTIVATIONS, _ACT_SOURCE],
                         ids=["torch", "onnx", "codegen"])
def test_backend_tables_are_the_epilogue_trait(table):
    assert set(table) == set(ops_with("epilogue"))


def _reference(op: str, x: torch.Tensor) -> torch.Tensor:
    """The activation's NumPy reference from its record, as a float32 tensor."""
    sig, t = SIGNATURES[op], TensorType("f32", tuple(x.shape))
    return torch.from_numpy(np.asarray(sig.reference(sig.attrs, [x.detach().numpy()], [t], t),
                                       dtype=np.float32))


@pytest.mark.parametrize("act", ops_with("epilogue"))
@pytest.mark.parametrize("layer", ["linear(6)", "conv1d(6, 3, padding=1)"])
def test_every_epilogue_is_fused_and_computes_its_activation(act, layer):
    rank = "f32[N, 5]" if layer.startswith("linear") else "f32[N, 5, 7]"
    c = nndsl.compile(source=f"model m() {{\n    input x: {rank}\n"
                             f"    output y = x |> {layer} as l |> {act}\n}}\n")
    (node,) = [n for n in c.graph if n.op in ops_with("takes_act")]
    assert node.attr.get("act") == act                 # fuse_epilogue ran it inside the layer
    m = c.to_torch(seed=3).eval()
    x = c.example_inputs(batch=3, seed=1)["x"]
    w, b = m.state_dict()["l.weight"], m.state_dict()["l.bias"]
    pre = F.linear(x, w, b) if layer.startswith("linear") else F.conv1d(x, w, b, padding=1)
    want = _reference(act, pre)
    with torch.no_grad():
        got = m(x=x)
    scale = float(want.abs().max())
    torch.testing.assert_close(got, want, atol=1e-6 * scale + 1e-7, rtol=1e-5)
    sess = ort.InferenceSession(c.to_onnx(seed=3).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    (onnx_out,) = sess.run(None, {"x": x.numpy()})
    np.testing.assert_allclose(onnx_out, want.numpy(), atol=1e-5 * scale + 1e-6, rtol=1e-4)
    src = generate_source(c.graph, layers_as_modules=False)
    assert f"{_ACT_SOURCE[act]}(" in src


def test_the_drawing_colours_ops_by_kind():
    from nndsl.draw import _FILL, _FILL_OF
    assert set(_FILL_OF) <= set(SIGNATURES)
    for op, colour in _FILL_OF.items():
        assert colour == _FILL[SIGNATURES[op].kind]
    assert _FILL_OF["conv2d"] != _FILL_OF["relu"] != _FILL_OF["reshape"]


def test_scalar_semantics_fold_constants_and_elaborate_numbers():
    import math
    from nndsl.passes.cleanup import _FOLD
    assert set(_FOLD) == {op for op, sig in SIGNATURES.items() if sig.scalar is not None}
    assert SIGNATURES["rsqrt"].scalar(4.0) == 0.5 and SIGNATURES["pow"].scalar(2, 10) == 1024
    # the compiler folds `1 / sqrt(64)` and evaluates sigmoid of a number while elaborating
    c = nndsl.compile(source="model m(s: float = sigmoid(0.0)) {\n    input x: f32[N, 2]\n"
                             "    output y = x * (1 / sqrt(64.0)) + s\n}\n")
    m = c.to_torch()
    x = torch.ones(1, 2)
    torch.testing.assert_close(m(x=x), x * 0.125 + 0.5)
    assert not any(n.op == "sqrt" for n in c.graph)
    assert SIGNATURES["sigmoid"].scalar(-2.0) == pytest.approx(1 / (1 + math.exp(2.0)))


def test_every_distribution_has_a_torch_sampler_that_draws_it():
    from nndsl.backends.torch.inputs import SAMPLERS, draw
    from nndsl.ir.dists import DISTRIBUTIONS
    assert set(SAMPLERS) == set(DISTRIBUTIONS)
    g = torch.Generator().manual_seed(0)
    x = draw([20000], "f32", {"dist": "normal", "mean": 3.0, "std": 0.5}, generator=g)
    assert abs(float(x.mean()) - 3.0) < 0.02 and abs(float(x.std()) - 0.5) < 0.02
    u = draw([20000], "f32", {"dist": "uniform", "low": -2.0, "high": -1.0}, generator=g)
    assert float(u.min()) >= -2.0 and float(u.max()) < -1.0
    assert abs(float(u.mean()) + 1.5) < 0.02
    r = draw([20000], "i64", {"dist": "randint", "low": 2, "high": 5}, generator=g)
    assert r.dtype == torch.int64 and set(r.unique().tolist()) == {2, 3, 4}
    b = draw([20000], "f32", {"dist": "bernoulli", "p": 0.25}, generator=g)
    assert set(b.unique().tolist()) == {0.0, 1.0} and abs(float(b.mean()) - 0.25) < 0.02
    ids = draw([1000], "i64", None, id_range=(0, 7), generator=g)
    assert int(ids.min()) == 0 and int(ids.max()) == 6
