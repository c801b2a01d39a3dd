"""Tensor ops: selection, padding, reordering, resizing, reductions, normalization, randomness.

Each op runs in the torch module and in onnxruntime and is compared with an independent NumPy
computation written here from the op's definition (in float64). Float inputs avoid ties where an
order depends on them.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

import nndsl
from nndsl.errors import NndslError
from nndsl.ir.ops import FLOP_RULES

from test_graph_ops import _session, check_both, no_ties, run_both

RNG = np.random.default_rng(7)


def f32(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def spec(body: str, inputs: str) -> str:
    return f"model m() {{\n{inputs}\n{textwrap.dedent(body)}\n}}"


def tol(want, rel=1e-5):
    """A tolerance scaled to the values compared (f32 arithmetic, any CPU's kernels)."""
    return {"rtol": rel, "atol": rel * max(1.0, float(np.abs(want).max()))}


# ------------------------------------------------------------------ selection and order

def test_topk_values_and_indices_largest_and_smallest():
    x = no_ties(RNG, 3, 7)
    t, o = run_both(spec("""
        v, i = topk(x, 3)
        s, j = topk(x, 2, dim=0, largest=false)
        u, _ = topk(x, 3, sorted=false)
        output o1 = v
        output o2 = i
        output o3 = s
        output o4 = j
        output o5 = u""", "input x: f32[N, 7]"), {"x": x})
    i = np.argsort(-x, axis=1, kind="stable")[:, :3]
    j = np.argsort(x, axis=0, kind="stable")[:2]
    want = [np.take_along_axis(x, i, 1), i, np.take_along_axis(x, j, 0), j,
            np.take_along_axis(x, i, 1)]
    check_both(t, o, [w.astype(np.float32) if w.dtype.kind == "f" else w for w in want],
               as_f32=False)


def test_flip_roll_and_repeat_interleave():
    x = f32(2, 5, 4)
    t, o = run_both(spec("""
        output o1 = flip(x, [1, 2])
        output o2 = roll(x, [2, -1], [1, 2])
        output o3 = roll(x, 7, 1)
        output o4 = repeat_interleave(x, 3, dim=1)
        output o5 = repeat_interleave(x, 2)""", "input x: f32[N, T, 4]"), {"x": x})
    want = [np.flip(x, (1, 2)), np.roll(x, (2, -1), (1, 2)), np.roll(x, 7, 1),
            np.repeat(x, 3, axis=1), np.repeat(x, 2)]
    check_both(t, o, want)


def test_stack_and_chunk_follow_torch():
    x = f32(2, 6, 3)
    t, o = run_both(spec("""
        a, b, c = chunk(x, 4, dim=1)
        p, q = chunk(x, 2, dim=-1)
        output o1 = stack([a, b, c], dim=1)
        output o2 = stack([a, c])
        output o3 = p
        output o4 = q""", "input x: f32[N, 6, 3]"), {"x": x})
    # torch.chunk(6 rows, 4) gives pieces of ⌈6/4⌉ = 2: three of them, not four
    a, b, c = x[:, 0:2], x[:, 2:4], x[:, 4:6]
    check_both(t, o, [np.stack([a, b, c], 1), np.stack([a, c]), x[..., :2], x[..., 2:]])
    assert len(torch.chunk(torch.zeros(6), 4)) == 3


def test_one_hot_as_ints_and_floats():
    idx = RNG.integers(0, 5, (3, 4)).astype(np.int64)
    t, o = run_both(spec("""
        output o1 = one_hot(c, 5)
        output o2 = one_hot(c, 5, f32) * 2.0""", "input c: i64[N, 4]"), {"c": idx})
    eye = np.eye(5)[idx]
    check_both(t, o, [eye.astype(np.int64), (2 * eye).astype(np.float32)], as_f32=False)


# ------------------------------------------------------------------ padding and resizing

@pytest.mark.parametrize("mode,np_mode", [("constant", "constant"), ("reflect", "reflect"),
                                          ("replicate", "edge"), ("circular", "wrap")])
def test_pad_modes_match_numpy(mode, np_mode):
    x = f32(2, 3, 5, 6)
    widths = [2, 1, 1, 3]          # last dim (2 before, 1 after), then the one before it
    t, o = run_both(spec(f"""
        output y = pad(x, {widths}, mode="{mode}"{', value=0.5' if mode == 'constant' else ''})""",
                         "input x: f32[N, 3, H, W]"), {"x": x})
    kw = {"constant_values": 0.5} if mode == "constant" else {}
    want = np.pad(x, [(0, 0), (0, 0), (1, 3), (2, 1)], mode=np_mode, **kw)
    check_both(t, o, [want])


def test_constant_pad_may_crop_and_pad_any_dim():
    x = f32(2, 4, 5)
    t, o = run_both(spec("output y = pad(x, [-1, 2, 0, 0, 1, 1])", "input x: f32[N, 4, 5]"),
                    {"x": x})
    want = np.pad(x[:, :, 1:], [(1, 1), (0, 0), (0, 2)])
    check_both(t, o, [want])


def np_linear_resize(x, axis, s, align_corners):
    """Linear interpolation along one axis, from the definition: half-pixel centres (source
    coordinate clamped at 0) or aligned corners."""
    n = x.shape[axis]
    out = n * s
    i = np.arange(out, dtype=np.float64)
    if align_corners:
        src = i * (n - 1) / (out - 1) if out > 1 else np.zeros_like(i)
    else:
        src = np.maximum((i + 0.5) / s - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(int), n - 1)
    hi = np.minimum(lo + 1, n - 1)
    w = (src - lo).reshape([-1 if d == axis else 1 for d in range(x.ndim)])
    return np.take(x, lo, axis) * (1 - w) + np.take(x, hi, axis) * w


@pytest.mark.parametrize("align", [False, True])
def test_upsample_nearest_and_bilinear(align):
    x = f32(2, 3, 4, 5)
    t, o = run_both(spec(f"""
        output o1 = upsample(x, 2)
        output o2 = upsample(x, [3, 2], mode="nearest")
        output o3 = upsample(x, 2, mode="bilinear", align_corners={str(align).lower()})""",
                         "input x: f32[N, 3, H, W]"), {"x": x.copy()})
    x64 = x.astype(np.float64)
    bil = np_linear_resize(np_linear_resize(x64, 2, 2, align), 3, 2, align)
    want = [x.repeat(2, 2).repeat(2, 3), x.repeat(3, 2).repeat(2, 3), bil]
    check_both(t, o, want, **tol(bil))


def test_linear_upsample_of_sequences():
    x = f32(2, 3, 7)
    t, o = run_both(spec('output y = upsample(x, 4, mode="linear")', "input x: f32[N, 3, L]"),
                    {"x": x})
    want = np_linear_resize(x.astype(np.float64), 2, 4, False)
    check_both(t, o, [want], **tol(want))


def test_pixel_shuffle_moves_channels_to_space():
    x = f32(2, 8, 3, 4)
    t, o = run_both(spec("output y = pixel_shuffle(x, 2)", "input x: f32[N, 8, H, W]"), {"x": x})
    n, c, h, w = x.shape
    want = x.reshape(n, c // 4, 2, 2, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(
        n, c // 4, h * 2, w * 2)
    check_both(t, o, [want])


# ------------------------------------------------------------------ elementwise

def test_clamp_hardswish_mish():
    x = f32(3, 8, scale=4.0)
    k = RNG.integers(-9, 9, (3, 8)).astype(np.int64)
    t, o = run_both(spec("""
        output o1 = clamp(x, min=-1.0, max=2.5)
        output o2 = clamp(x, max=0.5)
        output o3 = clamp(k, min=-2, max=3)
        output o4 = hardswish(x)
        output o5 = mish(x)""", "input x: f32[N, 8]\ninput k: i64[N, 8]"), {"x": x, "k": k})
    x64 = x.astype(np.float64)
    want = [np.clip(x, -1, 2.5), np.minimum(x, 0.5), np.clip(k, -2, 3),
            x64 * np.clip(x64 + 3, 0, 6) / 6, x64 * np.tanh(np.log1p(np.exp(x64)))]
    check_both(t, o, [w.astype(np.float32) if w.dtype.kind == "f" else w for w in want],
               as_f32=False, **tol(x, 1e-5))


# ------------------------------------------------------------------ reductions and scans

def test_logsumexp_var_std_over_dims():
    x = f32(3, 4, 5, scale=3.0)
    big = x + 1000.0            # exp overflows in f32 without the max subtracted first
    t, o = run_both(spec("""
        output o1 = logsumexp(x, dim=1)
        output o2 = logsumexp(big, dim=[1, 2], keepdim=true)
        output o3 = var(x, dim=-1)
        output o4 = std(x, dim=[0, 2], keepdim=true)
        output o5 = var(x, correction=0)
        output o6 = std(x, dim=1, correction=2)""",
                         "input x: f32[N, 4, 5]\ninput big: f32[N, 4, 5]"),
                    {"x": x, "big": big})
    x64, b64 = x.astype(np.float64), big.astype(np.float64)

    def lse(v, axis, keepdims=False):
        m = v.max(axis=axis, keepdims=True)
        r = np.log(np.exp(v - m).sum(axis=axis, keepdims=True)) + m
        return r if keepdims else np.squeeze(r, axis)
    want = [lse(x64, 1), lse(b64, (1, 2), True), x64.var(-1, ddof=1),
            x64.std((0, 2), ddof=1, keepdims=True), x64.var(ddof=0), x64.std(1, ddof=2)]
    for got_t, got_o, w in zip(t, o, want):
        for got in (got_t, got_o):
            assert got.shape == w.shape
            np.testing.assert_allclose(got, w, **tol(w))


def test_cumprod_floats_and_integers():
    x = (RNG.uniform(0.5, 1.5, (2, 9))).astype(np.float32)
    k = RNG.integers(-3, 4, (2, 5)).astype(np.int32)
    t, o = run_both(spec("""
        output o1 = cumprod(x)
        output o2 = cumprod(x, dim=0)
        output o3 = cumprod(k, dim=1)""", "input x: f32[2, 9]\ninput k: i32[N, 5]"),
                    {"x": x, "k": k})
    want = [np.cumprod(x.astype(np.float64), 1).astype(np.float32),
            np.cumprod(x.astype(np.float64), 0).astype(np.float32),
            np.cumprod(k.astype(np.int64), 1)]
    check_both(t, o, want, as_f32=False, rtol=1e-5, atol=1e-6)
    assert t[2].dtype == np.int64


def test_cumprod_over_a_symbolic_dim_loops_in_onnx():
    x = RNG.uniform(0.5, 1.5, (2, 7, 3)).astype(np.float32)
    k = RNG.integers(-3, 4, (2, 6)).astype(np.int64)
    for t_len in (7, 1):
        xs = {"x": x[:, :t_len], "k": k[:, :t_len]}
        t, o = run_both(spec("""
            output o1 = cumprod(x, dim=1)
            output o2 = cumprod(k)""", "input x: f32[N, T, 3]\ninput k: i64[N, S]"), xs)
        want = [np.cumprod(xs["x"].astype(np.float64), 1).astype(np.float32),
                np.cumprod(xs["k"], 1)]
        check_both(t, o, want, as_f32=False, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ einsum

@pytest.mark.parametrize("eq,shapes", [
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),                  # implicit output: ik
    ("...ij,...jk->...ik", [(2, 3, 4), (1, 4, 2)]),
    ("bi,bi->b", [(4, 6), (4, 6)]),
    ("ii->i", [(5, 5)]),
    ("bij->bji", [(2, 3, 4)]),
    ("i,j,k->ijk", [(2,), (3,), (4,)]),
])
def test_einsum_matches_numpy(eq, shapes):
    arrays = [f32(*s) for s in shapes]
    names = "abc"[:len(arrays)]
    decl = "\n".join(f"input {n}: f32[{', '.join(map(str, s))}]" for n, s in zip(names, shapes))
    t, o = run_both(spec(f'output y = einsum("{eq}", {", ".join(names)})', decl),
                    dict(zip(names, arrays)))
    want = np.einsum(eq, *[a.astype(np.float64) for a in arrays])
    check_both(t, o, [want], **tol(want))


def test_einsum_flops_count_every_index_combination():
    c = nndsl.compile('model m() { input q: f32[2, 3, 4, 5]\n input k: f32[2, 3, 6, 5]\n'
                      ' output s = einsum("bhqd,bhkd->bhqk", q, k) }')
    (node,) = [n for n in c.graph if n.op == "einsum"]
    types = [c.graph.type_of(v) for v in node.inputs]
    assert FLOP_RULES["einsum"](types, node.types, node.attr) == 2 * 2 * 3 * 4 * 6 * 5


# ------------------------------------------------------------------ rms_norm

def test_rms_norm_layer_matches_its_formula_and_torch():
    x = f32(2, 3, 8, scale=2.0)
    c = nndsl.compile("model m() { input x: f32[N, T, 8]\n output y = x |> rms_norm as norm\n"
                      " output z = x |> rms_norm(eps=0.01, affine=false) }")
    assert c.param_count() == 8
    m = c.to_torch(seed=0).eval()
    with torch.no_grad():
        m.get_parameter("norm.weight").copy_(torch.linspace(0.5, 2.0, 8))
    with torch.no_grad():
        y, z = m(x=torch.from_numpy(x))
        ref = torch.nn.RMSNorm(8)
        ref.weight.copy_(torch.linspace(0.5, 2.0, 8))
        want_y = ref(torch.from_numpy(x))
    x64 = x.astype(np.float64)
    eps = float(np.finfo(np.float32).eps)
    formula = x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + eps) * np.linspace(0.5, 2, 8)
    np.testing.assert_allclose(y.numpy(), formula, **tol(formula))
    np.testing.assert_allclose(y.numpy(), want_y.numpy(), **tol(formula))
    np.testing.assert_allclose(z.numpy(), x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True)
                                                        + 0.01), **tol(formula))
    onnx_y, onnx_z = _session(c.to_onnx(weights=m.state_dict())).run(None, {"x": x})
    np.testing.assert_allclose(onnx_y, formula, **tol(formula))
    np.testing.assert_allclose(onnx_z, z.numpy(), **tol(formula))


