"""FLOP counts: ``rule(operand types, output types, attrs) -> Dim``; a multiply-add counts 2.

Counts may be symbolic (they follow the shapes); ``inspect`` evaluates them at batch 1 with the
other symbolic dims at their defaults. Elementwise ops count one FLOP per output element; pure
data movement (reshape, transpose, slice, concat, gather, index_select, ...) counts zero; a
scatter or segment reduction counts one per element it reads.
"""

from __future__ import annotations

import math
from typing import Callable

from nndsl.ir.ops.signatures import BINARY, COMPARE, REDUCE, UNARY, ops_of_kind
from nndsl.ir.types import Dim


def _prod(xs) -> Dim:
    n: Dim = 1
    for x in xs:
        n = n * x
    return n


def _zero(ins, outs, a) -> Dim:
    return 0


def _per_out(k: int = 1):
    def rule(ins, outs, a):
        return k * outs[0].numel()
    return rule


def _per_in(k: int = 1):
    def rule(ins, outs, a):
        return k * ins[0].numel()
    return rule


def _matmul(ins, outs, a):
    x = ins[0]
    return 2 * outs[0].numel() * x.shape[-1]


def _linear(ins, outs, a):
    x, w, b = ins
    return outs[0].numel() * (2 * w.shape[1] + (1 if b is not None else 0))


def _conv(ins, outs, a):
    x, w, b = ins
    per_out = 2 * _prod(w.shape[1:]) + (1 if b is not None else 0)
    return outs[0].numel() * per_out


def _conv_t(ins, outs, a):
    x, w, b = ins
    # every input element is multiplied into a (C_out/groups × k × k) patch
    flops = 2 * x.numel() * _prod(w.shape[1:])
    return flops + (outs[0].numel() if b is not None else 0)


def _attention(ins, outs, a):
    """Per score: the two products (2·d_q + 2·d_v), the scale (1), the softmax (5), and the
    mask (1) when there is one — what the unfused matmul/div/masked_fill/softmax count."""
    q, k, v = ins[0], ins[1], ins[2]
    scores = _prod(outs[0].shape[:-1]) * k.shape[-2]           # batch · L · S
    masked = 1 if a.get("causal") or (len(ins) > 3 and ins[3] is not None) else 0
    return scores * (2 * q.shape[-1] + 2 * v.shape[-1] + 6 + masked)


def _with_act(rule):
    """A fused activation counts what the standalone op counts on the layer's output."""
    def counted(ins, outs, a):
        act = a.get("act")
        extra = FLOP_RULES[act](outs[:1], outs[:1], {}) if act else 0
        return rule(ins, outs, a) + extra
    return counted


def _pool(ins, outs, a):
    k = a["kernel"]
    k = _prod(k) if isinstance(k, (tuple, list)) else k ** (ins[0].rank - 2)
    return outs[0].numel() * k


def _norm(k: int):
    def rule(ins, outs, a):
        return k * ins[0].numel()
    return rule


def _recurrent(gates: int):
    def rule(ins, outs, a):
        x = ins[0]
        n, t = (x.shape[0], x.shape[1]) if a["batch_first"] else (x.shape[1], x.shape[0])
        h, layers = a["hidden"], a["layers"]
        dirs = 2 if a["bidirectional"] else 1
        total: Dim = 0
        feat = x.shape[2]
        for layer in range(layers):
            in_f = feat if layer == 0 else dirs * h
            per_step = 2 * gates * h * (in_f + h) + 4 * gates * h
            total = total + dirs * n * t * per_step
        return total
    return rule


def _argsort(ins, outs, a):
    """A comparison sort: ⌈log₂ n⌉ comparisons per element along a known dim of size n, one
    per element when n is symbolic (a count must stay a polynomial in the dims)."""
    x = ins[0]
    n = x.shape[a["dim"] % x.rank]
    per = max(1, math.ceil(math.log2(n))) if isinstance(n, int) and n > 1 else 1
    return per * x.numel()


def _einsum(ins, outs, a):
    """One multiply per operand after the first and one addition, for every combination of the
    index values: 2 · Π(index sizes) for a product of two, Π(index sizes) to reduce one."""
    from nndsl.ir.ops.shapes import parse_einsum
    terms, out = parse_einsum(a["equation"], [t.rank for t in ins])
    sizes: dict = {}
    for term, t in zip(terms, ins):
        for i, (c, d) in enumerate(zip(term, t.shape)):
            sizes[c if c != "." else f".{i - term.index('.')}"] = d
    return max(len(ins), 1) * _prod(sizes.values())


