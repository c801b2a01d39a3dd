"""``scan``: cell-level recurrence over time steps, one IR node with a body.

Outputs and gradients against hand-written PyTorch loops (std.recurrent's cells against
torch.nn.LSTMCell/GRUCell/RNNCell, the Bahdanau and Luong decoders against loops written here),
ONNX agreement, symbolic and fixed step counts, nesting and shared weights, the body through the
passes, the printer, FLOPs and drawing; misuse is a located error. Last, the recurrent family of
the zoo: the recurrent part of each whole-sequence spec and each spec's reference count are
rebuilt from torch.nn modules.
"""

import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nndsl
from nndsl.backends.torch.codegen import generate_source
from nndsl.ir import verify
from nndsl.ir.graph import Body

from zoo import REFERENCE, zoo


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Recurrent steps are many tiny ops: one thread runs them fastest (and alongside others)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def compile_text(text, **kw):
    return nndsl.compile(textwrap.dedent(text), **kw)


def outs(y):
    return y if isinstance(y, tuple) else (y,)


def onnx_session(c, weights):
    model = c.to_onnx(weights=weights)
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def assert_onnx_agrees(c, m, xs):
    sess = onnx_session(c, m.state_dict())
    with torch.no_grad():
        want = outs(m.eval()(**xs))
    got = sess.run(None, {k: v.numpy() for k, v in xs.items()})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-5)


def run_generated(c, tmp_path, m, xs):
    source = generate_source(c.graph)
    path = tmp_path / f"gen_{c.name}.py"
    path.write_text(source)
    namespace: dict = {"__name__": f"gen_{c.name}"}
    exec(compile(source, str(path), "exec"), namespace)
    cls = "".join(p[:1].upper() + p[1:] for p in c.name.split("_"))
    g = namespace[cls]()
    g.load_state_dict(m.state_dict(), strict=True)
    g.eval()
    with torch.no_grad():
        return source, outs(g(*xs.values()))


# ---------------------------------------------------------------- cells against torch.nn

CELLS = """
import std.recurrent
model cells(hidden: int = 8) {
    input x: f32[N, T, 5]
    input h0: f32[N, hidden]
    input c0: f32[N, hidden]
    h, c, hs = scan(lstm_step(hidden) as lstm, over=x, init=(h0, c0))
    g, gs = scan(gru_step(hidden) as gru, over=x, init=h0)
    r, rs = scan(rnn_step(hidden, nonlinearity="relu") as rnn, over=x, init=h0)
    output o_hs = hs
    output o_h = h
    output o_c = c
    output o_gs = gs
    output o_rs = rs
}
"""


def test_cells_match_torch_cells_in_outputs_and_gradients():
    c = compile_text(CELLS)
    m = c.to_torch(seed=3)
    lstm, gru, rnn = nn.LSTMCell(5, 8), nn.GRUCell(5, 8), nn.RNNCell(5, 8, nonlinearity="relu")
    # the cells have PyTorch's parameters: same count, same leaf names, in PyTorch's order
    assert c.param_count() == sum(p.numel() for cell in (lstm, gru, rnn)
                                  for p in cell.parameters())
    sd = m.state_dict()
    for cell, scope in ((lstm, "lstm.cell."), (gru, "gru.cell."), (rnn, "rnn.cell.")):
        mine = [k[len(scope):] for k in sd if k.startswith(scope)]
        assert mine == [k for k, _ in cell.named_parameters()]
        cell.load_state_dict({k: sd[scope + k] for k in mine})
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 5, generator=gen, requires_grad=True)
    h0, c0 = torch.randn(3, 8, generator=gen), torch.randn(3, 8, generator=gen)
    got = m(x, h0, c0)
    h, cc, g, r, hs, gs, rs = h0, c0, h0, h0, [], [], []
    for t in range(6):
        h, cc = lstm(x[:, t], (h, cc))
        g, r = gru(x[:, t], g), rnn(x[:, t], r)
        hs.append(h)
        gs.append(g)
        rs.append(r)
    want = (torch.stack(hs, 1), h, cc, torch.stack(gs, 1), torch.stack(rs, 1))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    weights = [torch.randn(o.shape, generator=gen) for o in want]
    ga = torch.autograd.grad(sum((o * w).sum() for o, w in zip(got, weights)),
                             [x] + list(m.parameters()))
    gb = torch.autograd.grad(sum((o * w).sum() for o, w in zip(want, weights)),
                             [x] + [p for cell in (lstm, gru, rnn) for p in cell.parameters()])
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_cells_in_onnx_and_generated_source(tmp_path):
    c = compile_text(CELLS)
    m = c.to_torch(seed=1).eval()
    for n, t in ((1, 1), (3, 5)):
        assert_onnx_agrees(c, m, c.example_inputs(batch=n, T=t))
    xs = c.example_inputs(batch=2, T=4)
    source, got = run_generated(c, tmp_path, m, xs)
    assert "for t in range(x.shape[1]):" in source and "x[:, t]" in source
    with torch.no_grad():
        for a, b in zip(got, outs(m(**xs))):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- the attention decoders