# ------------------------------------------------------------------ drop_path

DROP = """
model m(p: float = 0.5) {
    input x: f32[N, 4, 3]
    output y = x + (x |> linear(3) |> drop_path(p))
}"""


def test_drop_path_drops_whole_samples_in_training_only():
    c = nndsl.compile(DROP)
    m = c.to_torch(seed=0)
    x = torch.randn(256, 4, 3)
    torch.manual_seed(1)
    m.train()
    with torch.no_grad():
        y = m(x=x)
        branch = m.eval()(x=x) - x          # at eval: the branch unscaled
    m.train()
    delta = (y - x).reshape(256, -1)
    flat = branch.reshape(256, -1)
    dropped = delta.abs().amax(1) == 0
    kept = torch.isclose(delta, flat * 2.0, rtol=1e-5, atol=1e-6).all(1)
    assert bool((dropped | kept).all()), "each sample is either dropped or scaled by 1/(1-p)"
    assert 90 < int(dropped.sum()) < 166      # Binomial(256, 0.5): 128 ± 4.7σ
    with torch.no_grad():
        assert torch.equal(m.eval()(x=x), x + branch)


def test_drop_path_is_the_identity_in_onnx_with_no_extra_input():
    c = nndsl.compile(DROP)
    m = c.to_torch(seed=0).eval()
    proto = c.to_onnx(weights=m.state_dict())
    assert [i.name for i in proto.graph.input] == ["x"]
    assert not [n for n in proto.graph.node if "Random" in n.op_type or "Dropout" in n.op_type]
    x = f32(5, 4, 3)
    (got,) = _session(proto).run(None, {"x": x})
    with torch.no_grad():
        want = m(x=torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, **tol(want))


