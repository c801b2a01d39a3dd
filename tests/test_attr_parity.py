"""Every op attribute honoured alike by the torch module, onnxruntime and the generated source.

A table of small specs, each using non-default values of some op's attributes, with inputs in
the region where the attribute changes the result (softplus near its threshold, pooling windows
that hang over the padding, ...). Each runs in the torch module and in onnxruntime on the same
inputs, and the two must agree: floats to rtol 1e-5 and atol 1e-5 · max|value| (so the check
holds on any CPU's kernels), integers and booleans exactly. The generated PyTorch source runs on
the same inputs too. Attribute values ONNX opset 21 cannot express are refused at export.
"""

from __future__ import annotations

import importlib.util
import itertools
import textwrap

import numpy as np
import pytest
import torch

import nndsl
from nndsl.backends.torch.codegen import generate_source
from nndsl.errors import NndslError

from test_graph_ops import run_both

RNG = np.random.default_rng(11)
_counter = itertools.count()


def f32(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def grid(lo, hi, *shape):
    """Evenly spaced floats over [lo, hi] (both ends and the middle region covered)."""
    n = int(np.prod(shape))
    return np.linspace(lo, hi, n, dtype=np.float32).reshape(shape)


def ints(lo, hi, *shape, dtype=np.int64):
    return RNG.integers(lo, hi, shape).astype(dtype)


def no_ties(*shape):
    n = int(np.prod(shape))
    return (RNG.permutation(n).reshape(shape) * 0.37 - 3.0).astype(np.float32)


def agree(got, want, what):
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    if want.dtype.kind in "biu":
        assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} vs {want.dtype}"
        assert np.array_equal(got, want), f"{what}: {got} vs {want}"
    else:
        scale = max(1.0, float(np.abs(want[np.isfinite(want)]).max(initial=0.0)))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, equal_nan=True,
                                   err_msg=what)


def spec(inputs: str, body: str) -> str:
    lines = [f"    input {d}" for d in inputs.split(";") if d.strip()]
    outs = [f"    {ln.strip()}" for ln in textwrap.dedent(body).strip().splitlines()]
    return "model m() {\n" + "\n".join(lines + outs) + "\n}\n"


ATTENTION_INPUTS = {
    "q": f32(2, 4, 8), "k": f32(2, 6, 8), "v": f32(2, 6, 3),
    "pad": np.array([[[True, False, False, True, False, True]],
                     [[False, True, True, True, True, False]]]),
    "keep": np.tril(np.ones((4, 6), bool), 1)[None].repeat(2, 0),
    "bias": f32(2, 4, 6, scale=2.0)}

