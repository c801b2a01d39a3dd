"""Attention maps: the softmax probabilities of every attention node, by scope.

The compiler knows where each softmax is. At O1 and up, attention written as
``softmax(QKᵀ/√d)V`` is one fused ``attention`` node, whose kernel never forms the
probabilities: they are recomputed here from the node's own query and key operands (captured
by name on the same forward pass), its scale, causal flag and mask, exactly as the kernel
defines them. At O0 the ``softmax`` nodes over the scores of a ``matmul`` are the probabilities
themselves and are captured as they are.
"""

from __future__ import annotations

from nndsl.explain.common import Explanation, does_not_fit

# ops a score tensor may pass through between its matmul and its softmax
_SCORE_OPS = frozenset(("div", "mul", "add", "sub", "masked_fill", "where", "cast", "neg"))


def _value_name(graph, v) -> str:
    node = graph.node(v.node)
    return v.node if len(node.types) == 1 else f"{v.node}#{v.index}"


def _over_matmul(graph, node, depth: int = 6) -> bool:
    """Whether the softmax ``node`` normalizes scores that come from a matmul."""
    v = node.inputs[0]
    for _ in range(depth):
        if v is None:
            return False
        p = graph.node(v.node)
        if p.op == "matmul":
            return True
        if p.op not in _SCORE_OPS:
            return False
        v = p.inputs[0]
    return False


def attention_nodes(compiled) -> list:
    """(key, node) of every attention in graph order: fused ``attention`` nodes, and softmax
    nodes over matmul scores with a [..., T, S] output. The key is the node's scope, or its
    name where one scope holds several."""
    from nndsl.ir.ops import SIGNATURES
    g = compiled.graph
    found = []
    for n in g:
        if n.op == "attention":
            found.append(n)
        elif n.op == "softmax" and n.types[0].rank >= 3 and \
                {**SIGNATURES["softmax"].attrs, **n.attr}["dim"] in (-1, n.types[0].rank - 1) \
                and _over_matmul(g, n):
            found.append(n)
    scopes = [n.scope for n in found]
    return [(n.scope if n.scope and scopes.count(n.scope) == 1 else n.name, n) for n in found]


def fused_probabilities(q, k, mask, attrs):
    """softmax(q kᵀ · scale + mask) as ``scaled_dot_product_attention`` defines it: a bool
    mask keeps the True positions, a float mask is added, ``causal`` keeps j <= i."""
    import math

    import torch
    q, k = q.float(), k.float()
    scale = attrs.get("scale")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    s = (q @ k.transpose(-2, -1)) * scale
    if attrs.get("causal"):
        t, sk = s.shape[-2], s.shape[-1]
        keep = torch.ones(t, sk, dtype=torch.bool, device=s.device).tril()
        s = s.masked_fill(~keep, float("-inf"))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask
    return torch.softmax(s, dim=-1)


def attention_maps(compiled, module, samples, layer: str | None = None):
    """An :class:`~nndsl.explain.common.Explanation` whose maps are the attention
    probabilities ``[N, heads, T, S]`` of each attention node (by key), on ``samples``."""
    import torch

    from nndsl.backends.torch.module import unknown_value_error
    from nndsl.ir.ops import SIGNATURES
    found = attention_nodes(compiled)
    if not found:
        raise does_not_fit(f"{compiled.name} has no attention: no fused attention node and no "
                           f"softmax over matmul scores",
                           hint="attention maps need softmax(QKᵀ/√d)V in the spec")
    if layer is not None:
        keys = [k for k, _ in found]
        chosen = [(k, n) for k, n in found if layer in (k, n.name)]
        if not chosen:
            raise unknown_value_error(layer, keys + [n.name for _, n in found], compiled.name,
                                      what="attention")
        found = chosen
    g = compiled.graph
    want = []
    for _, n in found:
        if n.op == "attention":
            want += [_value_name(g, v) for v in (n.inputs[0], n.inputs[1], n.inputs[3])
                     if v is not None]
        else:
            want.append(n.name)
    feeds = {k: v for k, v in samples.inputs.items()}
    with torch.no_grad():
        out, cap = module.eval()(**feeds, capture=list(dict.fromkeys(want)))
    maps, kinds = {}, {}
    for key, n in found:
        if n.op == "attention":
            q, k = (cap[_value_name(g, v)] for v in n.inputs[:2])
            mask = cap[_value_name(g, n.inputs[3])] if n.inputs[3] is not None else None
            p = fused_probabilities(q, k, mask, {**SIGNATURES["attention"].attrs, **n.attr})
        else:
            p = cap[n.name].float()
        if p.dim() == 3:
            p = p.unsqueeze(1)
        maps[key] = p.cpu().numpy()
        kinds[key] = "attention"
    info = {"source": "nndsl (softmax probabilities of each attention node)",
            "nodes": {key: {"node": n.name, "op": n.op} for key, n in found}}
    outs = out if isinstance(out, tuple) else (out,)
    preds = outs[0]
    if preds.dim() == 3:
        preds = preds[:, -1].argmax(-1)
    elif preds.dim() == 2 and preds.shape[1] > 1:
        preds = preds.argmax(-1)
    inputs = {n: x.detach().cpu().numpy() for n, x in samples.inputs.items()}
    return Explanation("attention", maps, None, preds.detach().cpu().numpy(), None, info,
                       inputs, kinds)
