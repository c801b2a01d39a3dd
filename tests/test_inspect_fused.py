"""What `inspect` and `graph` show of fused activations (``linear+gelu``), the dims the FLOPs
assume, and FLOPs that do not change when an activation is fused into the layer before it."""

import collections
from pathlib import Path

import pytest

import nndsl
from nndsl.cli import main
from nndsl.draw import to_dot, to_html
from nndsl.ir.ops.flops import flops
from nndsl.ir.types import TensorType

GPT = "specs/transformers/gpt_mini.nn"
GPT_SMALL = ["--param", "vocab=64", "--param", "ctx=32", "--param", "width=32",
             "--param", "heads=2", "--param", "layers=1"]
RESNET = "specs/vision/resnet18.nn"
RESNET_SMALL = {"classes": 10, "width": 8}

# Every activation fuse_epilogue takes, after a linear and after a convolution; no dropout, so
# fusing epilogues is all O1 does to it.
ACTS = """
model acts() {
    input x: f32[N, 16]
    input image: f32[N, 3, 10, 10]
    output y = x |> linear(32) as l1 |> gelu |> linear(32) as l2 |> silu
                 |> linear(16) as l3 |> tanh |> linear(8) as l4 |> sigmoid
                 |> linear(4) as l5 |> relu |> linear(2) as head
    output z = image |> conv2d(4, 3) as c1 |> relu |> conv2d(4, 3) as c2 |> silu
                     |> flatten |> linear(2) as fc
}
"""


@pytest.fixture(autouse=True)
def _chdir(root, monkeypatch):
    monkeypatch.chdir(root)


@pytest.fixture(scope="module")
def resnet_o2():
    return nndsl.compile(Path(__file__).resolve().parents[1] / RESNET, opt="O2",
                         params=RESNET_SMALL)


def _row(out: str, name: str) -> list[str]:
    line = next(s for s in out.splitlines() if s.startswith(f"│ {name} "))
    return [c.strip() for c in line.strip("│").split("│")]


# ---- inspect --------------------------------------------------------------------------------

def test_inspect_shows_the_fused_gelu(capsys):
    assert main(["inspect", GPT, "-O1", *GPT_SMALL]) == 0
    out = capsys.readouterr().out
    assert _row(out, "h.0.block.c_fc")[1] == "linear+gelu"
    assert _row(out, "h.0.block.c_proj")[1] == "linear"        # nothing fused into it
    assert main(["inspect", GPT, "-O0", *GPT_SMALL]) == 0
    assert "linear+gelu" not in capsys.readouterr().out     # O0 fuses nothing


def test_inspect_shows_the_fused_relu_at_o2(resnet_o2):
    out = resnet_o2.summary()
    assert _row(out, "stem.conv")[1] == "conv2d+relu"
    assert _row(out, "layers.0.b0.conv1")[1] == "conv2d+relu"
    assert _row(out, "layers.0.b0.conv2")[1] == "conv2d"       # its relu follows the residual


def test_footer_names_the_values_of_the_symbolic_dims(capsys):
    assert main(["inspect", GPT, "-O1", *GPT_SMALL]) == 0
    out = capsys.readouterr().out
    assert "\nFLOPs at N=1, T=16 (T by default; --dim T=INT to choose); buffers:" in out
    assert main(["inspect", GPT, "-O1", *GPT_SMALL, "--batch", "2", "--dim", "T=8"]) == 0
    assert "\nFLOPs at N=2, T=8; buffers:" in capsys.readouterr().out


def test_footer_of_a_model_with_only_a_batch_dim(resnet_o2):
    assert "\nFLOPs at N=1; buffers:" in resnet_o2.summary()
    assert "\nFLOPs at N=4; buffers:" in resnet_o2.summary(batch=4)


def test_footer_of_a_model_without_symbolic_dims():
    c = nndsl.compile("model fixed() {\n  input x: f32[2, 3]\n  output y = x |> linear(4)\n}\n")
    assert "\nFLOPs at the inputs' fixed shapes; buffers:" in c.summary()


def test_the_same_symbols_as_the_flops():
    """The footer's values are the ones the FLOPs were counted at."""
    c = nndsl.compile(GPT, params={"vocab": 64, "ctx": 32, "width": 32, "heads": 2,
                                   "layers": 1})
    fc = next(r for r in c.layers() if r.name == "h.0.block.c_fc")
    assert fc.flops == 1 * 16 * 128 * (2 * 32 + 1) + 8 * 1 * 16 * 128      # N=1, T=16
    assert "N=1, T=16" in c.summary()


# ---- graph ----------------------------------------------------------------------------------

def test_dot_label_carries_the_activation(resnet_o2):
    dot = to_dot(resnet_o2.graph)
    assert '"stem.conv" [fillcolor="#dbe7fb", label=<<B>conv2d+relu</B> ' in dot
    assert '"layers.0.b0.conv2" [fillcolor="#dbe7fb", label=<<B>conv2d</B> ' in dot
    assert to_dot(resnet_o2.graph) == dot                                # deterministic


