"""Gather, scatter and segment ops, and the graph family of the zoo.

Each op is compared, in the torch module and in onnxruntime, with an independent NumPy
computation (loops and ``np.add.at``, in float64); inputs avoid ties where an order depends on
them. GCN, GraphSAGE, GAT and GIN are compared with dense-adjacency computations written here
in plain PyTorch from the papers' formulas, with the compiled model's weights.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

import nndsl
from nndsl.ir.symbols import bind_symbols

from conftest import ROOT

GRAPHS = ROOT / "specs" / "graphs"


# ------------------------------------------------------------------ helpers

def _session(model):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def run_both(text: str, inputs: dict, **params):
    """The spec's outputs on ``inputs`` (NumPy arrays by name) from the torch module and from
    onnxruntime, as two lists of NumPy arrays; the ONNX model passes onnx's full check first."""
    c = nndsl.compile(textwrap.dedent(text), params=params or None)
    m = c.to_torch(seed=0).eval()
    with torch.no_grad():
        out = m(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    out = out if isinstance(out, tuple) else (out,)
    proto = c.to_onnx(weights=m.state_dict())
    onnx.checker.check_model(proto, full_check=True)
    onnx_out = _session(proto).run(None, inputs)
    return [o.numpy() for o in out], onnx_out


def check(got, want, rtol=1e-5, atol=1e-6):
    assert got.shape == want.shape
    if np.issubdtype(want.dtype, np.integer):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def check_both(torch_out, onnx_out, want, as_f32=True, **tol):
    """Each output of both runtimes against its expected array."""
    for got_t, got_o, w in zip(torch_out, onnx_out, want):
        w = w.astype(np.float32) if as_f32 else w
        check(got_t, w, **tol)
        check(got_o, w, **tol)


def no_ties(rng, *shape):
    """Floats without ties: a shuffled range, scaled."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) * 0.37 - 3.0).astype(np.float32)


# NumPy references, written from the ops' definitions

def np_segment_sum(data, ids, n):
    out = np.zeros((n,) + data.shape[1:], np.float64 if data.dtype.kind == "f" else data.dtype)
    np.add.at(out, ids, data)
    return out


def np_segment_mean(data, ids, n):
    counts = np.bincount(ids, minlength=n).reshape((n,) + (1,) * (data.ndim - 1))
    return np_segment_sum(data, ids, n) / np.maximum(counts, 1)


def np_segment_max(data, ids, n):
    out = np.zeros((n,) + data.shape[1:], data.dtype)
    for s in range(n):
        rows = data[ids == s]
        if len(rows):
            out[s] = rows.max(axis=0)
    return out


def np_segment_softmax(scores, ids, n):
    out = np.zeros(scores.shape, np.float64)
    for s in range(n):
        rows = scores[ids == s].astype(np.float64)
        if len(rows):
            e = np.exp(rows - rows.max(axis=0))
            out[ids == s] = e / e.sum(axis=0)
    return out


def np_scatter_add(x, index, src, dim):
    out = x.astype(np.float64)
    for pos in np.ndindex(*index.shape):
        target = list(pos)
        target[dim] = index[pos]
        out[tuple(target)] += src[pos]
    return out


# ------------------------------------------------------------------ the ops

SEGMENTS = """
model segments(S: int = 6) {
    input data: f32[E, 3]
    input ids: i64[E]
    input data3: f32[E, 2, 4]
    output o1 = segment_sum(data, ids, S)
    output o2 = segment_mean(data, ids, S)
    output o3 = segment_max(data, ids, S)
    output o4 = segment_softmax(data, ids, S)
    output o5 = segment_sum(data3, ids, S)
    output o6 = segment_mean(data3, ids, S)
    output o7 = segment_max(data3, ids, S)
    output o8 = segment_softmax(data3, ids, S)
    output o9 = segment_sum(data[:, 0], ids, S)
    output o10 = segment_max(data[:, 1], ids, S)
    output o11 = segment_softmax(data[:, 2], ids, S)
}
"""


def test_segment_ops_match_numpy_with_empty_segments():
    rng = np.random.default_rng(0)
    ids = np.array([0, 2, 2, 5, 0, 2, 3, 0, 5], np.int64)       # segments 1 and 4 are empty
    data = no_ties(rng, 9, 3)
    data3 = no_ties(rng, 9, 2, 4) - 40.0                         # all negative: max is not 0
    torch_out, onnx_out = run_both(SEGMENTS, {"data": data, "ids": ids, "data3": data3})
    want = []
    for d in (data, data3):
        want += [np_segment_sum(d, ids, 6), np_segment_mean(d, ids, 6),
                 np_segment_max(d, ids, 6), np_segment_softmax(d, ids, 6)]
    want += [np_segment_sum(data[:, 0], ids, 6), np_segment_max(data[:, 1], ids, 6),
             np_segment_softmax(data[:, 2], ids, 6)]
    check_both(torch_out, onnx_out, want)
    # empty segments give 0, negative maxima stay negative
    assert (torch_out[6][[1, 4]] == 0).all() and (torch_out[6][[0, 2, 3, 5]] < 0).all()


def test_segment_softmax_is_stable_for_large_scores():
    ids = np.array([0, 0, 1, 1, 1], np.int64)
    scores = np.array([[1000.0], [1001.0], [-1000.0], [-1002.0], [-999.0]], np.float32)
    torch_out, onnx_out = run_both("""
        model m() {
            input s: f32[E, 1]
            input ids: i64[E]
            output y = segment_softmax(s, ids, 2)
        }""", {"s": scores, "ids": ids})
    want = np_segment_softmax(scores, ids, 2).astype(np.float32)
    for got in (torch_out[0], onnx_out[0]):
        assert np.isfinite(got).all()
        check(got, want)


def test_integer_segment_sum_and_max():
    ids = np.array([1, 1, 0, 3, 1], np.int64)
    data = np.array([[4, -7], [9, 2], [-5, -1], [3, 3], [0, 8]], np.int64)
    torch_out, onnx_out = run_both("""
        model m() {
            input d: i64[E, 2]
            input ids: i64[E]
            output s = segment_sum(d, ids, 4)
            output x = segment_max(d, ids, 4)
        }""", {"d": data, "ids": ids})
    for got in (torch_out, onnx_out):
        check(got[0], np_segment_sum(data, ids, 4))
        check(got[1], np_segment_max(data, ids, 4))


def test_segment_ops_with_a_symbolic_number_of_segments():
    """num_segments is the node count V of another input, or an expression of it."""
    text = """
        model m() {
            input x: f32[V, 3]
            input edges: i64[2, E]
            h = index_select(x, edges[0])
            output agg = segment_mean(h, edges[1], V)
            output wide = segment_sum(h, edges[1], V + 2)
        }"""
    c = nndsl.compile(textwrap.dedent(text))
    assert [str(t) for t in c.output_types.values()] == ["f32[V, 3]", "f32[V + 2, 3]"]
    rng = np.random.default_rng(1)
    for v in (1, 4, 7):
        x = no_ties(rng, v, 3)
        edges = rng.integers(0, v, (2, 11)).astype(np.int64)
        torch_out, onnx_out = run_both(text, {"x": x, "edges": edges})
        h = x[edges[0]]
        want = [np_segment_mean(h, edges[1], v), np_segment_sum(h, edges[1], v + 2)]
        check_both(torch_out, onnx_out, want)


def test_gather_index_select_and_scatter_add():
    rng = np.random.default_rng(2)
    x = no_ties(rng, 4, 5)
    index = rng.integers(0, 4, (3, 5)).astype(np.int64)     # smaller than x outside dim 0
    cols = rng.integers(0, 5, (4, 7)).astype(np.int64)      # wider than x along dim 1
    rows = np.array([3, 0, 0, 2, 1, 3], np.int64)
    src = no_ties(rng, 3, 5)
    text = """
        model m() {
            input x: f32[4, 5]
            input index: i64[3, 5]
            input cols: i64[4, 7]
            input rows: i64[6]
            input src: f32[3, 5]
            output g0 = gather(x, index, 0)
            output g1 = gather(x, cols, -1)
            output s0 = index_select(x, rows)
            output s1 = index_select(x, rows[:4], dim=1)
            output a0 = scatter_add(x, index, src, 0)
            output a1 = scatter_add(x, cols[:, :5], x * 3, dim=1)
        }"""
    torch_out, onnx_out = run_both(text, {"x": x, "index": index, "cols": cols, "rows": rows,
                                          "src": src})
    want = [np.take_along_axis(x, index, 0), np.take_along_axis(x, cols, 1),
            np.take(x, rows, 0), np.take(x, rows[:4], 1),
            np_scatter_add(x, index, src, 0), np_scatter_add(x, cols[:, :5], x * 3, 1)]
    check_both(torch_out, onnx_out, want)


def test_argsort_and_cumsum():
    rng = np.random.default_rng(3)
    x = no_ties(rng, 3, 6)
    t = rng.integers(-5, 5, (3, 6)).astype(np.int64)
    b = rng.random((3, 6)) < 0.5
    text = """
        model m() {
            input x: f32[N, 6]
            input t: i64[N, 6]
            input b: bool[N, 6]
            output up = argsort(x)
            output down = argsort(x, dim=0, descending=true)
            output sorted = gather(x, argsort(x, dim=1), 1)
            output c0 = cumsum(x, dim=0)
            output c1 = cumsum(x)
            output ci = cumsum(t, dim=1)
            output cb = cumsum(b, dim=1)
        }"""
    torch_out, onnx_out = run_both(text, {"x": x, "t": t, "b": b})
    want = [np.argsort(x, axis=-1, kind="stable"), np.argsort(-x, axis=0, kind="stable"),
            np.sort(x, axis=1), np.cumsum(x.astype(np.float64), 0).astype(np.float32),
            np.cumsum(x.astype(np.float64), 1).astype(np.float32), np.cumsum(t, 1),
            np.cumsum(b.astype(np.int64), 1)]
    check_both(torch_out, onnx_out, want, as_f32=False, rtol=1e-5, atol=1e-5)


def test_gradients_match_finite_differences():
    c = nndsl.compile(textwrap.dedent("""
        model m() {
            input d: f64[E, 3]
            input ids: i64[E]
            rows = ids[:3] |> unsqueeze(-1) |> expand([3, 3])
            output y = segment_sum(d, ids, 4) + segment_mean(d * d, ids, 4)
                       + segment_max(d, ids, 4) + sum(index_select(d, ids), dim=0)
            output z = segment_softmax(d, ids, 4) * d + cumsum(d, dim=0)
                       + scatter_add(d, argsort(d, dim=0), d * 2, 0)
                       + sum(gather(d, rows, 0), dim=0)
        }"""))
    m = c.to_torch()
    ids = torch.tensor([0, 3, 3, 1, 0, 3])
    d = torch.from_numpy(no_ties(np.random.default_rng(9), 6, 3).astype(np.float64))
    torch.autograd.gradcheck(lambda t: m(d=t, ids=ids), (d.requires_grad_(),))


def test_types_and_flops():
    c = nndsl.compile(textwrap.dedent("""
        model m() {
            input x: f32[V, 8]
            input t: i32[V, 8]
            input ids: i64[E]
            output a = argsort(x)
            output s = cumsum(t)
            output m = segment_max(index_select(x, ids), ids, V)
        }"""))
    assert [str(t) for t in c.output_types.values()] == ["i64[V, 8]", "i64[V, 8]", "f32[V, 8]"]
    rows = {r.op: r.flops for r in c.layers(batch=2, E=5)}
    assert rows["argsort"] == 2 * 8 * 3          # log2(8) comparisons per element
    assert rows["cumsum"] == 16 and rows["index_select"] == 0 and rows["segment_max"] == 40


@pytest.mark.parametrize("line, message", [
    ("index_select(x, f)", "index_select needs an i64 index, got f32[E]"),
    ("index_select(x, t |> cast(i32))", "index_select needs an i64 index, got i32[E]"),
    ("index_select(x, e2)", "index_select needs a 1-d index, got i64[2, E]"),
    ("index_select(x, ids, dim=2)", "dim 2 is out of range for a tensor of rank 2"),
    ("gather(x, ids, 0)", "gather needs an index of the same rank as x"),
    ("gather(x, e2, 1)", "gather along dim 1: dim 0 of the index is 2 but dim 0 of x is V"),
    ("scatter_add(x, e2, x, 1)", "scatter_add along dim 1: dim 0 of the index is 2"),
    ("scatter_add(x2, e2[:, :4], x2, 1)", "scatter_add needs src of the index's shape"),
    ("scatter_add(x2, e2[:, :4], x2[:, :4] |> cast(f64), 1)",
     "scatter_add adds f64[2, 4] into f32[2, 6]: the dtypes differ"),
    ("segment_sum(x, ids, V)", "segment_ids must be i64[V], got i64[E]"),
    ("segment_sum(x, f, V)", "segment_sum needs an i64 segment_ids, got f32[E]"),
    ("segment_mean(t, ids, V)", "segment_mean needs a floating-point tensor"),
    ("segment_sum(b, ids, V)", "segment_sum needs numeric data, got bool[E]"),
    ("segment_sum(f, ids, 0)", "segment_sum needs a positive number of segments, got 0"),
    ("segment_softmax(f, ids, 1.5)", "argument `num_segments` must be an int or a dim"),
    ("argsort(b)", "argsort needs a numeric tensor of rank >= 1"),
    ("cumsum(f, dim=1)", "dim 1 is out of range for a tensor of rank 1"),
])
def test_bad_operands_are_located_errors(line, message):
    text = textwrap.dedent(f"""\
        model m() {{
            input x: f32[V, 4]
            input ids: i64[E]
            input e2: i64[2, E]
            input f: f32[E]
            input t: i64[E]
            input b: bool[E]
            input x2: f32[2, 6]
            output y = {line}
        }}""")
    with pytest.raises(nndsl.NndslError) as err:
        nndsl.compile(text)
    e = err.value
    assert message in e.message, e.message
    assert e.span is not None and e.span.line == 9 and e.span.col > 5
    if "needs an i64" in message or "floating" in message or "numeric" in message:
        assert e.hint and "cast(" in e.hint


def test_a_tensor_subscript_is_index_select_with_its_id_range():
    c = nndsl.compile("model m() { input x: f32[V, 4]  input i: i64[E]  output y = x[i] }")
    assert [n.op for n in c.graph if n.op not in ("input", "param")] == ["index_select"]
    lo, hi = c.graph.meta["input_ranges"]["i"]
    assert lo == 0 and str(hi) == "V"             # example ids are valid rows of x
    x = np.arange(20, dtype=np.float32).reshape(5, 4)
    i = np.array([4, 0, 0, 2], dtype=np.int64)
    t, o = run_both("model m() { input x: f32[V, 4]  input i: i64[E]  output y = x[i] }",
                    {"x": x, "i": i})
    check_both(t, o, [x[i]])


# ------------------------------------------------------------------ ids and example inputs

def test_index_inputs_get_a_symbolic_id_range():
    """edge_index feeds index_select and segment ops over the V nodes: its recorded range is
    [0, V), so example inputs are valid node ids at every node count, in torch and in the ONNX
    file's metadata (which ``nndsl run`` reads)."""
    c = nndsl.compile(GRAPHS / "gat.nn", params={"F": 4, "hidden": 2, "heads": 2})
    lo, hi = c.graph.meta["input_ranges"]["edge_index"]
    assert lo == 0 and str(hi) == "V"       # through the slices and the self-loop concat
    for v in (1, 2, 5):
        xs = c.example_inputs(batch=v)
        e = xs["edge_index"]
        assert e.shape == (2, bind_symbols(c.graph, v)["E"])
        assert int(e.min()) >= 0 and int(e.max()) < v
    meta = {p.key: p.value for p in c.to_onnx().metadata_props}
    assert json.loads(meta["nndsl.input_ranges"]) == {"edge_index": [0, "V"]}


def test_ranges_keep_the_tighter_bound():
    c = nndsl.compile(textwrap.dedent("""
        model m() {
            input x: f32[V, 4]
            input ids: i64[E]
            a = ids |> embedding(3, 2) as emb
            output y = (index_select(x, ids) |> sum(dim=-1) |> unsqueeze(-1)) + a
        }"""))
    lo, hi = c.graph.meta["input_ranges"]["ids"]
    assert lo == 0 and [str(b) for b in hi] == ["3", "V"]
    for v in (1, 2, 8):
        ids = c.example_inputs(batch=v, E=50)["ids"]
        assert int(ids.max()) < min(3, v)


def test_run_the_spec_and_its_onnx_file(tmp_path, capsys, monkeypatch):
    from nndsl.cli import main
    monkeypatch.chdir(ROOT)
    spec = "specs/graphs/gcn.nn"
    out = tmp_path / "gcn.onnx"
    assert main(["compile", spec, "--to", "onnx", "-o", str(out), "--param", "F=8"]) == 0
    assert main(["run", spec, "--param", "F=8", "--batch", "5",
                 "--save", str(tmp_path / "a.npz")]) == 0
    assert main(["run", str(out), "--batch", "5", "--save", str(tmp_path / "b.npz")]) == 0
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert a["logits"].shape == (5, 7)
    np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ the specs, densely

def random_graph(rng, v: int, e: int) -> np.ndarray:
    """``e`` distinct directed edges j -> i with j != i (GAT adds the self-loops itself)."""
    pairs = [(j, i) for j in range(v) for i in range(v) if i != j]
    pick = rng.choice(len(pairs), size=e, replace=False)
    return np.array([pairs[k] for k in pick], np.int64).T.copy()


def dense_adjacency(edges: np.ndarray, v: int) -> torch.Tensor:
    """A[i, j] = the number of edges j -> i."""
    a = torch.zeros(v, v, dtype=torch.float64)
    for j, i in edges.T:
        a[i, j] += 1
    return a


def compiled_and_weights(name: str, **params):
    c = nndsl.compile(GRAPHS / f"{name}.nn", params={"p": 0.0, **params})
    m = c.to_torch(seed=7).eval()
    w = {k: v.detach().double() for k, v in m.state_dict().items()}
    for k in w:          # biases start at zero: perturb them so that each one is checked
        if k.endswith("bias") or k.endswith("eps"):
            w[k] = w[k] + torch.linspace(-0.5, 0.5, w[k].numel(), dtype=torch.float64
                                         ).reshape(w[k].shape)
    m.load_state_dict({k: v.float() for k, v in w.items()})
    return c, m, w


def outputs_agree(c, m, x, edges, want):
    with torch.no_grad():
        got = m(x=torch.from_numpy(x), edge_index=torch.from_numpy(edges))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)
    sess = _session(c.to_onnx(weights=m.state_dict()))
    got_onnx = sess.run(None, {"x": x, "edge_index": edges})[0]
    np.testing.assert_allclose(got_onnx, want.numpy(), rtol=1e-4, atol=1e-5)


