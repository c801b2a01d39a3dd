"""Fusion passes (O1, training-safe): formulas written from primitives become the fused op.

Each rule keeps the parameters it finds (same nodes, same names) and gives the fused node the
source span of the expression it replaced.
"""

from __future__ import annotations

import math

from nndsl.ir.graph import Graph, Node, Value
from nndsl.ir.ops import ops_with
from nndsl.passes.cleanup import _scalar_value
from nndsl.passes.rewrite import Rewriter, Rule, apply_rules


def _scalar_operand(rw: Rewriter, n: Node):
    """For a binary node with one scalar-constant operand: (tensor operand, value, its index)."""
    for i in (1, 0):
        c = _scalar_value(rw, n.inputs[i])
        if c is not None:
            return n.inputs[1 - i], c, i
    return None


def _prod(rw: Rewriter, v: Value | None, op: str) -> Node | None:
    p = rw.producer(v)
    return p if p is not None and p.op == op else None


# ---------------------------------------------------------------- attention
def _causal_mask(rw: Rewriter, mask: Value, scores_t) -> bool:
    """``mask`` is ``not tril(full([T, T], 1))`` over the scores' last two dims."""
    inv = _prod(rw, mask, "logical_not")
    tri = _prod(rw, inv.inputs[0], "tril") if inv else None
    full = _prod(rw, tri.inputs[0], "full") if tri else None
    if full is None or tri.attr.get("k", 0) != 0 or full.attr["value"] == 0:
        return False
    return tuple(full.type.shape) == tuple(scores_t.shape[-2:])


def _attention_match(rw: Rewriter, n: Node):
    if n.op != "matmul":
        return None
    att = rw.producer(n.inputs[0])
    dropout = 0.0
    if att is not None and att.op == "dropout" and rw.single_use(att):
        dropout = att.attr.get("p", 0.5)
        att = rw.producer(att.inputs[0])
    if att is None or att.op != "softmax" or att.attr.get("dim", -1) % att.type.rank != \
            att.type.rank - 1 or not rw.single_use(att):
        return None
    s = rw.producer(att.inputs[0])
    mask, causal = None, False
    if s is not None and s.op == "masked_fill" and s.attr.get("value") == -math.inf \
            and rw.single_use(s):
        if _causal_mask(rw, s.inputs[1], s.type):
            causal = True
        else:
            inv = _prod(rw, s.inputs[1], "logical_not")
            mask = ("keep", inv.inputs[0]) if inv else ("drop", s.inputs[1])
        s = rw.producer(s.inputs[0])
    elif s is not None and s.op == "add" and rw.single_use(s):
        a, b = (rw.producer(x) for x in s.inputs)
        if a is not None and a.op in ("div", "mul", "matmul"):
            mask, s = ("add", s.inputs[1]), a
        else:
            return "declined: an additive mask must be added to the scaled scores"
    scale = None
    if s is not None and s.op in ("div", "mul") and rw.single_use(s):
        so = _scalar_operand(rw, s)
        if so is None or (s.op == "div" and so[2] == 0):
            return "declined: the scores are scaled by a tensor, not a constant"
        scale = 1.0 / so[1] if s.op == "div" else so[1]
        s = rw.producer(so[0])
    if s is None or s.op != "matmul" or not rw.single_use(s):
        return "declined: no q @ kᵀ product feeds the softmax"
    kt = rw.producer(s.inputs[1])
    r = kt.type.rank if kt is not None else 0
    if kt is None or kt.op != "transpose" or r < 2 or \
            {kt.attr["dim0"] % r, kt.attr["dim1"] % r} != {r - 2, r - 1}:
        return "declined: the keys are not transposed over their last two dims"
    q, k, v = s.inputs[0], kt.inputs[0], n.inputs[1]
    if scale is None:
        scale = 1.0
    return q, k, v, mask, causal, scale, dropout


def _attention_rewrite(rw: Rewriter, n: Node, m):
    q, k, v, mask, causal, scale, dropout = m
    mask_v = None
    if mask is not None:
        kind, mv = mask
        mask_v = rw.emit("logical_not", [mv], {}, like=n, name=f"{n.name}.keep").out() \
            if kind == "drop" else mv
    node = rw.emit("attention", [q, k, v, mask_v],
                   {"scale": scale, "causal": causal, "dropout": dropout}, like=n,
                   name=f"{n.scope}.attention" if n.scope else "attention")
    return [node.out()]


# ---------------------------------------------------------------- activations
def _silu_match(rw: Rewriter, n: Node):
    """``x * sigmoid(x)`` ⇒ ``silu(x)``."""
    if n.op != "mul":
        return None
    for i in (0, 1):
        sig = _prod(rw, n.inputs[i], "sigmoid")
        if sig is not None and sig.inputs[0] == n.inputs[1 - i] and rw.single_use(sig):
            return n.inputs[1 - i]
    return None


