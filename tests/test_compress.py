"""Compression: quantization and pruning passes, checked against independent computations.

- derivations (quantize, pack, masks) against plain NumPy and torch;
- every scheme close to the float model within its stated bound, torch and onnxruntime agreeing
  within it, checker-clean ONNX, a generated ``model.py`` that loads the quantized weights;
- weight-only quantization equal to the float model run with the dequantized weights;
- channel pruning equal to the dense model with the removed channels zeroed where they leave
  their layer; masks equal to the dense model with the masked weights zeroed;
- every pass idempotent; bad options rejected with a located error and nothing written.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import nndsl
from nndsl.cli import main
from nndsl.ir import derive
from nndsl.ir.verify import verify
from nndsl.passes.compress import Compression
from nndsl.passes.pipeline import run_pass

ROOT = Path(__file__).resolve().parents[1]
MLP = ROOT / "specs/fundamentals/mlp.nn"
CNN = ROOT / "specs/vision/mnist_cnn.nn"
GPT = ROOT / "specs/transformers/gpt_mini.nn"
GPT_SMALL = {"layers": 2, "vocab": 512, "ctx": 64}
RESNET = ROOT / "specs/vision/resnet18.nn"
RESNET_SMALL = {"width": 8, "classes": 10}

# Largest |quantized - float| allowed, as a fraction of max |float output|.
BOUND = {"int8-dynamic": 0.05, "int8-weight": 0.02, "int4-weight": 0.2, "f16": 0.005,
         "bf16": 0.04}


def _run(c, xs, weights=None):
    with torch.no_grad():
        return c.to_torch(weights=weights).eval()(**xs).float().numpy()


def _ort(model, xs):
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {k: v.numpy() for k, v in xs.items()})[0]


# ---- derivations ----

def test_quantize_weight_is_the_nearest_multiple_of_the_row_scale():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 10)).astype(np.float32)
    w[3] = 0.0
    q = derive.quantize_weight(w, to="i8")
    s = derive.quant_scale(w, to="i8")
    assert q.dtype == np.int8 and s.shape == (6,)
    np.testing.assert_allclose(s[[0, 1]], np.abs(w[[0, 1]]).max(axis=1) / 127, rtol=1e-6)
    assert np.abs(q).max() == 127 and (q[3] == 0).all() and s[3] == 1.0
    err = np.abs(q * s[:, None] - w)
    assert (err <= s[:, None] / 2 + 1e-7).all()


def test_int4_groups_pack_two_values_a_byte():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 16)).astype(np.float32)
    p = derive.quantize_weight(w, to="i4", group=8)
    s = derive.quant_scale(w, to="i4", group=8)
    assert p.dtype == np.uint8 and p.shape == (4, 8) and s.shape == (4, 2)
    q = derive.unpack_int4(p, 16)
    assert q.min() >= -7 and q.max() <= 7
    for g in range(2):
        cols = slice(8 * g, 8 * g + 8)
        np.testing.assert_allclose(s[:, g], np.abs(w[:, cols]).max(axis=1) / 7, rtol=1e-6)
        assert (np.abs(q[:, cols] * s[:, g:g + 1] - w[:, cols]) <= s[:, g:g + 1] / 2 + 1e-6).all()
    # low nibble first, two's complement: [-1, 2] -> 0x2F
    assert derive.pack_int4(np.array([[-1, 2]], np.int8))[0, 0] == 0x2F
    # the torch unpacking agrees
    from nndsl.backends.torch.lowering import unpack_int4
    assert (unpack_int4(torch.from_numpy(p)).numpy() == q).all()


def test_masks_zero_exactly_what_they_say():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(8, 12)).astype(np.float32)
    m = derive.magnitude_mask(w, sparsity=0.75)
    assert (m == 0).sum() == 72
    kept = np.abs(w[m != 0])
    assert kept.min() >= np.abs(w[m == 0]).max()
    nm = derive.n_m_mask(w, n=2, m=4)
    groups = nm.reshape(8, 3, 4)
    assert ((groups != 0).sum(axis=2) == 2).all()
    # the two kept are the two largest of each group
    wg = np.abs(w.reshape(8, 3, 4))
    assert (np.sort(wg, axis=2)[:, :, 2:] == np.sort(np.abs(groups), axis=2)[:, :, 2:]).all()


def test_bf16_rounding_matches_torch():
    x = np.random.default_rng(3).normal(size=1000).astype(np.float32) * 100
    ours = derive.cast(x, to="bf16")
    theirs = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    assert (ours == theirs).all()
    assert derive.cast(np.float32(3.3), to="bf16").shape == ()     # scalars stay scalars


# ---- quantization schemes on zoo specs ----

CASES = [(MLP, {}), (CNN, {}), (GPT, GPT_SMALL)]


@pytest.mark.parametrize("scheme", list(BOUND))
@pytest.mark.parametrize("spec,params", CASES, ids=["mlp", "mnist_cnn", "gpt_mini"])
def test_scheme_close_to_float_and_onnx_agrees(spec, params, scheme):
    f = nndsl.compile(spec, params=params)
    xs = f.example_inputs(batch=3)
    ref = _run(f, xs)
    c = nndsl.compile(spec, params=params, quantize=scheme)
    verify(c.graph)
    y = _run(c, xs)
    assert y.shape == ref.shape
    scale = np.abs(ref).max()
    assert np.abs(y - ref).max() <= BOUND[scheme] * scale
    assert c.param_count() == f.param_count()
    if scheme == "bf16":
        with pytest.raises(nndsl.errors.NndslError, match="bf16"):
            c.to_onnx()
        return
    o = _ort(c.to_onnx(), xs)
    assert np.abs(o - y).max() <= BOUND[scheme] * scale


@pytest.mark.parametrize("scheme,group", [("int8-weight", None), ("int4-weight", 16)])
def test_weight_only_equals_float_with_dequantized_weights(scheme, group):
    """Computed independently: the float model run with every linear weight replaced by
    ``q · s`` (NumPy)."""
    f = nndsl.compile(MLP, opt="O0")
    c = nndsl.compile(MLP, opt="O0", quantize=scheme, group=group)
    sd = {k: v.numpy() for k, v in f.to_torch().state_dict().items()}
    bits = 7 if scheme == "int4-weight" else 127
    deq = {}
    for k, w in sd.items():
        if k.endswith("fc.weight") or k == "head.weight" or (w.ndim == 2 and "fc" in k):
            rows = w.reshape(w.shape[0], -1, group or w.shape[1]).astype(np.float64)
            s = np.abs(rows).max(axis=2, keepdims=True) / bits
            deq[k] = (np.clip(np.rint(rows / s), -bits, bits) * s).reshape(w.shape)
    assert deq, "the mlp has linear weights"
    weights = {k: torch.from_numpy(deq.get(k, v).astype(v.dtype)) for k, v in sd.items()}
    xs = f.example_inputs(batch=4)
    want = _run(f, xs, weights=weights)
    got = _run(c, xs, weights={k: torch.from_numpy(v) for k, v in sd.items()})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_int8_dynamic_uses_int8_kernels_and_keeps_what_it_cannot_take():
    c = nndsl.compile(GPT, params=GPT_SMALL, quantize="int8-dynamic", opt="O2")
    ops = [n.op for n in c.graph]
    # merged QKV, out projection, the two MLP linears per layer, the tied head
    assert ops.count("linear_int8") == 2 * 4 + 1
    assert "linear" not in ops
    dtypes = {n.name: n.type.dtype for n in c.graph.params()}
    assert dtypes["wte.weight_q"] == "i8" and "wte.weight" not in dtypes   # tied: quantized once
    text = c.summary()
    assert "compression: quantize int8-dynamic" in text and "of the float model" in text


def _dynamic_quantize_linear(x: np.ndarray):
    """ONNX's DynamicQuantizeLinear, computed here: uint8 over [min(x, 0), max(x, 0)]."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = np.float32((hi - lo) / 255)
    zp = np.clip(np.rint(-lo / scale), 0, 255)
    return np.clip(np.rint(x / scale) + zp, 0, 255), scale, zp