def gcn_layer(a, x, weight, bias):
    """Kipf & Welling: D̂^-1/2 (A + I) D̂^-1/2 X W + b."""
    a_hat = a + torch.eye(a.shape[0], dtype=a.dtype)
    d = a_hat.sum(1).rsqrt()
    return d[:, None] * a_hat * d[None, :] @ (x @ weight.T) + bias


def test_gcn_matches_a_dense_adjacency_implementation():
    rng = np.random.default_rng(4)
    c, m, w = compiled_and_weights("gcn", F=6, hidden=5, classes=3)
    v = 7
    edges = random_graph(rng, v, 16)
    edges = np.concatenate([edges, edges[:, :3]], axis=1)     # repeated edges count twice
    x = rng.standard_normal((v, 6)).astype(np.float32)
    a = dense_adjacency(edges, v)
    h = torch.relu(gcn_layer(a, torch.from_numpy(x).double(), w["conv1.lin.weight"],
                             w["conv1.bias"]))
    want = gcn_layer(a, h, w["conv2.lin.weight"], w["conv2.bias"])
    outputs_agree(c, m, x, edges, want)


def gat_layer(a, x, weight, att_src, att_dst, bias, concat: bool):
    """Veličković et al.: per head, e_ij = LeakyReLU(a_dstᵀ W h_i + a_srcᵀ W h_j) over the
    edges j -> i and the self-loop, softmax over j, Σ_j α_ij W h_j; heads concatenated or
    averaged, plus the bias."""
    heads, out = att_src.shape[1:]
    v = x.shape[0]
    h = (x @ weight.T).reshape(v, heads, out)
    mask = (a + torch.eye(v, dtype=a.dtype)) > 0
    ys = []
    for k in range(heads):
        hk = h[:, k]
        e = F.leaky_relu((hk @ att_dst[0, k])[:, None] + (hk @ att_src[0, k])[None, :], 0.2)
        alpha = torch.softmax(e.masked_fill(~mask, float("-inf")), dim=1)
        ys.append(alpha @ hk)
    y = torch.cat(ys, dim=1) if concat else torch.stack(ys).mean(0)
    return y + bias


