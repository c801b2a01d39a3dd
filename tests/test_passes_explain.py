"""Rule decisions: what each rule fired on or declined, and why (nndsl inspect --explain)."""

from __future__ import annotations

import numpy as np
import torch

import nndsl
from nndsl.cli import main
from nndsl.ir.graph import Node
from nndsl.passes.rewrite import ROUND_LIMIT, Rule, apply_rules, explaining

SCALED_BY_A_TENSOR = """\
model m() {
    input q: f32[N, 4, 8]
    input k: f32[N, 4, 8]
    input v: f32[N, 4, 8]
    input s: f32[N, 4, 4]
    output y = softmax(q @ transpose(k, 1, 2) * s, dim=-1) @ v
}
"""


def _record(c, name):
    (r,) = [r for r in c.passes if r.name == name]
    return r


def test_every_fire_is_recorded_where_the_rule_fired():
    with explaining():
        c = nndsl.compile(path="specs/transformers/gpt_mini.nn")
    r = _record(c, "fuse_attention")
    fired = [d for d in r.decisions if d.fired]
    fused = [n for n in c.graph if n.op == "attention"]
    assert len(fired) == len(fused) == 4
    assert {d.scope for d in fired} == {n.scope for n in fused}
    assert all(d.rule == "attention" and d.span.line > 0 for d in fired)


def test_a_decline_says_why_and_the_graph_agrees(tmp_path, capsys):
    p = tmp_path / "att.nn"
    p.write_text(SCALED_BY_A_TENSOR)
    with explaining():
        c = nndsl.compile(path=str(p))
    (d,) = _record(c, "fuse_attention").decisions
    assert not d.fired and "scaled by a tensor" in d.why
    assert not any(n.op == "attention" for n in c.graph)
    assert any(n.op == "softmax" for n in c.graph)
    assert main(["inspect", str(p), "--explain", "fuse_attention"]) == 0
    out = capsys.readouterr().out
    assert "0 fired, 1 declined" in out
    assert "att.nn:6:16" in out and "scaled by a tensor, not a constant" in out


def test_passes_that_are_their_own_loops_say_so(capsys):
    assert main(["inspect", "specs/vision/resnet18.nn", "-O2", "--explain",
                 "channels_last"]) == 0
    out = capsys.readouterr().out
    assert "not a rule-driven pass" in out and "changed the graph" in out


def test_nothing_is_recorded_unless_asked():
    c = nndsl.compile(path="specs/transformers/gpt_mini.nn")
    assert all(r.decisions is None for r in c.passes)


def test_the_round_limit_is_reported_not_silent():
    g = nndsl.compile(source="model m() {\n    input x: f32[N, 3]\n"
                             "    output y = relu(x)\n}\n", opt="O0").graph

    def again(rw, n):      # a rule that always fires: a fresh relu for every relu
        return n.inputs[0] if n.op == "relu" else None

    def rewrite(rw, n, x):
        return [rw.emit("relu", [x], {}, like=n).out()]

    from nndsl.passes.rewrite import collecting
    with explaining(), collecting() as log:
        out, changed = apply_rules(g, [Rule("again", again, rewrite)], max_rounds=3)
    assert changed and isinstance(out.node(out.outputs[0][1].node), Node)
    assert [d.rule for d in log] == ["again"] * 3 + [ROUND_LIMIT]
    assert "stopped after 3 rounds" in log[-1].why
    with collecting() as off:             # not explaining: nothing is kept
        apply_rules(g, [Rule("again", again, rewrite)], max_rounds=2)
    assert off is None


def test_an_unknown_pass_is_a_located_usage_error(capsys):
    assert main(["inspect", "specs/vision/resnet18.nn", "--explain", "fold_batch_norm"]) == 1
    err = capsys.readouterr().err
    assert "error[E0264]" in err and "O1 runs:" in err


