"""The attention and transformer blocks of the standard library against independent references:
PyTorch's own transformer layers (weights copied across), the published formulas of the position
encodings (T5's relative buckets, sinusoids, DETR's 2-D sines, rotary) and properties of the zoo
specs (per-layer parameter counts, causality, padding masks)."""

import math
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import nndsl

from conftest import ROOT

SPECS = ROOT / "specs" / "transformers"


def compiled(text, **kw):
    return nndsl.compile(textwrap.dedent(text), **kw)


def packed(sd, prefix):
    """nn.MultiheadAttention's packed in-projection from separate q/k/v projections."""
    w = torch.cat([sd[f"{prefix}.{n}_proj.weight"] for n in "qkv"])
    b = torch.cat([sd[f"{prefix}.{n}_proj.bias"] for n in "qkv"])
    return {"in_proj_weight": w, "in_proj_bias": b,
            "out_proj.weight": sd[f"{prefix}.out_proj.weight"],
            "out_proj.bias": sd[f"{prefix}.out_proj.bias"]}


def to_torch_layer(sd, attns):
    """A compiled encoder/decoder layer's state dict (scope `layer`) in nn.Transformer*Layer's
    names; ``attns`` maps the torch attention names to ours."""
    out = {}
    for theirs, ours in attns.items():
        out.update({f"{theirs}.{k}": v for k, v in packed(sd, f"layer.{ours}").items()})
    for k, v in sd.items():
        rest = k.removeprefix("layer.")
        if rest.startswith("ff."):
            out[rest.removeprefix("ff.")] = v
        elif rest.startswith("norm"):
            out[rest] = v
    return out


@pytest.mark.parametrize("pre_norm, act", [(False, "relu"), (True, "gelu")])
def test_encoder_layer_is_torchs(pre_norm, act):
    c = compiled(f"""
    import std.transformer
    model m() {{
        input x: f32[N, T, 16]
        output y = x |> encoder_layer(4, 32, 0.0, "{act}", pre_norm={str(pre_norm).lower()})
                        as layer
    }}""")
    ours = c.to_torch(seed=1).eval()
    ref = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=act, batch_first=True,
                                     norm_first=pre_norm).eval()
    ref.load_state_dict(to_torch_layer(ours.state_dict(), {"self_attn": "self_attn"}))
    x = torch.randn(3, 7, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_decoder_layer_is_torchs():
    c = compiled("""
    import std.transformer
    model m() {
        input x: f32[N, T, 16]
        input memory: f32[N, S, 16]
        output y = decoder_layer(x, memory, 4, 32) as layer
    }""")
    ours = c.to_torch(seed=2).eval()
    ref = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True).eval()
    ref.load_state_dict(to_torch_layer(ours.state_dict(), {"self_attn": "self_attn",
                                                           "multihead_attn": "cross_attn"}))
    x, mem = torch.randn(2, 6, 16), torch.randn(2, 9, 16)
    causal = nn.Transformer.generate_square_subsequent_mask(6)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, mem), ref(x, mem, tgt_mask=causal),
                                   rtol=1e-5, atol=1e-5)


def test_packed_attention_is_torchs_multihead_attention():
    c = compiled("""
    import std.attention
    model m() {
        input q: f32[N, T, 16]
        input kv: f32[N, S, 16]
        output y = multi_head_attention_packed(q, kv, kv, 4) as attn
    }""")
    ours = c.to_torch(seed=3).eval()
    ref = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    ref.load_state_dict({k.removeprefix("attn."): v for k, v in ours.state_dict().items()})
    q, kv = torch.randn(2, 5, 16), torch.randn(2, 8, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(q, kv), ref(q, kv, kv, need_weights=False)[0],
                                   rtol=1e-5, atol=1e-5)


def _count(path, **params):
    return nndsl.compile(path, params=params, opt="O0").param_count()


def test_transformer_layers_have_pytorchs_parameter_counts():
    """One encoder layer 3,152,384 and one decoder layer 4,204,032 parameters at 512/8/2048 —
    PyTorch's own layers say so too."""
    path = SPECS / "transformer.nn"
    base = _count(path, vocab=10, enc_layers=0, dec_layers=0)
    enc = _count(path, vocab=10, enc_layers=1, dec_layers=0) - base
    dec = _count(path, vocab=10, enc_layers=0, dec_layers=1) - base
    assert (enc, dec) == (3_152_384, 4_204_032)
    assert enc == sum(p.numel() for p in nn.TransformerEncoderLayer(512, 8, 2048).parameters())
    assert dec == sum(p.numel() for p in nn.TransformerDecoderLayer(512, 8, 2048).parameters())