def test_gat_matches_a_dense_adjacency_implementation():
    rng = np.random.default_rng(5)
    c, m, w = compiled_and_weights("gat", F=6, hidden=4, heads=3, classes=3, out_heads=2)
    v = 6
    edges = random_graph(rng, v, 14)
    x = rng.standard_normal((v, 6)).astype(np.float32)
    a = dense_adjacency(edges, v)
    layer = {i: [w[f"conv{i}.{n}"] for n in ("lin.weight", "att_src", "att_dst", "bias")]
             for i in (1, 2)}
    h = F.elu(gat_layer(a, torch.from_numpy(x).double(), *layer[1], concat=True))
    want = gat_layer(a, h, *layer[2], concat=False)
    outputs_agree(c, m, x, edges, want)


def test_graphsage_matches_a_dense_adjacency_implementation():
    rng = np.random.default_rng(6)
    c, m, w = compiled_and_weights("graphsage", F=5, hidden=4, classes=3)
    v = 6
    edges = random_graph(rng, v, 9)           # some nodes have no incoming edge: mean 0
    x = rng.standard_normal((v, 5)).astype(np.float32)
    a = dense_adjacency(edges, v)
    mean = a / a.sum(1, keepdim=True).clamp(min=1)
    h = torch.from_numpy(x).double()
    for i in range(2):
        h = torch.cat([h, mean @ h], dim=1) @ w[f"convs.{i}.conv.lin.weight"].T \
            + w[f"convs.{i}.conv.lin.bias"]
        h = F.normalize(torch.relu(h), dim=-1)
    want = h @ w["classifier.weight"].T + w["classifier.bias"]
    outputs_agree(c, m, x, edges, want)