def _half_x(rw: Rewriter, v: Value):
    """``0.5 * x`` (or ``x * 0.5``, ``x / 2``): returns x."""
    p = rw.producer(v)
    if p is None or p.op not in ("mul", "div"):
        return None
    so = _scalar_operand(rw, p)
    if so is None:
        return None
    x, c, i = so
    if p.op == "mul" and abs(c - 0.5) < 1e-12 or p.op == "div" and i == 1 and c == 2:
        return x
    return None


def _one_plus(rw: Rewriter, v: Value, fn: str):
    """``1 + fn(arg)``: returns the fn node."""
    p = _prod(rw, v, "add")
    if p is None:
        return None
    so = _scalar_operand(rw, p)
    if so is None or so[1] != 1:
        return None
    return _prod(rw, so[0], fn)


def _gelu_match(rw: Rewriter, n: Node):
    """``0.5·x·(1 + erf(x/√2))`` ⇒ ``gelu(x)``; ``0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))``
    ⇒ ``gelu(x, approximate="tanh")``."""
    if n.op != "mul":
        return None
    for i in (0, 1):
        x = _half_x(rw, n.inputs[i])
        if x is None:
            continue
        erf = _one_plus(rw, n.inputs[1 - i], "erf")
        if erf is not None:
            arg = rw.producer(erf.inputs[0])
            so = _scalar_operand(rw, arg) if arg is not None and arg.op in ("mul", "div") \
                else None
            if so and so[0] == x and (arg.op == "div" and abs(so[1] - math.sqrt(2)) < 1e-6 or
                                      arg.op == "mul" and abs(so[1] - 1 / math.sqrt(2)) < 1e-6):
                return x, "none"
        th = _one_plus(rw, n.inputs[1 - i], "tanh")
        if th is not None and _tanh_inner_ok(rw, th.inputs[0], x):
            return x, "tanh"
    return None


def _tanh_inner_ok(rw: Rewriter, v: Value, x: Value) -> bool:
    p = rw.producer(v)
    if p is None or p.op != "mul":
        return False
    so = _scalar_operand(rw, p)
    if so is None or abs(so[1] - math.sqrt(2 / math.pi)) > 1e-6:
        return False
    s = _prod(rw, so[0], "add")
    if s is None or x not in s.inputs:
        return False
    other = s.inputs[1] if s.inputs[0] == x else s.inputs[0]
    cube = rw.producer(other)
    if cube is None or cube.op != "mul":
        return False
    so = _scalar_operand(rw, cube)
    if so is None or abs(so[1] - 0.044715) > 1e-9:
        return False
    pw = _prod(rw, so[0], "pow")
    return pw is not None and pw.inputs[0] == x and _scalar_value(rw, pw.inputs[1]) == 3


# ---------------------------------------------------------------- layer norm
def _mean_last(rw: Rewriter, v: Value):
    p = _prod(rw, v, "mean")
    if p is None or not p.attr.get("keepdim") or p.attr.get("dims") is None:
        return None
    r = rw.type_of(p.inputs[0]).rank
    if tuple(d % r for d in p.attr["dims"]) != (r - 1,):
        return None
    return p.inputs[0]


def _affine_follows(rw: Rewriter, n: Node) -> bool:
    """``n``'s only reader multiplies or shifts it by a vector parameter."""
    readers = rw.readers(n.name)
    if len(readers) != 1 or readers[0].op not in ("mul", "add"):
        return False
    return any(v is not None and rw.src.node(v.node).op == "param" and
               rw.src.node(v.node).type.rank == 1 for v in readers[0].inputs)


def _layer_norm_match(rw: Rewriter, n: Node):
    """``(x - μ) / √(σ² + ε) · γ + β`` with ``μ = mean(x)``, ``σ² = mean((x - μ)²)`` over the last
    dim ⇒ ``layer_norm(x, γ, β, eps=ε)`` (γ, β optional; they stay the same parameters)."""
    gamma = beta = None
    cur = n
    if cur.op == "add":
        for i in (0, 1):
            b = rw.producer(cur.inputs[i])
            if b is not None and b.op == "param" and b.type.rank == 1:
                beta, cur = cur.inputs[i], rw.producer(cur.inputs[1 - i])
                break
    if cur is not None and cur.op == "mul":
        for i in (0, 1):
            g = rw.producer(cur.inputs[i])
            if g is not None and g.op == "param" and g.type.rank == 1:
                gamma, cur = cur.inputs[i], rw.producer(cur.inputs[1 - i])
                break
    if cur is None or cur.op != "div":
        return None
    if n.op in ("div", "mul") and _affine_follows(rw, n):
        return None          # match at the outer node, so γ and β join the fused op
    d = _prod(rw, cur.inputs[0], "sub")
    sq = _prod(rw, cur.inputs[1], "sqrt")
    if d is None or sq is None:
        return None
    x = d.inputs[0]
    if _mean_last(rw, d.inputs[1]) != x:
        return None
    add = _prod(rw, sq.inputs[0], "add")
    so = _scalar_operand(rw, add) if add is not None else None
    if so is None:
        return None
    var_src = _mean_last(rw, so[0])
    sqr = rw.producer(var_src) if var_src is not None else None
    if sqr is None:
        return None
    if sqr.op == "pow" and _scalar_value(rw, sqr.inputs[1]) == 2:
        dev = sqr.inputs[0]
    elif sqr.op == "mul" and sqr.inputs[0] == sqr.inputs[1]:
        dev = sqr.inputs[0]
    else:
        return None
    if dev != d.out():
        return None
    size = rw.type_of(x).shape[-1]
    for p in (gamma, beta):
        if p is not None and rw.type_of(p).shape != (size,):
            return None
    if (gamma is None) != (beta is None) and gamma is None:
        return "declined: a shift without a scale has no layer_norm form"
    return x, gamma, beta, float(so[1]), size