# (id, inputs declared, body, input arrays)
CASES = [
    # ---- elementwise activations
    ("softplus_threshold", "x: f32[4, 25]", """
        output a = softplus(x, threshold=-1.0)
        output b = softplus(x, beta=2.0, threshold=1.0)
        output c = softplus(x, beta=0.5, threshold=0.25)
        output d = softplus(x, beta=3.0)""", {"x": grid(-4, 4, 4, 25)}),
    ("softplus_f64", "x: f64[4, 25]", """
        output a = softplus(x)
        output b = softplus(x, beta=2.0, threshold=1.0)
        output c = softplus(x * 10.0, beta=0.5)""", {"x": grid(-4, 4, 4, 25).astype(np.float64)}),
    ("leaky_relu_slope", "x: f32[3, 9]", """
        output a = leaky_relu(x, slope=0.2)
        output b = leaky_relu(x, slope=-0.5)
        output c = leaky_relu(x, slope=2.0)""", {"x": grid(-3, 3, 3, 9)}),
    ("elu_alpha", "x: f32[3, 9]", """
        output a = elu(x, alpha=0.3)
        output b = elu(x, alpha=-1.5)
        output c = elu(x, alpha=0.0)""", {"x": grid(-3, 3, 3, 9)}),
    ("gelu_tanh", "x: f32[3, 9]", """
        output a = gelu(x, approximate="tanh")
        output b = gelu(x)""", {"x": grid(-4, 4, 3, 9)}),
    ("clamp_float", "x: f32[3, 9]", """
        output a = clamp(x, min=-0.5)
        output b = clamp(x, max=0.25)
        output c = clamp(x, min=-1.0, max=1.5)""", {"x": grid(-3, 3, 3, 9)}),
    ("clamp_int", "x: i64[3, 9]; y: i32[3, 9]", """
        output a = clamp(x, min=-2, max=3)
        output b = clamp(y, min=-1, max=4)
        output c = clamp(x, min=0)""",
     {"x": ints(-6, 7, 3, 9), "y": ints(-6, 7, 3, 9, dtype=np.int32)}),
    ("masked_fill_tri", "x: f32[2, 5, 5]; m: bool[2, 5, 5]", """
        output a = masked_fill(x, m, -2.5)
        output b = tril(x, k=1)
        output c = triu(x, k=-2)
        output d = tril(x, k=-1)""",
     {"x": f32(2, 5, 5), "m": RNG.random((2, 5, 5)) > 0.5}),
    ("fill_values_by_dtype", "k: i64[3, 4]; m: bool[3, 4]; b: bool[3, 4]", """
        output a = masked_fill(k, m, -2.5)
        output c = masked_fill(b, m, 1.0)
        output d = masked_fill(b, m, 0.0)
        output e = where(m, b, not b)
        output f = pad(k, [1, 1], value=7.5)
        output g = pad(b, [1, 1], value=1.0)""",
     {"k": ints(-4, 4, 3, 4), "m": RNG.random((3, 4)) > 0.5, "b": RNG.random((3, 4)) > 0.5}),
    # ---- convolution
    ("conv2d_attrs", "x: f32[2, 4, 9, 8]", """
        output a = conv2d(x, 6, 3, stride=2, padding=1, dilation=2, groups=2)
        output b = conv2d(x, 4, [3, 2], stride=[1, 2], padding=[2, 0], groups=4, bias=false)""",
     {"x": f32(2, 4, 9, 8)}),
    ("conv_same_even_kernel", "x: f32[2, 3, 9, 8]", """
        output a = conv2d(x, 4, 4, padding="same")
        output b = conv2d(x, 4, [2, 5], padding="same", dilation=[3, 2])
        output c = conv2d(x, 3, 4, padding="same", dilation=2, groups=3)""",
     {"x": f32(2, 3, 9, 8)}),
    ("conv1d_conv3d", "x: f32[2, 4, 11]; y: f32[1, 2, 5, 6, 7]", """
        output a = conv1d(x, 2, 4, padding="same", dilation=3)
        output b = conv1d(x, 4, 3, stride=3, padding=2, groups=2)
        output c = conv3d(y, 2, [2, 3, 2], stride=[1, 2, 2], padding=[1, 0, 1], dilation=[2, 1, 1])
        output d = conv3d(y, 2, 2, padding="same")""",
     {"x": f32(2, 4, 11), "y": f32(1, 2, 5, 6, 7)}),
    ("conv_transpose2d_attrs", "x: f32[2, 4, 5, 6]", """
        output a = conv_transpose2d(x, 6, 3, stride=2, padding=1, output_padding=1)
        output b = conv_transpose2d(x, 2, [3, 2], stride=[3, 2], padding=[2, 0], output_padding=[1, 0], dilation=[2, 1], groups=2)
        output c = conv_transpose2d(x, 4, 2, stride=2, dilation=3, output_padding=1, bias=false)""",
     {"x": f32(2, 4, 5, 6)}),
    # ---- pooling
    ("max_pool_attrs", "x: f32[2, 3, 9, 10]; y: f32[2, 3, 11]", """
        output a = max_pool2d(x, 3, stride=2, padding=1, ceil_mode=true)
        output b = max_pool2d(x, [2, 3], stride=[2, 2], dilation=[2, 1], ceil_mode=true)
        output c = max_pool2d(x, 3, stride=1, padding=1, dilation=2)
        output d = max_pool1d(y, 4, stride=3, padding=2, ceil_mode=true)
        output e = max_pool1d(y, 2, dilation=3)""",
     {"x": no_ties(2, 3, 9, 10), "y": no_ties(2, 3, 11)}),
    ("avg_pool_pad", "x: f32[2, 3, 9, 10]; y: f32[2, 3, 11]", """
        output a = avg_pool2d(x, 3, stride=2, padding=1)
        output b = avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=false)
        output c = avg_pool1d(y, 4, stride=3, padding=2, count_include_pad=false)
        output d = avg_pool1d(y, 3, stride=2, padding=1)""",
     {"x": f32(2, 3, 9, 10) + 3.0, "y": f32(2, 3, 11) + 3.0}),
    ("avg_pool_ceil", "x: f32[2, 3, 9, 10]; y: f32[2, 3, 11]", """
        output a = avg_pool2d(x, 2, stride=2, ceil_mode=true)
        output b = avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=true, count_include_pad=false)
        output c = avg_pool1d(y, 3, stride=2, ceil_mode=true)
        output d = avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=true)
        output e = avg_pool1d(y, 4, stride=3, padding=1, ceil_mode=true)""",
     {"x": f32(2, 3, 9, 10) + 3.0, "y": f32(2, 3, 11) + 3.0}),
    ("adaptive_avg_pool", "x: f32[2, 3, 8, 6]; y: f32[2, 3, 12]", """
        output a = adaptive_avg_pool2d(x, [4, 3])
        output b = adaptive_avg_pool1d(y, 3)""", {"x": f32(2, 3, 8, 6), "y": f32(2, 3, 12)}),
    # ---- normalization
    ("batch_norm_attrs", "x: f32[3, 4, 5]", """
        output a = batch_norm(x, eps=0.5, momentum=0.3)
        output b = batch_norm(x, eps=2.0, affine=false)""", {"x": f32(3, 4, 5)}),
    ("layer_norm_attrs", "x: f32[2, 3, 4, 5]", """
        output a = layer_norm(x, eps=0.5)
        output b = layer_norm(x, shape=[4, 5], eps=0.1, affine=false)
        output c = layer_norm(x, shape=[3, 4, 5], bias=false)
        output d = layer_norm(x, eps=1.0, bias=false)""", {"x": f32(2, 3, 4, 5)}),
    ("group_norm_attrs", "x: f32[2, 6, 3, 2]; y: f32[2, 4, 5]", """
        output a = group_norm(x, 3, eps=0.5)
        output b = group_norm(x, 2, affine=false)
        output c = group_norm(y, 4, eps=0.01)
        output d = group_norm(y, 1, eps=2.0, affine=false)""", {"x": f32(2, 6, 3, 2), "y": f32(2, 4, 5)}),
    ("rms_norm_attrs", "x: f32[2, 3, 4]", """
        output a = rms_norm(x, eps=0.5)
        output b = rms_norm(x, shape=[3, 4], affine=false)
        output c = rms_norm(x, eps=4.0, affine=false)""", {"x": f32(2, 3, 4, scale=0.3)}),
    ("embedding_padding_idx", "i: i64[2, 5]", """
        output a = embedding(i, 7, 3, padding_idx=2)
        output b = embedding(i, 7, 3, padding_idx=-1)""", {"i": np.array([[0, 2, 6, 1, 2], [6, 6, 3, 4, 5]])}),
    ("one_hot_dtypes", "i: i64[2, 5]; j: i32[4]", """
        output a = one_hot(i, 7)
        output b = one_hot(i, 7, dtype=f32)
        output c = one_hot(j, 5, dtype=bool)
        output d = one_hot(j, 6, dtype=i32)""",
     {"i": np.array([[0, 2, 6, 1, 2], [6, 6, 3, 4, 5]]), "j": np.array([4, 0, 1, 4], np.int32)}),
    ("einsum_equations", "a: f32[3, 3]; b: f32[2, 3, 4]; c: f32[2, 4, 5]; d: f32[2, 3, 3]", """
        output o1 = einsum("ii->i", a)
        output o2 = einsum("ii->", a)
        output o3 = einsum("bij,bjk->bik", b, c)
        output o4 = einsum("bii->bi", d)
        output o5 = einsum("bij,bjk->", b, c)
        output o6 = einsum("ij->ji", a)
        output o7 = einsum("bij,bij->bj", b, b)""",
     {"a": f32(3, 3), "b": f32(2, 3, 4), "c": f32(2, 4, 5), "d": f32(2, 3, 3)}),
    # ---- fused attention (the O1 pipeline fuses each formula into one attention op; one per
    # spec, since a shared kᵀ is not fused)
    *[(f"attention_{i}", "q: f32[2, 4, 8]; k: f32[2, 6, 8]; v: f32[2, 6, 3]; pad: bool[2, 1, 6]; "
       "keep: bool[2, 4, 6]; bias: f32[2, 4, 6]", f"output a = {formula}", ATTENTION_INPUTS)
      for i, formula in enumerate([
          "softmax(masked_fill(q @ k.T * 0.7, not tril(ones([4, 6], bool)), -inf)) @ v",
          "softmax(q @ k.T / 3.0) @ v",
          "softmax(q @ k.T) @ v",
          "dropout(softmax(q @ k.T * 0.5), p=0.4) @ v",
          "softmax(masked_fill(q @ k.T * 0.5, pad, -inf)) @ v",
          "softmax(masked_fill(q @ k.T / 2.0, not keep, -inf)) @ v",
          "softmax(q @ k.T * 0.3 + bias) @ v"])],
    ("attention_causal_square", "q: f32[2, 2, 5, 8]; k: f32[2, 2, 5, 8]; v: f32[2, 2, 5, 3]", """
        output a = softmax(masked_fill(q @ k.T * 0.7, not tril(ones([5, 5], bool)), -inf)) @ v""",
     {"q": f32(2, 2, 5, 8), "k": f32(2, 2, 5, 8), "v": f32(2, 2, 5, 3)}),
    # ---- recurrent
    ("lstm_attrs", "x: f32[2, 5, 3]", """
        out, h, c = lstm(x, 4, layers=2, bidirectional=true, state=true)
        output o1 = out
        output o2 = h
        output o3 = c
        output o4 = lstm(x, 3, bias=false)""", {"x": f32(2, 5, 3)}),
    ("gru_rnn_attrs", "x: f32[2, 5, 3]", """
        out, h = gru(x, 4, layers=2, bidirectional=true, state=true, dropout=0.5)
        output o1 = out
        output o2 = h
        output o3 = gru(x, 3, bias=false)
        output o4 = rnn(x, 4, nonlinearity="relu", layers=2)
        output o5 = rnn(x, 3, bidirectional=true, bias=false)""", {"x": f32(2, 5, 3)}),
    # ---- shapes
    ("shape_ops", "x: f32[2, 3, 4, 5]", """
        output a = flatten(x, start=0, end=2)
        output b = flatten(x, start=-2)
        output c = transpose(x, 0, -1)
        output d = permute(x, [3, 1, 0, 2])
        output e = squeeze(unsqueeze(x, -1), dim=-1)
        output f = unsqueeze(x, 2)
        output g = concat([x, x], dim=-2)
        output h = stack([x, x], dim=-1)
        output i = flip(x, [0, -1])
        output j = roll(x, [-3, 7], [1, 3])
        output k = repeat_interleave(x, 2, dim=-1)""", {"x": f32(2, 3, 4, 5)}),
    ("slicing", "x: f32[4, 6, 5]", """
        p, q = split(x, [2, 3], dim=-1)
        output a = p
        output b = q
        output c = x[1:, ::2, 3:]
        output d = x[:, 1:5:3, :-1]
        output e = x[::3, 2, 1::2]""", {"x": f32(4, 6, 5)}),
    ("pad_modes", "x: f32[2, 3, 5, 6]; k: i64[2, 6]", """
        output a = pad(x, [1, 2], value=-3.5)
        output b = pad(x, [2, 1, 1, 3], mode="reflect")
        output c = pad(x, [3, 0, 0, 2], mode="replicate")
        output d = pad(x, [2, 1, 4, 5], mode="circular")
        output e = pad(k, [1, 2, 0, 1], value=7.0)
        output f = pad(x, [-1, 2, 1, -2])""", {"x": f32(2, 3, 5, 6), "k": ints(-5, 5, 2, 6)}),
    ("upsample_modes", "x: f32[2, 3, 4, 5]; y: f32[2, 3, 6]", """
        output a = upsample(x, 2)
        output b = upsample(x, [3, 2])
        output c = upsample(x, 2, mode="bilinear")
        output d = upsample(x, [2, 3], mode="bilinear", align_corners=true)
        output e = upsample(y, 3, mode="linear")
        output f = upsample(y, 2, mode="linear", align_corners=true)
        output g = upsample(y, 3)""", {"x": f32(2, 3, 4, 5), "y": f32(2, 3, 6)}),
    ("pixel_shuffle", "x: f32[2, 12, 3, 2]", """
        output a = pixel_shuffle(x, 2)""", {"x": f32(2, 12, 3, 2)}),
    # ---- reductions
    ("reductions", "x: f32[3, 4, 5]", """
        output a = sum(x, dim=[0, 2], keepdim=true)
        output b = mean(x, dim=-1)
        output c = max(x, dim=[1])
        output d = min(x, dim=[0, -1], keepdim=true)
        output e = prod(x, dim=[0, 2])
        output f = logsumexp(x, dim=[1, 2], keepdim=true)
        output g = logsumexp(x * 50.0)
        output h = softmax(x, dim=0)
        output i = log_softmax(x, dim=1)""", {"x": f32(3, 4, 5)}),
    ("var_std_correction", "x: f32[3, 4, 5]", """
        output a = var(x, dim=[1], correction=0)
        output b = std(x, dim=[0, 2], correction=2, keepdim=true)
        output c = var(x, correction=5)
        output d = std(x, dim=[0], correction=0)""", {"x": f32(3, 4, 5)}),
    ("var_std_correction_past_count", "x: f32[3, 4]", """
        output a = var(x, correction=12)
        output b = var(x, correction=13)
        output c = std(x, dim=[1], correction=5)
        output d = std(x, dim=[0], correction=3)""", {"x": f32(3, 4)}),
    ("order_ops", "x: f32[3, 7]; t: f32[3, 6]", """
        v, i = topk(x, 3, dim=-1, largest=false)
        w, j = topk(x, 2, dim=0)
        output a = v
        output b = i
        output c = w
        output d = j
        output e = argsort(x, dim=0, descending=true)
        output f = argsort(t, descending=true)
        output g = argsort(t)
        output h = argmax(x, dim=0, keepdim=true)
        output k = argmax(t)""",
     {"x": no_ties(3, 7), "t": np.array([[1, 2, 1, 0, 2, 1]] * 3, np.float32)}),
    ("cumulative", "x: f32[3, 6]; k: i64[3, 6]; m: bool[3, 6]; s: i32[3, 6]", """
        output a = cumsum(x, dim=0)
        output b = cumsum(k)
        output c = cumsum(m, dim=0)
        output d = cumprod(x, dim=0)
        output e = cumprod(k)
        output f = cumprod(m)
        output g = cumsum(s, dim=1)
        output h = cumprod(s, dim=0)""",
     {"x": f32(3, 6), "k": ints(-3, 4, 3, 6), "m": RNG.random((3, 6)) > 0.3,
      "s": ints(-3, 4, 3, 6, dtype=np.int32)}),
    # ---- indexing
    ("indexing", "x: f32[4, 5]; i: i64[3, 5]; j: i64[3]; s: f32[3, 5]", """
        output a = gather(x, i, dim=0)
        output b = index_select(x, j, dim=1)
        output c = scatter_add(x, i, s, dim=0)
        output d = gather(x, i[:, :2], dim=1)""",
     {"x": f32(4, 5), "i": ints(0, 4, 3, 5), "j": np.array([4, 0, 4]), "s": f32(3, 5)}),
    # ---- arithmetic on integers and casts
    ("integer_arith", "a: i64[2, 6]; b: i64[2, 6]; x: f32[2, 6]", """
        output p = a // b
        output q = a % b
        output r = cast(x, i64)
        output s = cast(x, bool)
        output t = maximum(a, b)
        output u = x // 0.75
        output v = x % -0.75""",
     {"a": np.array([[-7, 7, -7, 7, 0, 5]] * 2), "b": np.array([[2, -2, -2, 2, 3, 5]] * 2),
      "x": np.array([[-2.5, -0.5, 0.0, 0.7, 1.5, 2.9]] * 2, np.float32)}),
]