def _functional(module, params: dict, prefix: str, *args):
    own = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
    return torch.func.functional_call(module, own, args)


def bahdanau_by_hand(p: dict, src, tgt, sizes: dict):
    """RNNsearch's decoder, written as a plain PyTorch loop over the target words."""
    e, eh, dh = sizes["embed"], sizes["enc_hidden"], sizes["dec_hidden"]
    enc, _ = _functional(nn.GRU(e, eh, bidirectional=True, batch_first=True), p, "encoder.",
                         F.embedding(src, p["src_embed.weight"]))
    s = torch.tanh(enc[:, 0, eh:] @ p["W_s.weight"].T)
    y = F.embedding(tgt, p["tgt_embed.weight"])
    cell = nn.GRUCell(e + 2 * eh, dh)
    logits = []
    for i in range(tgt.shape[1]):
        score = torch.tanh((s @ p["decoder.W_a.weight"].T)[:, None] +
                           enc @ p["decoder.U_a.weight"].T) @ p["decoder.v_a.weight"].T
        alpha = torch.softmax(score[..., 0], dim=-1)
        ctx = (alpha[..., None] * enc).sum(1)
        t = F.linear(torch.cat([s, y[:, i], ctx], -1), p["decoder.readout_in.weight"],
                     p["decoder.readout_in.bias"])
        t = t.view(t.shape[0], -1, 2).max(-1).values
        logits.append(F.linear(t, p["decoder.W_o.weight"], p["decoder.W_o.bias"]))
        s = _functional(cell, p, "decoder.cell.", torch.cat([y[:, i], ctx], -1), s)
    return torch.stack(logits, 1)


def luong_by_hand(p: dict, src, tgt, sizes: dict):
    """Luong's decoder with input feeding, written as a plain PyTorch loop."""
    e, hd, layers = sizes["embed"], sizes["hidden"], sizes["layers"]
    memory, (h, c) = _functional(nn.LSTM(e, hd, layers, batch_first=True), p, "encoder.",
                                 F.embedding(src, p["src_embed.weight"]))
    h, c = list(h), list(c)
    feed = torch.zeros(src.shape[0], hd)
    y = F.embedding(tgt, p["tgt_embed.weight"])
    cells = [nn.LSTMCell(e + hd if i == 0 else hd, hd) for i in range(layers)]
    logits = []
    for t in range(tgt.shape[1]):
        x = torch.cat([y[:, t], feed], -1)
        for i, cell in enumerate(cells):
            h[i], c[i] = _functional(cell, p, f"decoder.stack.{i}.cell.", x, (h[i], c[i]))
            x = h[i]
        score = torch.einsum("nh,nsh->ns", x @ p["decoder.W_a.weight"].T, memory)
        ctx = torch.einsum("ns,nsh->nh", torch.softmax(score, -1), memory)
        feed = torch.tanh(torch.cat([ctx, x], -1) @ p["decoder.W_c.weight"].T)
        logits.append(F.linear(feed, p["decoder.W_s.weight"], p["decoder.W_s.bias"]))
    return torch.stack(logits, 1)


@pytest.mark.parametrize("key, by_hand", [("seq2seq_bahdanau", bahdanau_by_hand),
                                          ("seq2seq_luong", luong_by_hand)])