# ---- position encodings against their published formulas

def t5_bucket(rel, bidirectional, buckets, max_distance):
    """T5's relative position bucket (Raffel et al. 2020), for one offset key - query."""
    out = 0
    if bidirectional:
        buckets //= 2
        out += buckets if rel > 0 else 0
        n = abs(rel)
    else:
        n = -min(rel, 0)
    exact = buckets // 2
    if n < exact:
        return out + n
    large = exact + int(math.log(n / exact) / math.log(max_distance / exact) * (buckets - exact))
    return out + min(large, buckets - 1)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_buckets(bidirectional):
    c = compiled(f"""
    import std.positions
    model m() {{
        input x: f32[N, T, 4]
        output bias = x |> relative_position_bias(2, 32, 128, {str(bidirectional).lower()}) as rpb
    }}""")
    m = c.to_torch().eval()
    table = torch.arange(32, dtype=torch.float32)[:, None] * torch.tensor([1.0, -1.0])
    m.load_state_dict({"rpb.relative_attention_bias.weight": table})
    T = 300                                     # past max_distance, so every bucket is reached
    with torch.no_grad():
        got = m(torch.zeros(1, T, 4))
    assert got.shape == (1, 2, T, T)
    want = np.array([[t5_bucket(k - q, bidirectional, 32, 128) for k in range(T)]
                     for q in range(T)])
    np.testing.assert_array_equal(got[0, 0].numpy(), want)
    np.testing.assert_array_equal(got[0, 1].numpy(), -want)
    # every bucket is used (bucket 16 would be a key after the query at distance 0)
    assert set(np.unique(want).tolist()) == set(range(32)) - ({16} if bidirectional else set())