def test_attention_cases_are_fused():
    """The attention cases above test the fused op (scale, causal, masks), not its formula."""
    for name, decls, body, _ in CASES:
        if name.startswith("attention"):
            ops = [n.op for n in nndsl.compile(spec(decls, body)).graph]
            assert "attention" in ops and "softmax" not in ops, name


def _generated(c, state, tmp_path):
    """The generated PyTorch source of ``c``, imported, with the torch module's state."""
    path = tmp_path / "model.py"
    path.write_text(generate_source(c.graph))
    spec_ = importlib.util.spec_from_file_location(f"attr_parity_{next(_counter)}", path)
    mod = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(mod)
    cls = getattr(mod, "".join(p[:1].upper() + p[1:] for p in c.name.split("_")))
    m = cls()
    m.load_state_dict(state, strict=True)
    return m.eval()


@pytest.mark.filterwarnings("ignore:.*degrees of freedom is", "ignore:Using padding=.same.")
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_torch_onnx_and_generated_source_agree(case, tmp_path):
    name, decls, body, inputs = case
    text = spec(decls, body)
    t_out, o_out = run_both(text, inputs)
    assert len(t_out) == len(o_out)
    for k, (t, o) in enumerate(zip(t_out, o_out)):
        agree(o, t, f"{name} output {k}: onnxruntime vs torch")
    c = nndsl.compile(text)
    ref = c.to_torch(seed=0).eval()
    gen = _generated(c, ref.state_dict(), tmp_path)
    with torch.no_grad():
        g_out = gen(*[torch.from_numpy(v) for v in inputs.values()])
    g_out = g_out if isinstance(g_out, tuple) else (g_out,)
    for k, (t, g) in enumerate(zip(t_out, g_out)):
        agree(g.numpy(), t, f"{name} output {k}: generated source vs torch")