def test_attention_decoders_match_hand_written_loops(key, by_hand):
    z = zoo(key)
    c = z.compile(opt="O0")
    m = c.to_torch(seed=5).train()
    xs = c.example_inputs(batch=3, S=7, T=5)
    params = dict(m.named_parameters())
    got = m(**xs)
    want = by_hand(params, xs["src"], xs["tgt"], {**dict(c.graph.meta["params"]), **z.small})
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    w = torch.randn(got.shape, generator=torch.Generator().manual_seed(1))
    ga = torch.autograd.grad((got * w).sum(), list(params.values()))
    gb = torch.autograd.grad((want * w).sum(), list(params.values()))
    for name, a, b in zip(params, ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_attention_is_computed_inside_the_step():
    c = zoo("seq2seq_bahdanau").compile(opt="O0")
    scan = next(n for n in c.graph if n.op == "scan")
    body_ops = [n.op for n in scan.attr["body"].graph]
    assert body_ops.count("softmax") == 1 and "tanh" in body_ops     # vᵀ tanh(W s + U h)
    assert not any(n.op == "softmax" for n in c.graph)             # not outside the loop
    # the decoder's parameters are ordinary model parameters in the step's scope
    assert {"decoder.W_a.weight", "decoder.cell.weight_ih", "decoder.W_o.bias"} <= \
        {n.name for n in c.graph.params()}


def test_greedy_captioner_is_the_teacher_forced_one_fed_its_own_words():
    small = dict(zoo("image_captioner:image_captioner_greedy").small)
    greedy = zoo("image_captioner:image_captioner_greedy").compile()
    forced = zoo("image_captioner:image_captioner").compile()
    g = greedy.to_torch(seed=2).eval()
    f = forced.to_torch().eval()
    f.load_state_dict(g.state_dict(), strict=True)        # one set of names for both
    image = greedy.example_inputs(batch=3)["image"]
    with torch.no_grad():
        words, logits = g(image)
        caption = torch.cat([torch.full((3, 1), 1), words[:, :-1]], dim=1)   # bos, then its words
        torch.testing.assert_close(f(image=image, caption=caption), logits, rtol=1e-5,
                                   atol=1e-5)
    assert words.shape == (3, small["steps"]) and words.dtype == torch.int64


# ---------------------------------------------------------------- step counts, dims, nesting

STEPS = """
block halve(k: float) {
    input h: f32[N, D]
    h2 = h * k + 1
    return h2, h2 |> sum(dim=-1)
}
model steps(fixed: bool = false) {
    input h0: f32[N, 4]
    input pad: f32[N, T]
    n = if fixed { 3 } else { T }
    h, sums = scan(halve(0.5) as step, init=h0, steps=n)
    output o_h = h
    output o_sums = sums
}
"""


def _halve_by_hand(h, n):
    sums = []
    for _ in range(n):
        h = h * 0.5 + 1
        sums.append(h.sum(-1))
    return h, torch.stack(sums, 1)


@pytest.mark.parametrize("fixed", [False, True], ids=["symbolic", "fixed"])
def test_steps_without_sequences_symbolic_or_fixed(fixed, tmp_path):
    c = compile_text(STEPS, params={"fixed": fixed})
    scan = next(n for n in c.graph if n.op == "scan")
    assert scan.type.shape[0].__class__.__name__ == "SymDim"
    assert str(scan.types[1]) == ("f32[N, 3]" if fixed else "f32[N, T]")
    m = c.to_torch().eval()
    for n, t in ((1, 1), (3, 6)):
        xs = c.example_inputs(batch=n, T=t)
        got = m(**xs)
        want = _halve_by_hand(xs["h0"], 3 if fixed else t)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)
        assert_onnx_agrees(c, m, xs)
    source, got = run_generated(c, tmp_path, m, xs)
    assert ("for t in range(3):" if fixed else "for t in range(T):") in source
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_time_major_scan_and_several_sequences():
    c = compile_text("""
        block mix() {
            input a: f32[N, F]
            input b: f32[N, F]
            input h: f32[N, F]
            h2 = tanh(a * h + b)
            return h2, h2 * 2
        }
        model tm() {
            input a: f32[T, N, 4]
            input b: f32[T, N, 4]
            h, ys = scan(mix, over=(a, b), init=zeros([N, 4]), dim=0)
            output o = ys
        }""")
    assert str(c.graph.type_of(c.graph.outputs[0][1])) == "f32[T, N, 4]"
    m = c.to_torch().eval()
    xs = {"a": torch.randn(5, 2, 4), "b": torch.randn(5, 2, 4)}
    h, want = torch.zeros(2, 4), []
    for t in range(5):
        h = torch.tanh(xs["a"][t] * h + xs["b"][t])
        want.append(h * 2)
    torch.testing.assert_close(m(**xs), torch.stack(want, 0))
    assert_onnx_agrees(c, m, xs)