def test_drop_path_goes_at_o2_and_with_p_zero():
    at_o2 = nndsl.compile(DROP, opt="O2")
    assert "drop_path" not in {n.op for n in at_o2.graph}
    assert "drop_path" in {n.op for n in nndsl.compile(DROP, opt="O1").graph}
    assert "drop_path" not in {n.op for n in nndsl.compile(DROP, params={"p": 0.0},
                                                           opt="O1").graph}


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("body,code,words", [
    ('pad(x, [1, 2, 3])', "E0322", "pairs"),
    ('pad(x, [5, 0], mode="reflect")', "E0322", "more than its size"),
    ('pad(x, [1, 1], mode="mirror")', "E0322", "not one of"),
    ('pad(x, [-1, 0], mode="replicate")', "E0322", "negative"),
    ('einsum("ij,jk->ik", x, x)', "E0321", "index `j` is 3"),
    ('einsum("ij->iz", x)', "E0321", "letter `z`"),
    ('einsum("ijk->i", x)', "E0321", "rank 2"),
    ('clamp(x)', "E0324", "min or a max"),
    ('clamp(x, min=2.0, max=1.0)', "E0324", "larger than max"),
    ('topk(x, 9)', "E0324", "more than the 3"),
    ('upsample(x, 2, mode="bicubic")', "E0323", "not one of"),
    ('upsample(x, 2, mode="bilinear")', "E0323", "[N, C, H, W]"),
    ('pixel_shuffle(reshape(x, [N, 3, 1, 1]), 2)', "E0323", "divisible by 4"),
    ('chunk(x, 2, dim=0)', "E0312", "symbolic"),
    ('roll(x, [1, 2], [1])', "E0331", "one shift per dim"),
    ('flip(x, [1, -1])', "E0331", "twice"),
    ('stack([x, transpose(x)])', "E0312", "one shape"),
])
def test_bad_arguments_are_located_errors(body, code, words):
    text = f"model m() {{\n    input x: f32[N, 3]\n    output y = {body}\n}}"
    with pytest.raises(NndslError) as e:
        nndsl.compile(text)
    err = e.value
    assert err.code == code, str(err)
    assert words in str(err)
    assert err.span is not None and err.span.line == 3