def test_output_padding_torch_refuses_is_refused_at_compile_time():
    """torch refuses an output padding not below the stride or the dilation; so does the
    compiler, before any backend runs (the ONNX lowering also keeps its own check)."""
    with pytest.raises(NndslError) as e:
        nndsl.compile(spec("x: f32[1, 2, 4, 4]", "output a = conv_transpose2d(x, 2, 3, stride=2, "
                                                 "output_padding=[1, 2])"))
    assert e.value.code == "E0307" and "output_padding" in str(e.value)


def test_sums_and_products_of_booleans_and_small_integers_export():
    """ReduceSum and ReduceProd take no booleans or 8-bit integers: integer and boolean sums and
    products are i64, as torch's, in every backend."""
    inputs = {"s": ints(-9, 9, 3, 4, dtype=np.int32), "m": RNG.random((3, 4)) > 0.4,
              "u": ints(0, 255, 3, 4, dtype=np.uint8), "c": ints(-5, 5, 3, 4, dtype=np.int8)}
    text = spec("s: i32[3, 4]; m: bool[3, 4]; u: u8[3, 4]; c: i8[3, 4]", """
        output o1 = sum(s, dim=[1])
        output o2 = sum(m, dim=[0], keepdim=true)
        output o3 = sum(u)
        output o4 = prod(c, dim=[1])
        output o5 = prod(m, dim=[1])
        output o6 = sum(c, dim=[0])""")
    declared = list(nndsl.compile(text).output_types.values())
    t_out, o_out = run_both(text, inputs)
    assert {d.dtype for d in declared} == {"i64"}
    for k, (t, o) in enumerate(zip(t_out, o_out)):
        assert o.dtype == t.dtype == np.int64
        agree(o, t, f"output {k}")