def test_a_step_reads_outer_values_bound_by_name():
    """Two outputs of one outer node, bound to the step by name: each its own body input."""
    c = compile_text("""
        block affine_step() {
            input x: f32[N, F]
            input h: f32[N, F]
            input a: f32[N, F]
            input b: f32[N, F]
            h2 = h + x * a - b
            return h2, h2
        }
        model bound() {
            input x: f32[N, T, 4]
            input y: f32[N, 8]
            p, q = split(y, 2, dim=-1)
            h, hs = scan(affine_step(a=p, b=q) as s, over=x, init=zeros([N, 4]))
            output o = hs
        }""")
    m = c.to_torch().eval()
    xs = c.example_inputs(batch=2, T=3)
    p, q = xs["y"].split(4, dim=-1)
    h, want = torch.zeros(2, 4), []
    for t in range(3):
        h = h + xs["x"][:, t] * p - q
        want.append(h)
    torch.testing.assert_close(m(**xs), torch.stack(want, 1))
    assert_onnx_agrees(c, m, xs)


NESTED = """
import std.recurrent
block accumulate() {
    input z: f32[N, F]
    input acc: f32[N, F]
    return acc + z * 0.5
}
block outer_step(width: int) {
    input x: f32[N, F]
    input h: f32[N, F]
    input memory: f32[N, S, F]
    acc = scan(accumulate, over=memory, init=h)             # a scan inside a step
    h2 = tanh(acc + (x |> linear(width) as proj))
    return h2, h2
}
model nested() {
    input x: f32[N, T, 4]
    input memory: f32[N, S, 4]
    cell = gru_step(4)
    h1, ys = scan(outer_step(4, memory=memory) as outer, over=x, init=zeros([N, 4]))
    ha, ya = scan(cell, over=ys, init=h1)                   # one instance, applied twice:
    hb, yb = scan(cell, over=x, init=ha)                    # one set of weights
    output o = yb + ya[:, -1:]
}
"""


def test_nested_scans_and_a_step_shared_by_two_scans(tmp_path):
    c = compile_text(NESTED)
    names = [n.name for n in c.graph.params()]
    assert names == ["outer.proj.weight", "outer.proj.bias", "cell.cell.weight_ih",
                     "cell.cell.weight_hh", "cell.cell.bias_ih", "cell.cell.bias_hh"]
    m = c.to_torch(seed=4).eval()
    xs = c.example_inputs(batch=2, T=3, S=4)
    p = m.state_dict()
    gru = nn.GRUCell(4, 4)
    gru.load_state_dict({k[len("cell.cell."):]: v for k, v in p.items() if k.startswith("cell.")})
    x, mem = xs["x"], xs["memory"]
    h, ys = torch.zeros(2, 4), []
    for t in range(3):
        acc = h
        for s in range(4):
            acc = acc + mem[:, s] * 0.5
        h = torch.tanh(acc + F.linear(x[:, t], p["outer.proj.weight"], p["outer.proj.bias"]))
        ys.append(h)
    ya = []
    for t in range(3):
        h = gru(ys[t], h)
        ya.append(h)
    yb = []
    for t in range(3):
        h = gru(x[:, t], h)
        yb.append(h)
    want = torch.stack(yb, 1) + ya[-1][:, None]
    with torch.no_grad():
        torch.testing.assert_close(m(**xs), want, rtol=1e-5, atol=1e-6)
        assert_onnx_agrees(c, m, xs)
        source, got = run_generated(c, tmp_path, m, xs)
        torch.testing.assert_close(got[0], want, rtol=1e-5, atol=1e-6)
    assert source.count("for t") == 4                               # 4 loops, one nested