@pytest.mark.parametrize("form", ["u8u8", "u8s8"])
def test_int8_forms_compute_the_integer_product_exactly(form):
    """Both ONNX forms of int8-dynamic's linear against the arithmetic written out in NumPy.
    One input feature: a product has no pair to saturate with, so both forms are exact on any
    CPU (u8s8 can saturate 16-bit pair sums where x86 has no VNNI)."""
    c = nndsl.compile(source="model m() {\n    input x: f32[N, 1]\n"
                             "    output y = x |> linear(16) as fc\n}\n",
                      quantize="int8-dynamic")
    arrays = c._derived_arrays(None, 0)
    model = c.to_onnx(int8=form)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    assert inits["fc.weight_q"].dtype == np.int8            # stored as int8 either way
    mmi = [n for n in model.graph.node if n.op_type == "MatMulInteger"]
    assert len(mmi) == 1 and len(mmi[0].input) == (4 if form == "u8u8" else 3)
    x = np.random.default_rng(0).normal(size=(64, 1)).astype(np.float32)
    got = _ort(model, {"x": torch.from_numpy(x)})
    xq, sx, zx = _dynamic_quantize_linear(x)
    acc = (xq - zx) @ arrays["fc.weight_q"].astype(np.float64).T
    want = acc * (sx * arrays["fc.weight_scale"]) + arrays["fc.bias"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


def test_int8_forms_are_checked():
    c = nndsl.compile(MLP, quantize="int8-dynamic")
    with pytest.raises(nndsl.errors.NndslError, match="E0257|unknown int8 form"):
        c.to_onnx(int8="s8s8")
    for form in ("u8u8", "u8s8"):
        onnx.checker.check_model(c.to_onnx(int8=form), full_check=True)


def test_onnx_int8_form_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["compile", str(MLP), "--quantize", "int8-dynamic", "--to", "onnx",
                 "--onnx-int8", "u8s8", "-o", str(out)]) == 0
    mmi = [n for n in onnx.load(str(out)).graph.node if n.op_type == "MatMulInteger"]
    assert mmi and all(len(n.input) == 3 for n in mmi)
    assert main(["compile", str(MLP), "--quantize", "int8-dynamic", "--onnx-int8", "u8s8",
                 "-o", str(tmp_path / "pkg")]) == 1
    assert "E0257" in capsys.readouterr().err and not (tmp_path / "pkg").exists()


def test_weights_files_shrink(tmp_path):
    from nndsl.backends.torch.codegen import write_package
    sizes = {}
    for scheme in (None, "int8-dynamic", "int8-weight", "int4-weight"):
        c = nndsl.compile(GPT, params={"layers": 2}, quantize=scheme,
                          group=64 if scheme == "int4-weight" else None)
        _, w = write_package(c, tmp_path / str(scheme))
        sizes[scheme] = w.stat().st_size
    assert sizes["int8-dynamic"] <= 0.30 * sizes[None]
    assert sizes["int8-weight"] <= 0.30 * sizes[None]
    assert sizes["int4-weight"] <= 0.18 * sizes[None]


