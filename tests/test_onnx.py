"""ONNX backend: checker-clean, shape inference agrees with the IR, onnxruntime agrees with torch."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import nndsl
from nndsl.backends.onnx import IR_VERSION, OPSET, ONNX_LOWERINGS, save
from nndsl.ir.ops import SIGNATURES

from conftest import SPECS, spec_id
from helpers import SMALL


def session(model):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def test_every_op_has_an_onnx_lowering():
    assert set(ONNX_LOWERINGS) == set(SIGNATURES) - {"input", "param"}


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_onnxruntime_matches_torch(spec):
    c = nndsl.compile(spec, params=SMALL.get(spec.stem))
    m = c.to_torch(seed=1).eval()
    model = c.to_onnx(weights=m.state_dict())
    assert model.opset_import[0].version == OPSET and model.ir_version == IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    sess = session(model)
    assert [i.name for i in sess.get_inputs()] == c.input_names
    assert [o.name for o in sess.get_outputs()] == c.output_names
    symbols = set().union(*(t.symbols() for t in c.input_types.values()))
    seq = [{}] + ([{"T": 5}] if "T" in symbols else [])
    for batch in (1, 3):
        for dims in seq:
            xs = c.example_inputs(batch=batch, **dims)
            with torch.no_grad():
                want = m(**xs)
            want = want if isinstance(want, tuple) else (want,)
            got = sess.run(None, {k: v.numpy() for k, v in xs.items()})
            for g, w in zip(got, want):
                w = w.numpy()
                # f32 sums of many terms differ in their last bits between the two runtimes:
                # the absolute tolerance is 1e-5 of the output's own scale (logits reach ~30).
                scale = max(1.0, float(np.abs(w).max())) if w.size else 1.0
                np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_shape_inference_agrees_with_the_ir(spec):
    c = nndsl.compile(spec, params=SMALL.get(spec.stem))
    inferred = onnx.shape_inference.infer_shapes(c.to_onnx(), strict_mode=True, data_prop=True)
    types = {vi.name: vi.type.tensor_type for vi in inferred.graph.value_info}
    types.update({vi.name: vi.type.tensor_type for vi in inferred.graph.output})
    checked = 0
    for node in c.graph:
        if node.op in ("input", "param") or node.name not in types:
            continue
        tt = types[node.name]
        ir = node.types[0]
        assert tt.elem_type == {"f32": 1, "i64": 7, "bool": 9, "i32": 6, "f64": 11}[ir.dtype]
        dims = tt.shape.dim
        assert len(dims) == ir.rank, node.name
        for d, want in zip(dims, ir.shape):
            if isinstance(want, int) and d.HasField("dim_value"):
                assert d.dim_value == want, (node.name, ir)
            elif d.HasField("dim_param") and not isinstance(want, int):
                assert d.dim_param == str(want) or d.dim_param.startswith("unk__"), node.name
        checked += 1
    assert checked > 0


def test_symbolic_dims_become_dim_params_and_scopes_name_nodes():
    c = nndsl.compile("specs/vision/resnet18.nn", params={"classes": 10, "width": 16})
    model = c.to_onnx()
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    names = [n.name for n in model.graph.node]
    assert "layers.1.b0.conv1/Conv" in names
    assert {i.name for i in model.graph.initializer} >= {"layers.1.b0.conv1.weight", "fc.bias"}


def test_export_is_byte_identical():
    c = nndsl.compile("specs/transformers/gpt_mini.nn", params={"layers": 1})
    assert c.to_onnx().SerializeToString() == c.to_onnx().SerializeToString()


def test_external_data_above_threshold(tmp_path):
    c = nndsl.compile("specs/vision/mnist_cnn.nn")
    m = c.to_torch(seed=2).eval()
    path = tmp_path / "cnn.onnx"
    files = save(c.to_onnx(weights=m.state_dict()), path, external_threshold=1000)
    assert files == [path, tmp_path / "cnn.onnx.data"]
    assert path.stat().st_size < 20_000 < (tmp_path / "cnn.onnx.data").stat().st_size
    onnx.checker.check_model(str(path), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = c.example_inputs(batch=2)["image"]
    np.testing.assert_allclose(sess.run(None, {"image": x.numpy()})[0],
                               m(x).detach().numpy(), rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn.onnx", "cnn.onnx.data"]