# ---------------------------------------------------------------- the IR: printer, passes, FLOPs

SIMPLE = """
block step(hidden: int) {
    input x: f32[N, F]
    input h: f32[N, H]
    h2 = tanh((x |> linear(hidden) as ih) + (h |> linear(hidden) as hh))
    return h2, h2 |> linear(3) as out |> relu
}
model simple(hidden: int = 8) {
    input x: f32[N, T, 5]
    h, ys = scan(step(hidden) as cell, over=x, init=zeros([N, hidden]))
    output y = ys
}
"""


def test_one_node_with_a_body_printed_indented_and_deterministic():
    c = compile_text(SIMPLE, opt="O0")
    assert [n.op for n in c.graph].count("scan") == 1          # a loop, not unrolled steps
    text = c.ir()
    assert "= scan(%x, %full, %cell.ih.weight" in text and "{n_over=1, n_state=1}" in text
    assert "\n    body(%cell.x: f32[N, 5], %cell.h: f32[N, 8], %cell.ih.weight: f32[8, 5]," in text
    assert "\n      %cell.ih: f32[N, 8] = linear(%cell.x, %cell.ih.weight, %cell.ih.bias)" in text
    assert "\n      return %cell.tanh, %cell.relu\n    }\n" in text
    assert text == compile_text(SIMPLE, opt="O0").ir()
    scan = next(n for n in c.graph if n.op == "scan")
    assert scan.attr["body"] == next(n for n in compile_text(SIMPLE, opt="O0").graph
                                     if n.op == "scan").attr["body"]


def test_passes_optimize_the_body_and_keep_the_function():
    o0, o1 = compile_text(SIMPLE, opt="O0"), compile_text(SIMPLE, opt="O1")
    body = next(n for n in o1.graph if n.op == "scan").attr["body"].graph
    assert [(n.op, n.attr.get("act")) for n in body if n.op == "linear"][-1] == ("linear", "relu")
    assert not any(n.op == "relu" for n in body)
    w = o0.to_torch(seed=2).state_dict()
    xs = o0.example_inputs(batch=2, T=4)
    for c in (o1, compile_text(SIMPLE, opt="O2")):
        torch.testing.assert_close(c.to_torch(weights=w).eval()(**xs),
                                   o0.to_torch(weights=w).eval()(**xs))


def test_flops_are_steps_times_the_body():
    c = compile_text(SIMPLE)
    row = lambda t: next(r for r in c.layers(batch=1, T=t) if r.op == "scan")  # noqa: E731
    assert row(10).flops == 2 * row(5).flops > 0
    assert row(5).params == c.param_count()              # the step's weights, counted at the scan


def test_verify_checks_the_body_and_drawing_shows_it():
    from nndsl import draw
    c = compile_text(SIMPLE)
    assert "each step (over dim 1): linear" in draw.to_dot(c.graph)
    g = c.graph.copy()
    scan = next(n for n in g if n.op == "scan")
    body = scan.attr["body"].graph
    broken = body.copy()
    broken.outputs = broken.outputs[1:]                        # the state's output is gone
    bad = scan.with_(attrs={**scan.attr, "body": Body(broken)})
    g._nodes[scan.name] = bad
    with pytest.raises(nndsl.NndslError, match="state 0 of scan"):
        verify(g)


# ---------------------------------------------------------------- misuse

@pytest.mark.parametrize("line, text, code, message", [
    ("h, ys = scan(step(4) as s, over=x, init=h0, steps=7)", "", "E0319",
     "has `steps=7` but its sequences have T steps"),
    ("h, ys = scan(step(4) as s, over=x, init=h0, dim=3)", "", "E0319",
     "steps along dim 3"),
    ("h, ys = scan(step(4) as s, over=4, init=h0)", "", "E0233", "`over` must be a tensor"),
    ("h, ys = scan(step(4) as s, over=x, init=h0, steps=0)", "", "E0233",
     "`steps` must be a positive int"),
    ("h, ys = scan(step(x, width=4) as s, over=x, init=h0)", "", "E0231",
     "has 1 input to fill (h)"),
    ("h, ys = scan(step(4) as s, over=x, init=zeros([N, 5]))", "", "E0316",
     "`step` expects input `h`"),
])
def test_misuse_is_a_located_error(line, text, code, message):
    spec = ("block step(width: int) {\n"
            "    input x: f32[N, F]\n"
            "    input h: f32[N, width]\n"
            "    h2 = tanh(h + (x |> linear(width) as proj))\n"
            "    return h2, h2\n"
            "}\n"
            "model m() {\n"
            "    input x: f32[N, T, 3]\n"
            "    h0 = zeros([N, 4])\n"
            f"    {line}\n"
            "    output y = ys\n"
            "}\n")
    with pytest.raises(nndsl.NndslError) as err:
        nndsl.compile(spec)
    assert err.value.code == code and message in err.value.message, err.value.render()
    assert err.value.span is not None and err.value.span.line == 10, err.value.render()