@pytest.mark.parametrize("scheme", ["int8-dynamic", "int4-weight", "f16"])
def test_generated_source_runs_the_quantized_model(scheme, tmp_path):
    from safetensors.torch import load_file

    from nndsl.backends.torch.codegen import write_package
    c = nndsl.compile(MLP, quantize=scheme, opt="O2")
    model_py, weights = write_package(c, tmp_path)
    spec = importlib.util.spec_from_file_location(f"generated_{scheme.replace('-', '_')}",
                                                  model_py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert "import nndsl" not in model_py.read_text() and "from nndsl" not in \
        model_py.read_text()
    model = mod.Mlp()
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    xs = c.example_inputs(batch=3)
    with torch.no_grad():
        got = model(**xs).float().numpy()
    np.testing.assert_allclose(got, _run(c, xs), rtol=1e-5, atol=1e-5)


def test_half_precision_keeps_norms_and_softmax_in_f32():
    c = nndsl.compile(GPT, params=GPT_SMALL, quantize="f16")
    by_op = {}
    for n in c.graph:
        by_op.setdefault(n.op, set()).add(n.type.dtype)
    assert by_op["layer_norm"] == {"f32"}
    assert by_op["linear"] == {"f16"}
    assert c.output_types["logits"].dtype == "f32"
    assert all(p.type.dtype == "f16" for p in c.graph.params() if p.type.rank == 2)


# ---- pruning ----

def _zero_removed(c, sd: dict) -> dict:
    """The dense weights with every removed channel zeroed where it leaves its layer: the
    producing weight rows and biases, and the batch-norm shift and mean that follow them (so
    the norm gives 0 there)."""
    out = {k: v.clone() for k, v in sd.items()}
    for p in c.graph.params():
        expr = p.attr.get("derive")
        take = derive.find(expr, ("take",))
        while take is not None:
            opts = dict(take[2])
            name = take[1][0] if isinstance(take[1][0], str) else None
            if opts["axis"] == 0 and name is not None:
                n = out[name].shape[0]
                removed = [i for i in range(n) if i not in set(opts["index"])]
                if name.endswith(("weight", "bias", "running_mean")) and \
                        not name.endswith("running_var"):
                    if not (name.endswith(".weight") and _is_bn(c, name)):
                        out[name][removed] = 0
            take = derive.find(take[1][0], ("take",)) if isinstance(take[1][0], tuple) else None
    return out


def _is_bn(c, name: str) -> bool:
    scope = name.rsplit(".", 1)[0]
    return any(n.op == "batch_norm" and n.name == scope for n in c.unoptimized)


PRUNE_CASES = [
    (CNN, {}),
    (MLP, {}),
    (RESNET, RESNET_SMALL),
    ("""
    model mix() {
        input x: f32[N, 3, 8, 8]
        a = x |> conv2d(8, 3, padding=1) as c1 |> batch_norm as bn1 |> relu
        d = a |> conv2d(8, 3, padding=1, groups=8) as dw |> batch_norm as bn2 |> relu
        e = x |> conv2d(8, 1) as c2 |> relu
        s = d + e
        t = concat([s, a], 1) |> conv2d(6, 3, padding=1) as c3 |> relu
        output y = t |> flatten |> linear(16) as fc1 |> relu |> linear(3) as fc2
    }""", {}),
    ("""
    model grouped() {
        input x: f32[N, 3, 8, 8]
        a = x |> conv2d(8, 3, padding=1) as c0 |> relu
            |> conv2d(8, 3, padding=1, groups=2) as g |> relu
        b = a |> conv2d(8, 3, padding=1) as c2 |> relu |> conv2d(6, 3, padding=1) as c3 |> relu
        output y = b |> flatten |> linear(3) as fc
    }""", {}),
    ("""
    model shared() {
        input x1: f32[N, 3, 8, 8]
        input x2: f32[N, 3, 8, 8]
        enc = conv2d(8, 3, padding=1)
        a = enc(x1) + (x1 |> conv2d(8, 3, padding=1) as side)
        b = enc(x2)
        t = concat([a, b], 1) |> conv2d(6, 3, padding=1) as c3 |> relu
        output y = t |> flatten |> linear(3) as fc
    }""", {}),
]


@pytest.mark.parametrize("opt", ["O1", "O2"])
@pytest.mark.parametrize("spec,params", PRUNE_CASES,
                         ids=["mnist_cnn", "mlp", "resnet", "mix", "grouped", "shared"])
def test_channel_pruning_equals_dense_with_channels_zeroed(spec, params, opt):
    if isinstance(spec, str):
        spec = textwrap.dedent(spec)
    dense = nndsl.compile(spec, params=params, opt="O0")
    sd = dense.to_torch(seed=3).state_dict()
    c = nndsl.compile(spec, params=params, opt=opt, prune="channels=0.5", weights=sd)
    verify(c.graph)
    assert c.param_count() < 0.8 * dense.param_count()
    assert c.flops() < 0.8 * dense.flops()
    xs = dense.example_inputs(batch=2)
    zeroed = _zero_removed(c, sd)
    want = _run(dense, xs, weights=zeroed)
    got = _run(c, xs)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(want).max()))
    o = _ort(c.to_onnx(), xs)
    np.testing.assert_allclose(o, got, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(got).max()))


def test_channel_groups_follow_residuals_and_depthwise():
    c = nndsl.compile(textwrap.dedent(PRUNE_CASES[3][0]), prune="channels=0.5", opt="O0")
    shapes = {p.name: tuple(p.type.shape) for p in c.graph.params()}
    # c1 feeds the residual-free concat and the depthwise conv; dw and c2 are joined by `+`
    assert shapes["c1.weight"] == (4, 3, 3, 3)
    assert shapes["dw.weight"] == (4, 1, 3, 3) and shapes["bn2.weight"] == (4,)
    assert shapes["c2.weight"] == (4, 3, 1, 1)
    assert shapes["c3.weight"] == (3, 8, 3, 3)           # concat of 4 + 4 channels
    assert shapes["fc1.weight"] == (8, 3 * 64)           # flatten: 3 channels × 8 × 8
    assert shapes["fc2.weight"] == (3, 8)                # the output layer stays whole
    dw = next(n for n in c.graph if n.name == "dw")
    assert dw.attr["groups"] == 4