def _layer_norm_rewrite(rw: Rewriter, n: Node, m):
    x, gamma, beta, eps, size = m
    node = rw.emit("layer_norm", [x, gamma, beta], {"normalized_shape": (size,), "eps": eps},
                   like=n, name=f"{n.scope}.layer_norm" if n.scope else "layer_norm")
    return [node.out()]


FORMULA_RULES = [
    Rule("silu", _silu_match, lambda rw, n, x: [rw.emit("silu", [x], {}, like=n).out()]),
    Rule("gelu", _gelu_match,
         lambda rw, n, m: [rw.emit("gelu", [m[0]], {"approximate": m[1]}, like=n).out()]),
    Rule("layer_norm", _layer_norm_match, _layer_norm_rewrite),
]


def fuse_attention(graph: Graph) -> tuple[Graph, bool]:
    """Attention written from primitives becomes one fused node (lowered to
    ``scaled_dot_product_attention``):

    ``softmax(q @ transpose(k) · s [masked]) @ v``  ⇒  ``attention(q, k, v, mask) {scale=s}``

    A ``masked_fill(·, not tril(ones([T, T])), -inf)`` mask becomes ``causal=true``; any other
    boolean mask ``m`` (True = masked out) becomes ``attn_mask = not m``; an added float mask is
    passed as is. Dropout on the attention weights becomes the fused node's dropout.
    """
    return apply_rules(graph, [Rule("attention", _attention_match, _attention_rewrite)])


def fuse_formulas(graph: Graph) -> tuple[Graph, bool]:
    """Activations and normalizations written as formulas become the fused op:

    ``x·sigmoid(x) ⇒ silu(x)``;  ``0.5·x·(1 + erf(x/√2)) ⇒ gelu(x)`` (and the tanh form);
    ``(x − μ)/√(σ² + ε)·γ + β ⇒ layer_norm(x, γ, β)`` — γ and β keep their parameter names.
    """
    return apply_rules(graph, FORMULA_RULES)


EPILOGUE_ACTS = ops_with("epilogue")
EPILOGUE_OPS = ops_with("takes_act")


def _epilogue_act(node: Node) -> str | None:
    if node.op not in EPILOGUE_ACTS:
        return None
    if node.op == "gelu" and node.attr.get("approximate", "none") != "none":
        return None     # the tanh approximation is another function
    return node.op


def _epilogue_match(rw: Rewriter, n: Node):
    if n.op not in EPILOGUE_ACTS or n.inputs[0] is None:
        return None
    layer = rw.src.node(rw.current.inputs[0].node)
    if layer.op not in EPILOGUE_OPS:
        return None
    act = _epilogue_act(n)
    if act is None:
        return "declined: gelu's tanh approximation has no epilogue form"
    if layer.attr.get("act"):
        return f"declined: `{layer.name}` already runs {layer.attr['act']} as its epilogue"
    if not rw.single_use(layer):
        return f"declined: `{layer.name}`'s result is read elsewhere too (or is a model output)"
    p = rw.producer(n.inputs[0])
    if p.op != layer.op or p.attr.get("act"):
        return None          # another rule rewrote the layer this round
    return p, act


def _epilogue_rewrite(rw: Rewriter, n: Node, m):
    p, act = m
    return [rw.update(p.with_(attrs={**p.attr, "act": act})).out()]


EPILOGUE_RULES = [Rule("epilogue", _epilogue_match, _epilogue_rewrite)]


def fuse_epilogue(graph: Graph) -> tuple[Graph, bool]:
    """Bias + activation epilogues: an activation applied to a linear or convolution's only use
    runs inside that layer (ReLU in place on the fresh output); the layer keeps its name and
    its place:

    ``relu(conv2d(x, w, b))``  ⇒  ``conv2d(x, w, b) {act=relu}``
    """
    return apply_rules(graph, EPILOGUE_RULES)