def _topk(ins, outs, a):
    """A partial sort: ⌈log₂ k⌉ comparisons per element along the dim (one when k <= 2)."""
    k = a["k"]
    return max(1, math.ceil(math.log2(k))) * ins[0].numel() if k > 1 else ins[0].numel()


def _scatter_add(ins, outs, a):
    return ins[2].numel()                       # one addition per element of src


def _segment_mean(ins, outs, a):
    return ins[0].numel() + outs[0].numel()     # the sums, then one division per output


def _scan(ins, outs, a):
    """Steps × the FLOPs of one run of the body."""
    from nndsl.ir.ops.shapes import scan_length
    from nndsl.ir.ops.signatures import SIGNATURES
    body = a["body"].graph
    per_step: Dim = 0
    for node in body:
        if node.op == "input":
            continue
        in_types = [body.type_of(v) if v is not None else None for v in node.inputs]
        per_step = per_step + flops(node.op, in_types, node.types,
                                    {**SIGNATURES[node.op].attrs, **node.attr})
    return scan_length(ins, a) * per_step


FLOP_RULES: dict[str, Callable] = {
    "input": _zero, "param": _zero, "scalar": _zero, "full": _zero, "arange": _zero,
    **{op: _per_out() for op in UNARY}, "logical_not": _per_out(),
    "hardswish": _per_out(4), "hardsigmoid": _per_out(3), "mish": _per_out(7), "clamp": _per_out(2), "drop_path": _per_out(),
    "leaky_relu": _per_out(), "gelu": _per_out(8), "elu": _per_out(3), "softplus": _per_out(3),
    "sigmoid": _per_out(4), "tanh": _per_out(5), "silu": _per_out(5), "selu": _per_out(4),
    "dropout": _per_out(),
    **{op: _per_out() for op in BINARY}, **{op: _per_out() for op in COMPARE},
    "where": _per_out(), "masked_fill": _per_out(), "tril": _zero, "triu": _zero,
    "matmul": _matmul, "linear": _with_act(_linear),
    "linear_int8": _with_act(lambda ins, outs, a: _linear(ins[:2] + ins[3:], outs, a)),
    "dequantize": _per_out(), "fake_quantize": _per_out(4),
    "quantize": _per_out(2), "dequantize_act": _per_out(2), "qadd": _with_act(_per_out()),
    "qclamp": _per_out(2),
    "qconv2d": _with_act(lambda ins, outs, a: _conv(ins[:2] + ins[3:], outs, a)),
    "qlinear": _with_act(lambda ins, outs, a: _linear(ins[:2] + ins[3:], outs, a)),
    "conv1d": _with_act(_conv), "conv2d": _with_act(_conv), "conv3d": _with_act(_conv),
    "conv_transpose2d": _with_act(_conv_t), "attention": _attention,
    "max_pool1d": _pool, "max_pool2d": _pool, "avg_pool1d": _pool, "avg_pool2d": _pool,
    "adaptive_avg_pool1d": _per_in(), "adaptive_avg_pool2d": _per_in(),
    "batch_norm": _norm(4), "layer_norm": _norm(8), "group_norm": _norm(8),
    "embedding": _zero, "rms_norm": _norm(5), "einsum": _einsum,
    "lstm": _recurrent(4), "gru": _recurrent(3), "rnn": _recurrent(1),
    **{op: _zero for op in ops_of_kind("movement")},
    # nearest: a copy per output element; linear: 2 multiply-adds per interpolated dim
    "upsample": lambda ins, outs, a: 0 if a["mode"] == "nearest" else
    4 * (ins[0].rank - 2) * outs[0].numel(),
    **{op: _per_in() for op in REDUCE},
    "softmax": _per_out(5), "log_softmax": _per_out(5),
    "argmax": _per_in(), "argsort": _argsort, "cumsum": _per_in(),
    "cumprod": _per_in(), "logsumexp": _per_in(4), "var": _per_in(3), "std": _per_in(3),
    "topk": _topk,
    "scatter_add": _scatter_add,
    "segment_sum": _per_in(), "segment_mean": _segment_mean, "segment_max": _per_in(),
    # the per-segment max, subtract, exponentiate, per-segment sum, divide
    "segment_softmax": _per_in(5),
    "scan": _scan,
}


def flops(op: str, in_types: list, out_types: tuple, attrs: dict) -> Dim:
    return FLOP_RULES[op](in_types, out_types, attrs)