# ---------------------------------------------------------------- the recurrent family

def _count(*modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.mark.parametrize("stem, layer, torch_layer", [
    ("rnn_classifier", "rnn", nn.RNN),
    ("gru_tagger", "gru", nn.GRU),
    ("bilstm_tagger", "lstm", nn.LSTM),
])
def test_whole_sequence_specs_have_the_reference_recurrent_layer(stem, layer, torch_layer):
    c = zoo(stem).compile(small=False)
    own = sum(int(np.prod(n.type.shape)) for n in c.graph.params()
              if n.name.startswith(layer + "."))
    with torch.device("meta"):
        ref = torch_layer(128, 256, num_layers=2, bidirectional=True)
    assert own == _count(ref) == {"rnn": 591_872, "gru": 1_775_616, "lstm": 2_367_488}[layer]
    names = [n.name[len(layer) + 1:] for n in c.graph.params() if n.name.startswith(layer + ".")]
    assert names == [k for k, _ in ref.named_parameters()]


def _reference_modules(key: str) -> list:
    if key in ("rnn_classifier", "gru_tagger", "bilstm_tagger"):
        layer = {"rnn_classifier": nn.RNN, "gru_tagger": nn.GRU, "bilstm_tagger": nn.LSTM}[key]
        out = {"rnn_classifier": 2, "gru_tagger": 17, "bilstm_tagger": 9}[key]
        return [nn.Embedding(20000, 128), layer(128, 256, 2, bidirectional=True),
                nn.Linear(512, out)]
    if key == "seq2seq_bahdanau":
        return [nn.Embedding(30000, 620), nn.Embedding(30000, 620),
                nn.GRU(620, 1000, bidirectional=True), nn.Linear(1000, 1000, bias=False),
                nn.Linear(1000, 1000, bias=False), nn.Linear(2000, 1000, bias=False),
                nn.Linear(1000, 1, bias=False), nn.GRUCell(620 + 2000, 1000),
                nn.Linear(1000 + 620 + 2000, 2 * 500), nn.Linear(500, 30000)]
    if key == "seq2seq_luong":
        return [nn.Embedding(50000, 1000), nn.Embedding(50000, 1000), nn.LSTM(1000, 1000, 4),
                nn.LSTMCell(2000, 1000)] + [nn.LSTMCell(1000, 1000) for _ in range(3)] + \
            [nn.Linear(1000, 1000, bias=False), nn.Linear(2000, 1000, bias=False),
             nn.Linear(1000, 50000)]
    widths = [3, 32, 64, 128, 256]
    cnn = [m for a, b in zip(widths, widths[1:])
           for m in (nn.Conv2d(a, b, 3, bias=False), nn.BatchNorm2d(b))]
    return cnn + [nn.Linear(256, 512), nn.Linear(512, 512), nn.Linear(512, 512),
                  nn.Embedding(10000, 512), nn.LSTMCell(512, 512), nn.Linear(512, 10000)]


@pytest.mark.parametrize("key", ["rnn_classifier", "gru_tagger", "bilstm_tagger",
                                 "seq2seq_bahdanau", "seq2seq_luong",
                                 "image_captioner:image_captioner",
                                 "image_captioner:image_captioner_greedy"])
def test_reference_counts_are_those_of_torch_modules(key):
    with torch.device("meta"):
        want = _count(*_reference_modules(key))
    assert REFERENCE[key] == want
    assert zoo(key).compile(small=False).param_count() == want