def test_graph_command_prints_the_fused_label(capsys):
    assert main(["graph", GPT, "-O1", *GPT_SMALL, "--format", "dot"]) == 0
    out = capsys.readouterr().out
    assert '"h.0.block.c_fc" [fillcolor="#dbe7fb", label=<<B>linear+gelu</B> ' in out


def test_html_table_carries_the_activation(resnet_o2):
    page = to_html(resnet_o2)
    assert '<td class="name">stem.conv</td><td class="scope">stem</td>' \
           '<td class="op">conv2d+relu</td>' in page
    assert ", at N=1)</li>" in page


def test_html_flops_note_names_every_symbol():
    c = nndsl.compile(GPT, params={"vocab": 64, "ctx": 32, "width": 32, "heads": 2,
                                   "layers": 1})
    page = to_html(c)
    assert '<td class="op">linear+gelu</td>' in page
    assert ", at N=1, T=16)</li>" in page


# ---- FLOPs: one model per op, fused or not ----------------------------------------------------

def _by_op(c) -> collections.Counter:
    out = collections.Counter()
    for r in c.layers():
        out[c.graph.node(r.name).op] += r.flops
    return out


def test_fused_activations_count_what_they_count_standalone():
    o0, o1 = nndsl.compile(ACTS, opt="O0"), nndsl.compile(ACTS, opt="O1")
    fused = {n.name: n.attr["act"] for n in o1.graph if n.attr.get("act")}
    assert fused == {"l1": "gelu", "l2": "silu", "l3": "tanh", "l4": "sigmoid", "l5": "relu",
                     "c1": "relu", "c2": "silu"}
    assert o1.flops() == o0.flops()
    assert o1.flops(batch=3) == o0.flops(batch=3)
    # layer by layer: the fused node counts the layer plus its standalone activation
    rows0 = {r.name: r.flops for r in o0.layers()}
    acts0 = {o0.graph.node(n.inputs[0].node).name: r for n in o0.graph
             for r in [rows0.get(n.name)] if n.op in ("gelu", "silu", "tanh", "sigmoid", "relu")}
    for r in o1.layers():
        if r.name in fused:
            assert r.flops == rows0[r.name] + acts0[r.name], r.name


def test_gpt_mini_fusing_gelu_keeps_the_count():
    """O0 -> O1 on gpt_mini: the GELUs move into the linears and count the same. (Attention's
    primitives becoming the fused op, and dropout(p=0) dropped, are other per-op models.)"""
    params = {"vocab": 64, "ctx": 32, "width": 32, "heads": 2, "layers": 2}
    o0, o1 = _by_op(nndsl.compile(GPT, opt="O0", params=params)), \
        _by_op(nndsl.compile(GPT, opt="O1", params=params))
    assert o0["linear"] + o0["gelu"] == o1["linear"]
    assert "gelu" not in o1


def test_qadd_counts_its_fused_relu():
    t = TensorType("f32", (1, 8, 4, 4))
    assert flops("qadd", [t, t], (t,), {"act": "relu"}) == \
        flops("add", [t, t], (t,), {}) + flops("relu", [t], (t,), {})


def test_every_act_op_counts_its_activation():
    t = TensorType("f32", (2, 8))
    w, b = TensorType("f32", (8, 8)), TensorType("f32", (8,))
    for act in ("relu", "gelu", "silu", "tanh", "sigmoid"):
        assert flops("linear", [t, w, b], (t,), {"act": act}) == \
            flops("linear", [t, w, b], (t,), {}) + flops(act, [t], (t,), {}), act


def test_json_nodes_name_the_fused_activation():
    import json
    c = nndsl.compile(GPT, opt="O1")
    nodes = json.loads(json.dumps(c.to_json()))["nodes"]
    acts = {n["name"]: n["act"] for n in nodes if n["op"] == "linear"}
    assert "gelu" in acts.values() and None in acts.values()
    assert all(n["act"] is None for n in nodes if n["op"] not in ("linear", "conv2d"))


def test_fused_attention_counts_what_its_parts_count():
    """matmul, scale, mask, softmax, matmul: the fused op counts the same per score."""
    text = """model m() {
        input q: f32[2, 5, 8]
        input k: f32[2, 7, 8]
        input v: f32[2, 7, 4]
        input mask: bool[5, 7]
        s = q @ transpose(k) / 3.0
        output y = softmax(masked_fill(s, mask, -inf)) @ v
    }"""
    fused = nndsl.compile(text, opt="O1")
    assert [n.op for n in fused.graph if n.op == "attention"]
    assert nndsl.compile(text, opt="O0").flops() == 2 * 5 * 7 * (16 + 8 + 7)
    # the same, plus the `not mask` the fused op reads (a keep-mask): one per mask element
    assert [n.op for n in fused.graph if n.op not in ("input", "attention")] == ["logical_not"]
    assert fused.flops() == 2 * 5 * 7 * (16 + 8 + 7) + 5 * 7