def test_resnet_residual_channels_pruned_together():
    c = nndsl.compile(RESNET, params=RESNET_SMALL, prune="channels=0.5", opt="O0")
    shapes = {p.name: tuple(p.type.shape) for p in c.graph.params()}
    stem = [k for k in shapes if k.startswith("stem") and k.endswith("weight") and
            len(shapes[k]) == 4][0]
    # the stem's channels run through the first stage's residual adds: one group
    assert shapes[stem][0] == shapes["layers.0.b0.conv2.weight"][0] == 4
    assert shapes["fc.weight"] == (10, 32)


@pytest.mark.parametrize("prune", ["magnitude=0.8", "2:4"])
def test_masks_equal_dense_with_weights_zeroed(prune):
    dense = nndsl.compile(CNN, opt="O0")
    sd = dense.to_torch(seed=1).state_dict()
    c = nndsl.compile(CNN, prune=prune)
    state = c.to_torch(weights=sd).state_dict()
    zeroed = {}
    for k, v in sd.items():
        w = v.numpy()
        if k.endswith("weight") and w.ndim >= 2 and (prune != "2:4" or w.ndim == 2):
            w = derive.magnitude_mask(w, sparsity=0.8) if prune.startswith("m") else \
                derive.n_m_mask(w, n=2, m=4)
            assert (state[k].numpy() == w).all()
        zeroed[k] = torch.from_numpy(np.ascontiguousarray(w))
    xs = dense.example_inputs(batch=2)
    np.testing.assert_allclose(_run(c, xs, weights=sd), _run(dense, xs, weights=zeroed),
                               rtol=1e-5, atol=1e-6)
    assert c.sparsity() == pytest.approx(0.8 if prune.startswith("m") else 0.5, abs=0.01)


COMPRESSIONS = [Compression(quantize=s) for s in BOUND] + [Compression(qat="int8"),
    Compression(quantize="int4-weight", group=16), Compression(prune="magnitude=0.5"),
    Compression(prune="2:4"), Compression(prune="channels=0.5")]


@pytest.mark.parametrize("comp", COMPRESSIONS, ids=lambda c: c.describe())
def test_every_compression_pass_is_idempotent(comp):
    c = nndsl.compile(MLP, quantize=comp.quantize, group=comp.group, prune=comp.prune,
                      qat=comp.qat)
    weights = nndsl.api._spec_arrays(c.graph, None)
    for p in comp.before(lambda: weights) + comp.after(lambda: weights):
        again, changed = run_pass(p.fn, c.graph)
        assert not changed, p.name
        verify(again)


def test_int8_static_pass_is_idempotent():
    c = nndsl.compile(CNN, opt="O2", quantize="int8-static", calibrate="digits",
                      calibrate_samples=8)
    p, = c.compression.static({})
    again, changed = run_pass(p.fn, c.graph)
    assert not changed and again is c.graph


def test_compression_shows_in_inspect_and_diff(capsys):
    assert main(["inspect", str(MLP), "--quantize", "int4-weight", "--group", "16"]) == 0
    out = capsys.readouterr().out
    assert "dequantize" in out and "compression: quantize int4-weight (group 16)" in out
    assert main(["inspect", str(MLP), "--quantize", "int8-dynamic", "--ir"]) == 0
    assert "i8[256, 784] = param() {derive=quantize_weight(layers.0.fc.weight" in \
        capsys.readouterr().out
    assert main(["inspect", str(CNN), "--prune", "channels=0.5", "--diff", "O0", "O1"]) == 0
    out = capsys.readouterr().out
    assert "prune_channels:" in out


# ---- bad options ----