def test_gin_matches_a_dense_adjacency_implementation():
    rng = np.random.default_rng(8)
    c, m, w = compiled_and_weights("gin", F=4, hidden=6, layers=2, classes=3)
    v = 5
    edges = random_graph(rng, v, 8)
    x = rng.standard_normal((v, 4)).astype(np.float32)
    a = dense_adjacency(edges, v)

    def bn(h, key):
        return (h - w[f"{key}.running_mean"]) / torch.sqrt(w[f"{key}.running_var"] + 1e-5) \
            * w[f"{key}.weight"] + w[f"{key}.bias"]

    def lin(h, key):
        return h @ w[f"{key}.weight"].T + w[f"{key}.bias"]
    h = torch.from_numpy(x).double()
    logits = lin(h.sum(0, keepdim=True), "pred0")
    for i in range(2):
        p = f"convs.{i}"
        h = (1 + w[f"{p}.conv.eps"]) * h + a @ h
        h = torch.relu(bn(lin(torch.relu(bn(lin(h, f"{p}.conv.mlp1"), f"{p}.conv.mlp_bn")),
                              f"{p}.conv.mlp2"), f"{p}.conv.bn"))
        logits = logits + lin(h.sum(0, keepdim=True), f"{p}.pred")
    outputs_agree(c, m, x, edges, want=logits)


def test_parameter_counts_follow_the_architectures():
    counts = {p.stem: nndsl.compile(p).param_count() for p in sorted(GRAPHS.glob("*.nn"))}
    f, h, k = 1433, 16, 7
    gcn = f * h + h + h * k + k
    f, heads, h = 1433, 8, 8
    gat = (f * heads * h + 2 * heads * h + heads * h) + (heads * h * k + 2 * k + k)
    f, h, k = 602, 256, 41
    sage = (2 * f * h + h) + (2 * h * h + h) + (h * k + k)
    f, h, k = 7, 64, 2
    mlp = (h * h + h) + 2 * h + 2 * h          # second linear, both batch norms
    gin = (1 + f * h + h + mlp) + 3 * (1 + h * h + h + mlp) + (f * k + k) + 4 * (h * k + k)
    assert counts == {"gcn": gcn, "gat": gat, "graphsage": sage, "gin": gin}
    assert counts == {"gcn": 23_063, "gat": 92_373, "graphsage": 450_345, "gin": 31_196}
    for p in GRAPHS.glob("*.nn"):     # each spec's header states its count
        assert f"{counts[p.stem]:,} parameters" in p.read_text(encoding="utf-8")