def test_sinusoidal_encoding():
    c = compiled("""
    import std.positions
    model m() { input x: f32[N, T, 12]  output y = x |> sinusoidal_encoding }""")
    got = c.to_torch()(torch.zeros(1, 9, 12))[0].detach().numpy()
    pos, i = np.arange(9)[:, None], np.arange(6)[None, :]
    angle = pos / 10000 ** (2 * i / 12)
    want = np.stack([np.sin(angle), np.cos(angle)], axis=-1).reshape(9, 12)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_detr_sine_positions():
    """DETR's PositionEmbeddingSine(num_pos_feats=C/2, normalize=True) on a map without padding,
    flattened to [1, H*W, C]."""
    c = compiled("""
    import std.positions
    model m() { input f: f32[N, 16, H, W]  output pos = f |> sine_positions_2d }""")
    H, W, F = 3, 5, 8
    got = c.to_torch()(torch.zeros(2, 16, H, W)).detach().numpy()
    y = np.arange(1, H + 1, dtype=np.float64)[:, None].repeat(W, 1)
    x = np.arange(1, W + 1, dtype=np.float64)[None, :].repeat(H, 0)
    y, x = y / (H + 1e-6) * 2 * math.pi, x / (W + 1e-6) * 2 * math.pi
    dim_t = 10000 ** (2 * (np.arange(F) // 2) / F)
    px, py = x[..., None] / dim_t, y[..., None] / dim_t
    px = np.stack([np.sin(px[..., 0::2]), np.cos(px[..., 1::2])], axis=3).reshape(H, W, F)
    py = np.stack([np.sin(py[..., 0::2]), np.cos(py[..., 1::2])], axis=3).reshape(H, W, F)
    want = np.concatenate([py, px], axis=-1).reshape(1, H * W, 2 * F)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_grouped_query_attention_with_rotary_positions():
    """LLaMA's attention written out in PyTorch: rotate-half rotary embeddings, 4 query heads
    sharing 2 key/value heads, causal softmax."""
    c = compiled("""
    import std.transformer
    import std.positions
    model m() {
        input x: f32[N, T, 16]
        c, s = x |> rotary_tables(4) as rope
        output y = grouped_query_attention(x, c, s, 4, 2) as attn
    }""")
    ours = c.to_torch(seed=4).eval()
    sd = {k.removeprefix("attn."): v for k, v in ours.state_dict().items()}
    B, T, H, KV, D = 2, 6, 4, 2, 4
    x = torch.randn(B, T, 16)
    q = (x @ sd["q_proj.weight"].T).view(B, T, H, D).transpose(1, 2)
    k = (x @ sd["k_proj.weight"].T).view(B, T, KV, D).transpose(1, 2)
    v = (x @ sd["v_proj.weight"].T).view(B, T, KV, D).transpose(1, 2)
    inv = 1.0 / 10000 ** (torch.arange(0, D, 2).float() / D)
    freqs = torch.outer(torch.arange(T).float(), inv)
    cos, sin = torch.cat([freqs, freqs], -1).cos(), torch.cat([freqs, freqs], -1).sin()

    def rot(t):
        t1, t2 = t[..., :D // 2], t[..., D // 2:]
        return t * cos + torch.cat([-t2, t1], -1) * sin
    q, k = rot(q), rot(k)
    k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
    y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    want = y.transpose(1, 2).reshape(B, T, 16) @ sd["o_proj.weight"].T
    with torch.no_grad():
        torch.testing.assert_close(ours(x), want, rtol=1e-5, atol=1e-5)


def test_rms_norm():
    c = compiled("""
    import std.transformer
    model m() { input x: f32[N, 8]  output y = x |> rms_norm(0.001) as norm }""")
    m = c.to_torch()
    m.load_state_dict({"norm.weight": torch.arange(8.0)})
    x = torch.randn(3, 8)
    want = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 0.001) * torch.arange(8.0)
    torch.testing.assert_close(m(x), want)


# ---- properties of the zoo specs

@pytest.mark.parametrize("stem, params, tokens", [
    ("gpt2", {"vocab": 64, "ctx": 32, "width": 32, "heads": 4, "layers": 2}, ("tokens",)),
    ("llama_mini", {"vocab": 64, "ctx": 32, "width": 32, "heads": 4, "kv_heads": 2, "ffn": 48,
                    "layers": 2}, ("tokens",)),
    ("t5_small", {"vocab": 64, "width": 32, "d_kv": 8, "heads": 4, "ffn": 64, "enc_layers": 1,
                  "dec_layers": 2}, ("decoder_tokens",)),
    ("transformer", {"vocab": 64, "width": 32, "heads": 4, "ffn": 64, "enc_layers": 1,
                     "dec_layers": 2}, ("tgt",)),
])
def test_decoders_are_causal(stem, params, tokens):
    c = nndsl.compile(SPECS / f"{stem}.nn", params=params)
    m = c.to_torch(seed=5).eval()
    xs = c.example_inputs(batch=2)
    changed = dict(xs)
    for name in tokens:
        changed[name] = xs[name].clone()
        changed[name][:, 10:] = (xs[name][:, 10:] + 1) % 64
    with torch.no_grad():
        a, b = m(**xs), m(**changed)
    torch.testing.assert_close(a[:, :10], b[:, :10], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_bert_padding_mask_hides_padded_tokens():
    """With the last tokens masked out, the first tokens' outputs are those of the shorter input."""
    params = {"vocab": 64, "positions": 32, "width": 32, "heads": 4, "ffn": 64, "layers": 2,
              "masked": True}
    c = nndsl.compile(SPECS / "bert_base.nn", params=params)
    m = c.to_torch(seed=6).eval()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 64, (2, 12), generator=g)
    types = torch.randint(0, 2, (2, 12), generator=g)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[:, 8:] = False
    with torch.no_grad():
        seq, _ = m(tokens, types, mask)
        short, _ = m(tokens[:, :8], types[:, :8], mask[:, :8])
    torch.testing.assert_close(seq[:, :8], short, rtol=1e-4, atol=1e-5)


def test_t5_shares_one_embedding():
    c = nndsl.compile(SPECS / "t5_small.nn", opt="O0")
    names = [n.name for n in c.graph.params()]
    assert [n for n in names if n.endswith(".weight") and "shared" in n] == ["shared.weight"]
    assert not any(n.startswith("lm_head") for n in names)
    assert not any(n.endswith(".bias") for n in names)
    assert sum(n.endswith("relative_attention_bias.weight") for n in names) == 2


def test_counts_derived_from_published_ones():
    """No published totals exist for these two; their counts follow from published parts."""
    # the base transformer: a 37,000-token shared embedding, 6 encoder layers of 3,152,384 and 6
    # decoder layers of 4,204,032 (nn.TransformerEncoderLayer / DecoderLayer at 512/8/2048)
    assert nndsl.compile(SPECS / "transformer.nn").param_count() == \
        37_000 * 512 + 6 * 3_152_384 + 6 * 4_204_032
    # detr-r50 trains 41,302,368; it also holds the frozen stem and first stage (222,400) and
    # FrozenBatchNorm2d scales and shifts (53,120), which are ordinary parameters here
    assert nndsl.compile(SPECS / "detr.nn").param_count() == 41_302_368 + 222_400 + 53_120
