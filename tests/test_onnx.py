"""ONNX backend: checker-clean, shape inference agrees with the IR, onnxruntime agrees with torch."""

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import nndsl
from nndsl.backends.onnx import IR_VERSION, OPSET, ONNX_LOWERINGS, save
from nndsl.ir.ops import SIGNATURES

from zoo import ZOO, zoo_id


def session(model):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def test_every_op_has_an_onnx_lowering():
    assert set(ONNX_LOWERINGS) == set(SIGNATURES) - {"input", "param"}


@pytest.mark.parametrize("z", ZOO, ids=zoo_id)
def test_onnxruntime_matches_torch(z):
    c = z.compile()
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


@pytest.mark.parametrize("z", ZOO, ids=zoo_id)
def test_shape_inference_agrees_with_the_ir(z):
    c = z.compile()
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
    # the data file is named by its content, so an older .onnx never reads newer data
    assert files[0] == path and re.fullmatch(r"cnn\.onnx\.[0-9a-f]{16}\.data", files[1].name)
    assert path.stat().st_size < 20_000 < files[1].stat().st_size
    onnx.checker.check_model(str(path), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = c.example_inputs(batch=2)["image"]
    np.testing.assert_allclose(sess.run(None, {"image": x.numpy()})[0],
                               m(x).detach().numpy(), rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["cnn.onnx", files[1].name])


def test_cli_compile_and_run(tmp_path, capsys, root, monkeypatch):
    from nndsl.cli import main
    monkeypatch.chdir(root)
    spec = "specs/sequence/lstm_sentiment.nn"
    out = tmp_path / "m.onnx"
    assert main(["compile", spec, "--to", "onnx", "-o", str(out)]) == 0
    assert main(["run", spec, "--save", str(tmp_path / "a.npz")]) == 0
    assert main(["run", str(out), "--save", str(tmp_path / "b.npz")]) == 0
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    np.testing.assert_allclose(a["logit"], b["logit"], rtol=1e-4, atol=1e-5)
    text = capsys.readouterr().out
    assert "logit: float32 [2, 1]" in text and "(onnxruntime)" in text


def test_cli_run_inputs_and_errors(tmp_path, capsys, root, monkeypatch):
    from nndsl.cli import main
    from safetensors.torch import save_file
    monkeypatch.chdir(root)
    spec = "specs/vision/mnist_cnn.nn"
    c = nndsl.compile(spec)
    m = c.to_torch(seed=5).eval()
    save_file(dict(m.state_dict()), str(tmp_path / "w.safetensors"))
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    onnx_path = tmp_path / "cnn.onnx"
    assert main(["compile", spec, "--to", "onnx", "--weights", str(tmp_path / "w.safetensors"),
                 "-o", str(onnx_path)]) == 0
    assert main(["run", str(onnx_path), "--input", f"image={tmp_path / 'x.npy'}",
                 "--save", str(tmp_path / "o.npz")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "o.npz")["logits"],
                               m(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    capsys.readouterr()
    np.save(tmp_path / "bad.npy", x[:, :, :10])
    np.save(tmp_path / "int.npy", x.astype(np.int64))
    cases = [
        ["run", str(onnx_path), "--input", f"image={tmp_path / 'bad.npy'}"],
        ["run", spec, "--input", f"image={tmp_path / 'bad.npy'}"],
        ["run", str(onnx_path), "--input", f"image={tmp_path / 'int.npy'}"],
        ["run", spec, "--input", f"image={tmp_path / 'int.npy'}"],
        ["run", spec, "--input", f"picture={tmp_path / 'x.npy'}"],
        ["run", spec, "--input", f"image={tmp_path / 'missing.npy'}"],
        ["compile", spec, "--to", "onnx", "--weights", str(tmp_path / "nope.safetensors"),
         "-o", str(tmp_path / "never.onnx")],
        ["run", str(onnx_path), "--save", str(tmp_path / "x.npy" / "out.npz")],
        ["run", str(onnx_path), "--save", str(tmp_path / "bad\0name.npz")],
        ["compile", spec, "--to", "onnx", "-o", str(tmp_path / "x.npy" / "m.onnx")],
    ]
    for argv in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("error[E"), (argv, err)
    sd = dict(m.state_dict())
    sd["fc2.weight"] = sd["fc2.weight"][:5]
    save_file(sd, str(tmp_path / "wrong.safetensors"))
    assert main(["compile", spec, "--to", "onnx", "--weights", str(tmp_path / "wrong.safetensors"),
                 "-o", str(tmp_path / "never.onnx")]) == 1
    assert "fc2.weight: expected [10, 64], got [5, 64]" in capsys.readouterr().err
    assert not (tmp_path / "never.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["w.safetensors", "x.npy", "cnn.onnx", "o.npz", "bad.npy", "int.npy", "wrong.safetensors"])


def test_a_scalar_parameter_exports_as_a_scalar():
    c = nndsl.compile("model s() { input x: f32[N, 4]  param scale: f32[] = constant(2.0)\n"
                      "output y = x * exp(scale) }")
    model = c.to_onnx()
    onnx.checker.check_model(model, full_check=True)
    assert [list(t.dims) for t in model.graph.initializer if t.name == "scale"] == [[]]
    x = np.ones((3, 4), np.float32)
    np.testing.assert_allclose(session(model).run(None, {"x": x})[0], x * np.exp(2.0), rtol=1e-6)