def test_std_gan_padding_and_upsampling_match_torch_modules():
    c = nndsl.compile("import std.gan\nmodel m() { input x: f32[N, 3, 5, 7]\n"
                      " output p = x |> reflect_pad2d(3)\n output u = x |> upsample_nearest2d(3) }")
    x = torch.randn(2, 3, 5, 7)
    p, u = c.to_torch(seed=0).eval()(x=x)
    assert torch.equal(p, torch.nn.ReflectionPad2d(3)(x))
    assert torch.equal(u, torch.nn.functional.interpolate(x, scale_factor=3, mode="nearest"))
    onnx_p, onnx_u = _session(c.to_onnx()).run(None, {"x": x.numpy()})
    np.testing.assert_array_equal(onnx_p, p.numpy())
    np.testing.assert_array_equal(onnx_u, u.numpy())


def test_mean_of_integers_is_a_located_error():
    with pytest.raises(NndslError) as e:
        nndsl.compile("model m() {\n input k: i64[N, 3]\n output y = mean(k, dim=1)\n}")
    assert e.value.code == "E0304" and "cast(x, f32)" in e.value.hint and e.value.span.line == 3


@pytest.mark.parametrize("decl,body,words", [
    ("b: bool[N, 3]", "argmax(b)", "argmax needs a numeric"),
    ("k: i64[N, 3, 4]", 'pad(k, [1, 1], mode="replicate")', "replicate padding needs a float"),
    ("k: i64[N, 3, 4]", "upsample(k, 2)", "upsample needs a float"),
    ("k: u8[N, 3]", "embedding(k, 10, 4)", "i64 or i32"),
])
def test_values_torch_cannot_run_are_refused_at_compile_time(decl, body, words):
    with pytest.raises(NndslError) as e:
        nndsl.compile(f"model m() {{\n input {decl}\n output y = {body}\n}}")
    assert words in str(e.value).replace("floating-point", "float") and e.value.span.line == 3


def test_conv_transpose_output_padding_below_stride_or_dilation():
    text = "model m() {{\n input x: f32[N, 2, 4, 4]\n output y = x |> {}\n}}"
    with pytest.raises(NndslError) as e:
        nndsl.compile(text.format("conv_transpose2d(3, 3, stride=2, output_padding=2)"))
    assert e.value.code == "E0307" and "smaller than the stride" in str(e.value)
    c = nndsl.compile(text.format("conv_transpose2d(3, 3, stride=2, output_padding=1)"))
    assert c.output_types["y"].shape[2:] == (10, 10)


@pytest.mark.parametrize("body,hint", [
    ('pad(x, [1, 1], mode="reflekt")', 'did you mean "reflect"?'),
    ('upsample(x, 2, mode="bilinaer")', 'did you mean "bilinear"?'),
    ('pad(x, [1, 1], mode="replicate")', 'pad(x, [1, 1, 0, 0], mode="replicate")'),
])
def test_pad_and_upsample_errors_say_how_to_fix_them(body, hint):
    with pytest.raises(NndslError) as e:
        nndsl.compile(f"model m() {{\n input x: f32[N, 3, 8, 8]\n output y = {body}\n}}")
    assert e.value.hint.endswith(hint)