def test_epilogue_fires_in_place_and_declines_with_reasons():
    src = ("model m() {\n    input x: f32[N, 3]\n"
           "    h = x |> linear(4) as fc\n"
           "    g = x |> linear(4) as fd\n"
           "    output a = relu(h)\n    output b = h * 2.0\n"
           "    output c = gelu(g, approximate=\"tanh\")\n"
           "    output d = x |> linear(5) as fe |> sigmoid\n}\n")
    with explaining():
        c = nndsl.compile(source=src)
    seen = {(d.node, d.fired, d.why) for d in _record(c, "fuse_epilogue").decisions}
    assert seen == {
        ("relu", False, "declined: `fc`'s result is read elsewhere too (or is a model output)"),
        ("gelu", False, "declined: gelu's tanh approximation has no epilogue form"),
        ("sigmoid", True, ""),
    }
    assert c.graph.node("fe").attr["act"] == "sigmoid"      # fused under the layer's own name
    assert c.graph.node("fc").attr.get("act") is None
    assert not any(n.op == "sigmoid" for n in c.graph)
    assert [n.name for n in c.graph if n.op == "linear"] == ["fc", "fd", "fe"]   # in place


def test_batch_norm_folding_names_every_batch_norm_it_folded_or_could_not():
    with explaining():
        c = nndsl.compile(path="specs/vision/resnet18.nn", opt="O2")
    fired = {d.node for d in _record(c, "fold_batch_norm").decisions if d.fired}
    bns = {n.name for n in nndsl.compile(path="specs/vision/resnet18.nn", opt="O1").graph
           if n.op == "batch_norm"}
    assert fired == bns and len(bns) == 20
    assert not any(n.op == "batch_norm" for n in c.graph)
    src = ("model m() {\n    input x: f32[N, 3, 8, 8]\n"
           "    c = x |> conv2d(4, 3) as conv\n"
           "    output a = c |> batch_norm as bn\n    output b = c\n}\n")
    with explaining():
        c2 = nndsl.compile(source=src, opt="O2")
    (d,) = {(d.node, d.why) for d in _record(c2, "fold_batch_norm").decisions}
    assert d == ("bn", "declined: `conv`'s result is read elsewhere too (or is an output)")
    assert any(n.op == "batch_norm" for n in c2.graph)


PARALLEL = """\
model m() {
    input x: f32[N, 8]
    q = x |> linear(6) as q
    k = x |> linear(4) as k
    v = x |> linear(5, bias=false) as v
    g = x |> linear(3) as g
    output y = concat([q, k, v, g], dim=-1)
    output z = x |> linear(2) as z |> relu
}
"""


def test_parallel_linears_merge_on_the_driver_and_say_why_not():
    with explaining():
        c2 = nndsl.compile(source=PARALLEL, opt="O2")
    c0 = nndsl.compile(source=PARALLEL, opt="O0")
    decisions = {d.node: d for d in _record(c2, "merge_parallel_linears").decisions
                 if not d.rule.startswith("(")}
    assert {n for n, d in decisions.items() if d.fired} == {"q", "k", "g"}
    assert "no other linear" in decisions["v"].why         # the only one without a bias
    assert decisions["z"].why == "it runs `relu` as its epilogue"   # fused at O1, before
    merged = [n for n in c2.graph if n.op == "linear" and "+" in n.name]
    assert [n.name for n in merged] == ["q+k+g"]
    (split,) = [n for n in c2.graph if n.op == "split"]
    assert split.attr["sizes"] == (6, 4, 3)
    # the merged model computes the spec's formula from the spec's own weights
    w = {k: v.detach() for k, v in c0.to_torch(seed=1).state_dict().items()}
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32))
    y, z = c2.to_torch(weights=w)(x=x)
    lin = lambda n, b=True: x @ w[f"{n}.weight"].T + (w[f"{n}.bias"] if b else 0)
    want_y = torch.cat([lin("q"), lin("k"), lin("v", False), lin("g")], dim=-1)
    for got, want in ((y, want_y), (z, torch.relu(lin("z")))):
        np.testing.assert_allclose(got.detach().numpy(), want.numpy(), rtol=1e-5,
                                   atol=1e-5 * float(want.abs().max()))