@pytest.mark.parametrize("argv,code", [
    (["--quantize", "int3"], "E0254"),
    (["--quantize", "int8-dynamic", "--group", "64"], "E0254"),
    (["--group", "64"], "E0254"),
    (["--quantize", "int4-weight", "--group", "48"], "E0251"),
    (["--prune", "magnitude=1.5"], "E0255"),
    (["--prune", "channels=0"], "E0255"),
    (["--prune", "4:2"], "E0255"),
    (["--prune", "rows=0.5"], "E0255"),
    (["--prune", "heads=0.5"], "E0239"),          # the mlp has no attention
    (["--quantize", "int8-weight", "--keep", "nowhere"], "E0256"),
    (["--quantize", "int8-dynamic", "--keep", "layers", "--keep", "head"], "E0238"),
    (["--quantize", "int8-static"], "E0237"),
    (["--quantize", "int8-weight", "--calibrate", "digits"], "E0237"),
    (["--quantize", "int8-static", "--calibrate", "nosuch"], "E1214"),
])
def test_bad_options_are_located_errors_and_write_nothing(argv, code, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    rc = main(["compile", str(MLP), "--to", "onnx", "-o", str(out)] + argv)
    err = capsys.readouterr().err
    assert rc == 1 and f"error[{code}]" in err and "Traceback" not in err
    assert not out.exists()


def test_quantized_module_is_for_inference():
    m = nndsl.compile(MLP, quantize="int8-dynamic").to_torch()
    assert not m.training
    with pytest.raises(nndsl.errors.NndslError, match="inference"):
        m.train()


# ---- static int8 ----

def _digits(c, rows=slice(0, 16)):
    from nndsl.train import data as data_mod
    data = data_mod.load({"name": "digits"}, c.input_types, {}, 0, None)
    data_mod.standardize(data, torch.arange(data.n))
    return {k: data.arrays[k][rows] for k in c.input_types}


@pytest.mark.parametrize("observer", ["minmax", "moving_average", "percentile"])
@pytest.mark.parametrize("spec,params", [(CNN, {}), (RESNET, RESNET_SMALL)],
                         ids=["mnist_cnn", "resnet"])
def test_int8_static_close_to_float_on_data_like_its_calibration(spec, params, observer):
    f = nndsl.compile(spec, params=params, opt="O2")
    c = nndsl.compile(spec, params=params, opt="O2", quantize="int8-static",
                      calibrate="digits", calibrate_samples=64, observer=observer)
    ops = {n.op for n in c.graph}
    assert {"quantize", "qconv2d", "qlinear", "dequantize_act"} <= ops
    assert "conv2d" not in ops and "linear" not in ops
    if spec == RESNET:
        assert "qadd" in ops and "relu" not in ops     # residual adds with their ReLU
    xs = _digits(f, slice(1000, 1032))
    ref = _run(f, xs)
    y = _run(c, xs)
    scale = np.abs(ref).max()
    assert np.abs(y - ref).max() <= 0.05 * scale
    o = _ort(c.to_onnx(), xs)
    assert np.abs(o - y).max() <= 0.05 * scale


RELU6_CNN = """model relu6_cnn() {
    input image: f32[N, 1, 28, 28]
    x = image |> conv2d(8, 3) as c1
    x = minimum(maximum(x, 0.0), 6.0)
    x = x |> conv2d(16, 3, stride=2) as c2 |> clamp(min=0.0, max=6.0)
    x = maximum(x |> conv2d(16, 3, padding=1) as c3, 0.0) + x
    output logits = x |> max_pool2d(2) |> flatten |> linear(10) as fc
}
"""


def test_int8_static_keeps_relu6_and_clamps_in_u8():
    """ReLU6 written as min(max(x, 0), 6), or as clamp, runs on the u8 grid (qclamp); the
    layer before it is quantized to the clamp's range. Compared with the float model on data
    like the calibration's, in torch and onnxruntime."""
    f = nndsl.compile(source=RELU6_CNN, opt="O2")
    c = nndsl.compile(source=RELU6_CNN, opt="O2", quantize="int8-static", calibrate="digits",
                      calibrate_samples=64)
    ops = [n.op for n in c.graph]
    # O2 made c1's minimum(maximum(x, 0), 6) one clamp and c3's maximum(x, 0) its relu: two
    # clamps are left to run on the u8 grid, c3 runs its relu inside the quantized conv
    assert ops.count("qclamp") == 2 and ops.count("quantize") == 1 and "qadd" in ops
    assert next(n for n in c.graph if n.op == "qconv2d" and
                n.name.startswith("c3")).attr["act"] == "relu"
    assert "maximum" not in ops and "minimum" not in ops and "clamp" not in ops
    c1 = next(n for n in c.graph if n.op == "qconv2d" and n.name.startswith("c1"))
    assert c1.attr["out_zp"] == 0 and c1.attr["out_scale"] <= 6.0 / 127 + 1e-9   # [0, 6]
    xs = _digits(f, slice(1000, 1032))
    ref = _run(f, xs)
    y = _run(c, xs)
    scale = np.abs(ref).max()
    assert np.abs(y - ref).max() <= 0.05 * scale
    assert np.abs(_ort(c.to_onnx(), xs) - y).max() <= 0.01 * scale


def test_int8_static_qclamp_in_generated_source(tmp_path):
    from safetensors.torch import load_file

    from nndsl.backends.torch.codegen import write_package
    c = nndsl.compile(source=RELU6_CNN, opt="O2", quantize="int8-static", calibrate="digits",
                      calibrate_samples=16)
    model_py, weights = write_package(c, tmp_path)
    spec = importlib.util.spec_from_file_location("generated_relu6", model_py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.Relu6Cnn()
    model.load_state_dict(load_file(str(weights)))
    xs = _digits(c, slice(0, 4))
    with torch.no_grad():
        got = model.eval()(**xs).numpy()
    np.testing.assert_allclose(got, _run(c, xs), rtol=1e-5, atol=1e-5)


def test_int8_static_bias_that_cannot_fit_int32_is_an_error_not_a_wrong_answer():
    """Inputs that are nearly zero on the calibration data give a tiny scale; the bias at
    s_x · s_w then overflows int32. Clipping it would compute garbage silently."""
    src = ("model m() {\n    input x: f32[N, 784]\n"
           "    output y = x * 1e-13 |> linear(10) as fc |> relu |> linear(10) as head\n}\n")
    c = nndsl.compile(source=src, opt="O2", quantize="int8-static", calibrate="digits",
                      calibrate_samples=16)
    with pytest.raises(nndsl.errors.NndslError) as e:
        c.to_torch()
    assert e.value.code == "E1006" and "`fc`" in str(e.value) and "--keep fc" in str(e.value)
    kept = nndsl.compile(source=src, opt="O2", quantize="int8-static", calibrate="digits",
                         calibrate_samples=16, keep=("fc",))
    f = nndsl.compile(source=src, opt="O2")
    xs = _digits(f, slice(0, 8))
    ref = _run(f, xs)
    assert np.abs(_run(kept, xs) - ref).max() <= 0.05 * np.abs(ref).max()


def test_int8_static_calibration_ranges_are_what_the_data_held():
    from nndsl.backends.torch.calibrate import calibrate
    from nndsl.passes.quantize_static import qparams
    f = nndsl.compile(CNN, opt="O0")
    xs = _digits(f, slice(0, 40))
    state = f.to_torch().state_dict()
    batches = [{"image": xs["image"][:20]}, {"image": xs["image"][20:]}]
    r = calibrate(f.graph, state, batches, "minmax")
    img = xs["image"]
    assert r[("image", 0)] == pytest.approx((float(img.min()), float(img.max())))
    s, z = qparams(-1.0, 3.0)
    assert s == pytest.approx(4.0 / 127) and z == round(127 / 4)
    assert qparams(0.5, 2.0)[1] == 0          # the range always holds zero


def test_int8_static_generated_source(tmp_path):
    from safetensors.torch import load_file

    from nndsl.backends.torch.codegen import write_package
    c = nndsl.compile(RESNET, params=RESNET_SMALL, opt="O2", quantize="int8-static",
                      calibrate="digits", calibrate_samples=16)
    model_py, weights = write_package(c, tmp_path)
    spec = importlib.util.spec_from_file_location("generated_static", model_py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.Resnet18()
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    xs = _digits(c, slice(0, 4))
    with torch.no_grad():
        got = model(**xs).numpy()
    np.testing.assert_allclose(got, _run(c, xs), rtol=1e-5, atol=1e-5)


# ---- the optimize section ----

OPT_SPEC = """
model m() {
    input x: f32[N, 16]
    h = x |> linear(32) as fc1 |> relu
    output y = h |> linear(4) as head
}

optimize m {
    quantize = "int8-dynamic"
    keep = ["head"]
}
"""


def test_optimize_section_sets_defaults_and_options_override_it():
    c = nndsl.compile(OPT_SPEC)
    ops = {n.name: n.op for n in c.graph}
    assert ops["fc1.int8"] == "linear_int8" and ops["head"] == "linear"
    c2 = nndsl.compile(OPT_SPEC, quantize="int8-weight")
    assert "dequantize" in {n.op for n in c2.graph} and "head" in {n.name for n in c2.graph}


@pytest.mark.parametrize("entry,code,col", [
    ('quantize = "int9"', "E0254", 5), ('quantise = "int8-dynamic"', "E0234", 5),
    ('keep = "head"\n    quantize = 3', "E0234", 16), ('keep = ["nowhere"]', "E0256", 5)])
def test_optimize_section_errors_point_at_the_entry(entry, code, col, tmp_path):
    path = tmp_path / "m.nn"
    path.write_text(OPT_SPEC.split("optimize")[0] + "optimize m {\n    " + entry + "\n}\n")
    with pytest.raises(nndsl.errors.NndslError) as e:
        nndsl.compile(str(path))
    assert e.value.code == code and e.value.span is not None
    assert e.value.span.col == col and e.value.span.file == str(path)


# ---- training: QAT and pruning while training ----

TRAIN_SPEC = """
model tiny() {
    input x: f32[N, 4]
    h = x |> linear(32) as fc1 |> relu
    output logits = h |> linear(3) as fc2
}

train tiny {
    target label: i64[N]
    data = iris
    loss = cross_entropy(logits, label)
    optimizer = adam(lr=1e-2)
    metrics = [accuracy]
    epochs = 6
    batch = 16
    seed = 0
}
"""


def test_qat_trains_and_converts_to_int8_weight_exactly(tmp_path):
    from safetensors.torch import load_file

    from nndsl.train.run import run_training
    spec = tmp_path / "tiny.nn"
    spec.write_text(TRAIN_SPEC)
    res = run_training(str(spec), out=tmp_path / "run", quiet=True, qat="int8")
    assert res.best is not None and res.best["val_accuracy"] >= 0.8
    sd = load_file(str(tmp_path / "run/checkpoints/best.safetensors"))
    assert set(sd) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}  # the spec's names
    qat = nndsl.compile(str(spec), qat="int8").to_torch(weights=sd).eval()
    real = nndsl.compile(str(spec), quantize="int8-weight").to_torch(weights=sd)
    x = torch.randn(8, 4)
    with torch.no_grad():
        torch.testing.assert_close(real(x=x), qat(x=x), rtol=0, atol=1e-6)


def test_gradual_magnitude_pruning_reaches_its_sparsity(tmp_path):
    from safetensors.torch import load_file

    from nndsl.train.run import run_training
    from nndsl.train.sparsity import target_sparsity
    spec = tmp_path / "tiny.nn"
    spec.write_text(TRAIN_SPEC)
    res = run_training(str(spec), out=tmp_path / "run", quiet=True, prune="magnitude=0.75")
    assert res.best is not None
    sd = load_file(str(tmp_path / "run/checkpoints/last.safetensors"))
    best = load_file(str(tmp_path / "run/checkpoints/best.safetensors"))
    for k in ("fc1.weight", "fc2.weight"):
        assert float((sd[k] == 0).float().mean()) == pytest.approx(0.75, abs=0.02)
        # the best checkpoint is picked among the pruned epochs only
        assert float((best[k] == 0).float().mean()) == pytest.approx(0.75, abs=0.02)
    assert float((sd["fc1.bias"] == 0).float().mean()) < 0.5      # biases are not pruned
    # the cubic schedule: dense for the first 30%, S from 70% on, rising fastest early
    assert target_sparsity(0.8, 0, 100) == 0.0 == target_sparsity(0.8, 29, 100)
    assert target_sparsity(0.8, 70, 100) == 0.8 == target_sparsity(0.8, 99, 100)
    assert target_sparsity(0.8, 40, 100) == pytest.approx(0.8 * (1 - 0.75 ** 3))
    assert target_sparsity(0.8, 40, 100) > 0.8 * 0.5
    # compiling the checkpoint with the same pruning keeps exactly its zeros
    c = nndsl.compile(str(spec), prune="magnitude=0.75", weights=sd)
    assert torch.equal(c.to_torch().state_dict()["fc1.weight"], sd["fc1.weight"])


def test_training_options_are_checked(tmp_path, capsys):
    spec = tmp_path / "tiny.nn"
    spec.write_text(TRAIN_SPEC)
    for argv, code in ((["--qat", "f16"], "E0235"), (["--prune", "channels=0.5"], "E1230"),
                       (["--prune", "magnitude=2"], "E0255")):
        rc = main(["train", str(spec), "--out", str(tmp_path / "r"), "--quiet"] + argv)
        assert rc == 1 and f"error[{code}]" in capsys.readouterr().err
        assert not (tmp_path / "r").exists()


def test_nothing_to_do_is_an_error_that_says_why_per_layer():
    with pytest.raises(nndsl.errors.NndslError) as e:
        nndsl.compile(CNN, quantize="int8-dynamic", keep=("fc1", "fc2"))
    msg = e.value.message
    assert e.value.code == "E0238"
    assert "conv1 (conv2d): int8-dynamic does not quantize conv2d" in msg
    assert "fc1 (linear): kept in float (keep)" in msg
    with pytest.raises(nndsl.errors.NndslError) as e:
        nndsl.compile(CNN, prune="channels=0.5", prune_scopes=("fc2",))
    assert e.value.code == "E0239" and "outside the pruned scopes" in e.value.message


# ---- golden IR of compressed graphs (refresh with NNDSL_UPDATE_GOLDEN=1) ----

GOLDEN = Path(__file__).parent / "golden" / "compress"
GOLDEN_CASES = {
    "mlp.int8-dynamic.O2": (MLP, {"opt": "O2", "quantize": "int8-dynamic"}),
    "mlp.int4-weight": (MLP, {"quantize": "int4-weight", "group": 16}),
    "mlp.f16": (MLP, {"quantize": "f16"}),
    "mlp.qat-int8": (MLP, {"qat": "int8"}),
    "mnist_cnn.2-4": (CNN, {"prune": "2:4"}),
    "mix.channels": (textwrap.dedent(PRUNE_CASES[3][0]), {"prune": "channels=0.5",
                                                          "opt": "O0"}),
}


@pytest.mark.parametrize("key", list(GOLDEN_CASES))
def test_golden_compressed_ir(key):
    import os
    spec, options = GOLDEN_CASES[key]
    text = nndsl.compile(spec, **options).ir() + "\n"
    path = GOLDEN / f"{key}.ir"
    if os.environ.get("NNDSL_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}; run with NNDSL_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"the IR changed; new text:\n{text}"


def test_global_magnitude_ranks_all_weights_together():
    dense = nndsl.compile(CNN, opt="O0")
    sd = dense.to_torch(seed=2).state_dict()
    c = nndsl.compile(CNN, prune="global=0.7", weights=sd)
    state = c.to_torch().state_dict()
    names = [k for k, v in sd.items() if k.endswith("weight") and v.dim() >= 2]
    flat = np.concatenate([np.abs(sd[k].numpy()).reshape(-1) for k in names])
    thr = np.sort(flat)[int(round(0.7 * flat.size))]
    for k in names:
        kept = state[k].numpy() != 0
        np.testing.assert_array_equal(kept, np.abs(sd[k].numpy()) >= thr)
    assert c.sparsity() == pytest.approx(0.7, abs=1e-3)
    # layers keep different fractions: the ranking is global
    fracs = {k: float((state[k] == 0).float().mean()) for k in names}
    assert max(fracs.values()) - min(fracs.values()) > 0.2


def test_gradual_global_pruning_while_training(tmp_path):
    from safetensors.torch import load_file

    from nndsl.train.run import run_training
    spec = tmp_path / "tiny.nn"
    spec.write_text(TRAIN_SPEC)
    run_training(str(spec), out=tmp_path / "run", quiet=True, prune="global=0.6")
    sd = load_file(str(tmp_path / "run/checkpoints/last.safetensors"))
    ws = [sd["fc1.weight"], sd["fc2.weight"]]
    zeros = sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)
    assert zeros == pytest.approx(0.6, abs=0.01)


def test_pooling_over_features_keeps_the_linear_whole():
    """Pooling mixes the positions of every axis but the channels: a linear's features that
    are pooled are not followed (the pruned readers would read the wrong columns)."""
    src = textwrap.dedent("""
    model m() {
        input x: f32[N, 6, 4]
        output y = x |> linear(8) as fc1 |> relu |> max_pool1d(2) |> linear(3) as fc2
    }""")
    with pytest.raises(nndsl.errors.NndslError) as e:
        nndsl.compile(src, prune="channels=0.5")
    assert e.value.code == "E0239" and "read by max_pool1d" in e.value.message


def test_compression_leaves_scan_bodies_alone():
    spec = ROOT / "specs/sequence/seq2seq_bahdanau.nn"
    f = nndsl.compile(spec)
    xs = f.example_inputs(batch=2)
    ref = _run(f, xs)
    for kw in ({"quantize": "int8-dynamic"}, {"quantize": "f16"}, {"prune": "magnitude=0.5"}):
        c = nndsl.compile(spec, **kw)
        scan = next(n for n in c.graph if n.op == "scan")
        assert all(n.type.dtype != "f16" for n in scan.attr["body"].graph)
        y = _run(c, xs)
        assert y.shape == ref.shape and np.isfinite(y).all()


def test_disabled_compression_pass_is_skipped():
    c = nndsl.compile(MLP, quantize="int8-dynamic", disable=("quantize_int8_dynamic",))
    assert "linear_int8" not in {n.op for n in c.graph}


@pytest.mark.parametrize("scheme", ["int8-dynamic", "int8-weight"])
@pytest.mark.parametrize("spec,params", [("specs/sequence/lstm_sentiment.nn", {"vocab": 500}),
                                         ("specs/sequence/gru_tagger.nn", {})],
                         ids=["lstm", "gru"])
def test_recurrent_weights_in_int8(spec, params, scheme, tmp_path):
    from safetensors.torch import load_file

    from nndsl.backends.torch.codegen import write_package
    f = nndsl.compile(ROOT / spec, params=params)
    c = nndsl.compile(ROOT / spec, params=params, quantize=scheme)
    rec = [n for n in c.graph if n.op in ("lstm", "gru")]
    assert rec and all(c.graph.node(v.node).op == "dequantize" for n in rec
                       for v in n.inputs[3 if n.op == "lstm" else 2:]
                       if v is not None and c.graph.type_of(v).rank == 2)
    assert c.size_bytes() <= 0.3 * f.size_bytes()
    xs = f.example_inputs(batch=2)
    ref, y = _run(f, xs), _run(c, xs)
    scale = np.abs(ref).max()
    assert np.abs(y - ref).max() <= BOUND[scheme] * scale
    assert np.abs(_ort(c.to_onnx(), xs) - y).max() <= BOUND[scheme] * scale
    model_py, weights = write_package(c, tmp_path)
    mspec = importlib.util.spec_from_file_location(f"generated_rec_{scheme[5:]}", model_py)
    mod = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(mod)
    cls = next(v for k, v in vars(mod).items() if isinstance(v, type) and
               issubclass(v, torch.nn.Module) and k.lower() == c.name.replace("_", ""))
    model = cls()
    model.load_state_dict(load_file(str(weights)))
    with torch.no_grad():
        got = model.eval()(**xs)
    np.testing.assert_allclose(got.numpy(), y, rtol=1e-5, atol=1e-5)


# ---- every scheme on every zoo model it applies to ----

# Largest |quantized - float| / max |float| over the zoo (reduced sizes, untrained weights, so
# int4's groups of random values are the worst case), and torch against onnxruntime.
# Measured worst cases on an AVX2 CPU: 3.4%, 1.3%, 32%, 0.4%, 3.3% against float; 4.6%, 1.2%,
# 1e-6, 2.3% against onnxruntime. The bounds leave room for other CPUs' kernels (AVX-512,
# VNNI) and still catch a wrong scale, packing or layout (errors of order 100%).
ZOO_BOUND = {"int8-dynamic": 0.06, "int8-weight": 0.03, "int4-weight": 0.5, "f16": 0.01,
             "bf16": 0.06}
ZOO_ORT_BOUND = {"int8-dynamic": 0.08, "int8-weight": 0.03, "int4-weight": 1e-3, "f16": 0.04}


@pytest.mark.parametrize("scheme", list(ZOO_BOUND))
def test_scheme_on_the_zoo(scheme):
    from zoo import _entries
    applied = 0
    for z in _entries():
        base = z.compile()
        xs = base.example_inputs(batch=2)
        try:
            c = z.compile(quantize=scheme)
        except nndsl.errors.NndslError as e:
            assert e.code == "E0238", (z.key, e.message)     # nothing it applies to
            continue
        applied += 1
        with torch.no_grad():
            want = base.to_torch().eval()(**xs)
            got = c.to_torch()(**xs)
        want = want if isinstance(want, tuple) else (want,)
        got = got if isinstance(got, tuple) else (got,)
        outs = None
        if scheme != "bf16":
            sess = ort.InferenceSession(c.to_onnx().SerializeToString(),
                                        providers=["CPUExecutionProvider"])
            outs = sess.run(None, {i.name: xs[i.name].numpy() for i in sess.get_inputs()})
        for i, (a, b) in enumerate(zip(want, got)):
            if not a.is_floating_point():
                continue
            a, b = a.float().numpy(), b.float().numpy()
            scale = max(float(np.abs(a).max()), 1e-12)
            assert np.abs(b - a).max() <= ZOO_BOUND[scheme] * scale, (z.key, i)
            if outs is not None:
                assert np.abs(outs[i] - b).max() <= ZOO_ORT_BOUND[scheme] * scale, (z.key, i)
    assert applied >= 45         # of the 63 zoo models



# ---- attention heads ----

def test_head_pruning_equals_dense_with_those_heads_silenced():
    """Removing a head is the dense model with the head's value rows zeroed (its output is then
    zero, so the output projection sees nothing from it)."""
    dense = nndsl.compile(GPT, params=GPT_SMALL)
    sd = dense.to_torch(seed=4).state_dict()
    c = nndsl.compile(GPT, params=GPT_SMALL, prune="heads=0.5", weights=sd)
    verify(c.graph)
    att = [n for n in c.graph if n.op == "attention"]
    assert len(att) == 2 and all(n.type.shape[1] == 4 for n in att)      # 8 heads -> 4
    assert c.param_count() == dense.param_count() - 2 * 4 * 256 * 128 - 2 * 3 * 128
    width = 256
    silenced = {k: v.clone() for k, v in sd.items()}
    for p in c.graph.params():
        take = derive.find(p.attr.get("derive"), ("take",))
        if take is None or not p.name.endswith("c_attn.weight"):
            continue
        kept = set(dict(take[2])["index"])
        gone = [r for r in range(2 * width, 3 * width) if r not in kept]     # value rows
        assert len(gone) == width // 2
        base = p.name[:-len("weight")]
        silenced[base + "weight"][gone] = 0
        silenced[base + "bias"][gone] = 0
    xs = dense.example_inputs(batch=2)
    want = _run(dense, xs, weights=silenced)
    got = _run(c, xs)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    np.testing.assert_allclose(_ort(c.to_onnx(), xs), got, rtol=1e-4,
                               atol=1e-4 * np.abs(got).max())


def test_head_pruning_needs_the_fused_attention_and_is_idempotent():
    with pytest.raises(nndsl.errors.NndslError) as e:
        nndsl.compile(GPT, params=GPT_SMALL, opt="O0", prune="heads=0.5")
    assert e.value.code == "E0239" and "-O1" in e.value.hint
    c = nndsl.compile(GPT, params=GPT_SMALL, prune="heads=0.25", quantize="int8-dynamic")
    assert all(n.type.shape[1] == 6 for n in c.graph if n.op == "attention")
    assert "linear_int8" in {n.op for n in c.graph}
    weights = nndsl.api._spec_arrays(c.graph, None)
    for p in Compression(prune="heads=0.25").after(lambda: weights):
        again, changed = run_pass(p.fn, c.graph)
        assert not changed
