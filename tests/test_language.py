"""Language features, each checked on a small spec against an independent computation."""

import math

import pytest
import torch
import torch.nn.functional as F

import nndsl
from nndsl.ir.types import SymDim


def run(text, batch=2, **kw):
    c = nndsl.compile(text, **kw)
    m = c.to_torch().eval()
    xs = c.example_inputs(batch=batch)
    with torch.no_grad():
        return c, m, xs, m(**xs)


def test_pipeline_is_function_application():
    c, m, xs, y = run("""
    model m() { input x: f32[N, 8]
        output y = x |> linear(4) as fc |> relu |> softmax(dim=-1) }""")
    sd = m.state_dict()
    ref = F.softmax(F.relu(xs["x"] @ sd["fc.weight"].T + sd["fc.bias"]), dim=-1)
    torch.testing.assert_close(y, ref)


def test_input_sizes_are_inferred_and_symbolic_dims_stay_symbolic():
    c = nndsl.compile("""
    model m() { input x: f32[N, 3, H, W]
        output y = x |> conv2d(8, 3, stride=2) |> flatten }""")
    t = c.output_types["y"]
    assert str(t.shape[0]) == "N" and isinstance(t.shape[1], SymDim)
    for h, w in ((9, 11), (16, 7)):
        assert t.shape[1].evaluate({"H": h, "W": w}) == 8 * ((h - 3) // 2 + 1) * ((w - 3) // 2 + 1)
    m = c.to_torch()
    for h, w in ((9, 11), (16, 7)):
        y = m(torch.randn(2, 3, h, w))
        assert y.shape == (2, 8 * ((h - 3) // 2 + 1) * ((w - 3) // 2 + 1))


def test_for_loops_labels_and_scopes():
    c = nndsl.compile("""
    model m() { input x: f32[N, 4]
        h = x
        stages: for (w, act) in [(8, "relu"), (6, "tanh")] {
            h = h |> linear(w) as fc
            h = if act == "relu" { relu(h) } else { tanh(h) }
        }
        repeat 2 { h = h |> linear(5) }
        output y = h }""", opt="O0")
    names = [n.name for n in c.graph.params()]
    assert names == ["stages.0.fc.weight", "stages.0.fc.bias", "stages.1.fc.weight",
                     "stages.1.fc.bias", "linear_0.weight", "linear_0.bias",
                     "linear_1.weight", "linear_1.bias"]
    assert [n.op for n in c.graph if n.op in ("relu", "tanh")] == ["relu", "tanh"]
    assert c.param_count() == (4 * 8 + 8) + (8 * 6 + 6) + (6 * 5 + 5) + (5 * 5 + 5)


def test_shared_weights_by_instance_and_by_block_instance():
    c, m, xs, y = run("""
    block enc(d: int) { input x: f32[N, F]
        return x |> linear(d) as proj |> tanh }
    model siamese() { input a: f32[N, 6]  input b: f32[N, 6]
        e = enc(3)
        fc = linear(6)
        output ya = e(fc(a))
        output yb = e(fc(b)) }""")
    assert c.param_count() == (6 * 6 + 6) + (6 * 3 + 3)
    sd = m.state_dict()
    assert list(sd) == ["fc.weight", "fc.bias", "e.proj.weight", "e.proj.bias"]

    def ref(x):
        h = x @ sd["fc.weight"].T + sd["fc.bias"]
        return torch.tanh(h @ sd["e.proj.weight"].T + sd["e.proj.bias"])
    torch.testing.assert_close(y[0], ref(xs["a"]))
    torch.testing.assert_close(y[1], ref(xs["b"]))


def test_tied_weights_count_once():
    c, m, xs, y = run("""
    model lm(vocab: int = 50, d: int = 8) { input t: i64[N, T]
        wte = embedding(vocab, d)
        output logits = wte(t) |> linear(vocab, bias=false, weight=wte.weight) as head }""")
    assert c.param_count() == 50 * 8
    w = m.state_dict()["wte.weight"]
    torch.testing.assert_close(y, F.embedding(xs["t"], w) @ w.T)
    assert int(xs["t"].max()) < 50


def test_block_patterns_bind_dims_and_defaults():
    c = nndsl.compile("""
    block widen(factor: int = 2) { input x: f32[N, C]
        assert C % 2 == 0, "even widths only"
        return x |> linear(C * factor) }
    model m() { input x: f32[N, 6]
        output y = x |> widen |> widen(3) }""")
    assert str(c.output_types["y"]) == "f32[N, 36]"


def test_tuples_unpacking_split_concat_and_indexing():
    c, m, xs, y = run("""
    model m() { input x: f32[N, 6, 4]
        a, b = split(x, [2, 4], dim=1)
        s = concat([b, a], dim=1)
        output first = s[:, 0]
        output tail = s[:, -2:, ::2]
        output ell = x[..., 1] }""")
    x = xs["x"]
    s = torch.cat([x[:, 2:], x[:, :2]], dim=1)
    torch.testing.assert_close(y[0], s[:, 0])
    torch.testing.assert_close(y[1], s[:, -2:, ::2])
    torch.testing.assert_close(y[2], x[..., 1])


def test_broadcasting_arithmetic_matmul_and_scalars():
    c, m, xs, y = run("""
    model m() { input a: f32[N, 3, 4]  input b: f32[4, 5]  input c: f32[1, 5]
        output y = (a @ b + c) * 0.5 - 1 / (1 + exp(-a.sum(dim=-1, keepdim=true))) ** 2 }
    """.replace("a.sum(dim=-1, keepdim=true)", "sum(a, dim=-1, keepdim=true)"))
    a, b, cc = xs["a"], xs["b"], xs["c"]
    ref = (a @ b + cc) * 0.5 - 1 / (1 + torch.exp(-a.sum(-1, keepdim=True))) ** 2
    torch.testing.assert_close(y, ref)


def test_compile_time_arithmetic_and_builtins():
    c = nndsl.compile("""
    model m(d: int = 64, heads: int = 4) { input x: f32[N, d]
        hs = d // heads
        scale = 1 / sqrt(hs)
        widths = [hs * i for_each_placeholder]
        output y = x * scale }""".replace("widths = [hs * i for_each_placeholder]", ""))
    node = next(n for n in c.graph if n.op == "scalar")
    assert node.attr["value"] == pytest.approx(1 / math.sqrt(16))


def test_symbolic_assert_becomes_a_constraint_on_example_dims():
    c = nndsl.compile("""
    model m() { input x: f32[N, T, 8]
        assert T % 5 == 0, "T must be a multiple of 5"
        output y = x |> reshape([N, T // 5, 40]) }""")
    xs = c.example_inputs(batch=2)
    assert xs["x"].shape[1] % 5 == 0
    y = c.to_torch()(**xs)
    assert y.shape == (2, xs["x"].shape[1] // 5, 40)
    xs = c.example_inputs(batch=1, T=10)
    assert xs["x"].shape == (1, 10, 8)


def test_param_statement_and_initializers():
    c = nndsl.compile("""
    model m() { input x: f32[N, 3]
        param scale: f32[3] = ones
        param shift: f32[3] = constant(0.5)
        output y = x * scale + shift }""")
    m = c.to_torch()
    x = torch.randn(2, 3)
    torch.testing.assert_close(m(x), x + 0.5)
    assert c.param_count() == 6


def test_imports_of_files_and_std(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.nn").write_text("""
    block mlp2(h: int) { input x: f32[..., F]
        return x |> linear(h) |> gelu |> linear(F) }""")
    spec = tmp_path / "main.nn"
    spec.write_text("""
    import "lib/blocks.nn"
    import std.attention
    model m() { input x: f32[B, T, 16]
        output y = x + (x |> mlp2(32) |> causal_self_attention(4)) }""")
    c = nndsl.compile(spec)
    y = c.to_torch()(**c.example_inputs(batch=2, T=5))
    assert y.shape == (2, 5, 16)


def test_several_models_in_one_file_and_model_selection():
    text = """
    model a() { input x: f32[N, 2]  output y = x |> linear(3) }
    model b() { input x: f32[N, 2]  output y = x |> linear(5) }"""
    with pytest.raises(nndsl.DefinitionError, match="several models: a, b"):
        nndsl.compile(text)
    assert nndsl.compile(text, model="b").param_count() == 15
    with pytest.raises(nndsl.DefinitionError, match="no model `c`"):
        nndsl.compile(text, model="c")


def test_params_override_and_type_check():
    text = "model m(width: int = 4) { input x: f32[N, 2]  output y = x |> linear(width) }"
    assert nndsl.compile(text, params={"width": 7}).param_count() == 21
    with pytest.raises(nndsl.ArgumentError, match="declared `int`"):
        nndsl.compile(text, params={"width": "wide"})
    with pytest.raises(nndsl.ArgumentError, match="no parameter `widht`"):
        nndsl.compile(text, params={"widht": 3})


def test_recurrent_layers_match_torch_modules():
    c, m, xs, y = run("""
    model m() { input x: f32[N, T, 5]
        out, h, cell = lstm(x, 7, layers=2, bidirectional=true, state=true)
        output o = out
        output hn = h
        output g = x |> gru(4) as g
        output r = x |> rnn(3, nonlinearity="relu") as r }""")
    sd = m.state_dict()
    ref = torch.nn.LSTM(5, 7, 2, batch_first=True, bidirectional=True)
    ref.load_state_dict({k.split(".", 1)[1]: v for k, v in sd.items() if k.startswith("lstm_0.")})
    o, (hn, _) = ref(xs["x"])
    torch.testing.assert_close(y[0], o)
    torch.testing.assert_close(y[1], hn)
    gru = torch.nn.GRU(5, 4, batch_first=True)
    gru.load_state_dict({k[2:]: v for k, v in sd.items() if k.startswith("g.")})
    torch.testing.assert_close(y[2], gru(xs["x"])[0])
    rnn = torch.nn.RNN(5, 3, batch_first=True, nonlinearity="relu")
    rnn.load_state_dict({k[2:]: v for k, v in sd.items() if k.startswith("r.")})
    torch.testing.assert_close(y[3], rnn(xs["x"])[0])


@pytest.mark.parametrize("op,ref", [
    ("relu", F.relu), ("sigmoid", torch.sigmoid), ("tanh", torch.tanh), ("silu", F.silu),
    ("swish", F.silu), ("gelu", F.gelu), ("elu", F.elu), ("selu", F.selu),
    ("softplus", F.softplus), ("leaky_relu(0.2)", lambda x: F.leaky_relu(x, 0.2)),
    ("log_softmax(dim=1)", lambda x: F.log_softmax(x, 1)),
])
def test_activations(op, ref):
    c, m, xs, y = run(f"model m() {{ input x: f32[N, 6]  output y = x |> {op} }}")
    torch.testing.assert_close(y, ref(xs["x"]))


def test_convs_pools_and_norms_match_functional_torch():
    c, m, xs, y = run("""
    model m() { input x: f32[N, 4, 12, 12]
        a = x |> conv2d(6, 3, padding="same", dilation=2, groups=2) as c
        b = a |> batch_norm as bn |> max_pool2d(3, stride=2, padding=1, ceil_mode=true)
        d = b |> conv_transpose2d(4, 2, stride=2) as t |> group_norm(2) as gn
        e = d |> avg_pool2d(2) |> layer_norm(shape=[4, 7, 7]) as ln
        output y = e |> adaptive_avg_pool2d(3) }""")
    sd = m.state_dict()
    x = xs["x"]
    a = F.conv2d(x, sd["c.weight"], sd["c.bias"], padding="same", dilation=2, groups=2)
    b = F.batch_norm(a, sd["bn.running_mean"], sd["bn.running_var"], sd["bn.weight"],
                     sd["bn.bias"], False)
    b = F.max_pool2d(b, 3, 2, 1, ceil_mode=True)
    d = F.group_norm(F.conv_transpose2d(b, sd["t.weight"], sd["t.bias"], stride=2), 2,
                     sd["gn.weight"], sd["gn.bias"])
    e = F.layer_norm(F.avg_pool2d(d, 2), [4, 7, 7], sd["ln.weight"], sd["ln.bias"])
    torch.testing.assert_close(y, F.adaptive_avg_pool2d(e, 3))


def test_train_and_eval_modes():
    c = nndsl.compile("""
    model m() { input x: f32[N, 16]
        output y = x |> batch_norm as bn |> dropout(0.5) }""")
    m = c.to_torch()
    x = torch.randn(64, 16) * 3 + 2
    m.train()
    y = m(x)
    assert (y == 0).float().mean() > 0.3
    assert int(m.state_dict()["bn.num_batches_tracked"]) == 1
    torch.testing.assert_close(m.state_dict()["bn.running_mean"], 0.1 * x.mean(0))
    m.eval()
    torch.testing.assert_close(m(x), F.batch_norm(x, m.bn.running_mean, m.bn.running_var,
                                                  m.bn.weight, m.bn.bias, False))


def test_ir_types_are_symbolic_objects():
    c = nndsl.compile("model m() { input x: f32[N, T, 4]  output y = x |> flatten(0, 1) }")
    (d0, d1) = c.output_types["y"].shape
    assert isinstance(d0, SymDim) and str(d0) == "N*T" and d1 == 4


def test_split_into_one_piece():
    c, m, xs, y = run("""model m() { input x: f32[N, 4]
        parts = split(x, [4], dim=1)
        output y = parts[0] * 2 }""")
    torch.testing.assert_close(y, xs["x"] * 2)
