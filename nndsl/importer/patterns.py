"""Subgraphs recovered as one op before the walk: what an exporter wrote out in pieces.

Each rule matches at the last node of its pattern and gives the node that replaces it; the
pattern's inner nodes go, provided nothing else reads them (each inner value has one reader,
inside the pattern, and is no graph output). Rules:

- ``gelu``: ``x · ½ · (1 + erf(x / √2))``, as torch exports ``GELU`` before opset 20:
  ``Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), ½)`` (or ``Mul(x, 1/√2)`` inside) -> ``Gelu(x)``;
- ``silu``: ``x · sigmoid(x)`` -> ``Swish(x)`` (alpha 1);
- ``layer_norm``: ``(x − μ) / sqrt(mean((x − μ)²) + ε) · γ + β`` over the last dim, μ its mean,
  as torch exports ``LayerNorm`` before opset 17 -> ``LayerNormalization(x, γ, β)``;
- ``rms_norm``: ``x · (1 / sqrt(mean(x²) + ε)) · γ`` (``Reciprocal`` or ``Div(1, ·)``; or
  ``x / sqrt(...) · γ``) over the last dim, as RMSNorm is exported before opset 23 ->
  ``RMSNormalization(x, γ)``;
- ``attention``: ``softmax(q Kᵀ · scale + mask) V`` as MatMul, Mul/Div, Add or Where,
  Softmax, MatMul -> ``nndsl.Attention(q, Kᵀ, V, mask)`` (an op of the importer's own, not
  ONNX's: :func:`nndsl.importer.ops.sequence.sdpa` writes it so that nndsl's fusion pass
  finds its ``attention`` op again).

The inputs are read, never mutated: :func:`recover` returns a new node list.
"""

from __future__ import annotations


class _Graph:
    """What the rules read of a graph: producers, readers, constants."""

    def __init__(self, graph):
        from onnx import numpy_helper as nh
        self.producer = {o: n for n in graph.node for o in n.output}
        self.readers: dict = {}
        for n in graph.node:
            for i in n.input:
                self.readers[i] = self.readers.get(i, 0) + 1
        for o in graph.output:
            self.readers[o.name] = self.readers.get(o.name, 0) + 1
        self.consts = {t.name: t for t in graph.initializer}
        self.ranks = {vi.name: len(vi.type.tensor_type.shape.dim)
                      for vi in list(graph.value_info) + list(graph.input) + list(graph.output)
                      if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape")}
        self.sizes = {}
        for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
            t = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
            if t is not None and t.HasField("shape") and \
                    all(d.HasField("dim_value") for d in t.shape.dim):
                n = 1
                for d in t.shape.dim:
                    n *= d.dim_value
                self.sizes[vi.name] = n
        self.nh = nh

    def _array(self, name: str):
        """The value of an initializer or a tensor ``Constant``, else None."""
        t = self.consts.get(name)
        if t is not None:
            return self.nh.to_array(t)
        n = self.producer.get(name)
        if n is None or n.op_type != "Constant" or not n.attribute or \
                not n.attribute[0].HasField("t"):
            return None
        return self.nh.to_array(n.attribute[0].t)

    def ints(self, name: str):
        """The values of a constant integer vector, else None."""
        a = self._array(name)
        return [int(v) for v in a.reshape(-1)] if a is not None and a.dtype.kind == "i" \
            else None

    def scalar(self, name: str):
        """The value of a one-element constant, else None."""
        a = self._array(name)
        return float(a.reshape(-1)[0]) if a is not None and a.size == 1 and \
            a.dtype.kind == "f" else None

    def one_element(self, name: str) -> bool:
        """Whether shape inference (or the constant) says ``name`` holds one element."""
        a = self._array(name)
        if a is not None:
            return a.size == 1
        return self.sizes.get(name) == 1

    def made_by(self, name: str, op: str):
        n = self.producer.get(name)
        return n if n is not None and n.op_type == op else None

    def only_once(self, name: str) -> bool:
        return self.readers.get(name, 0) == 1


def _other(node, name: str) -> str | None:
    """The input of a binary node that is not ``name`` (None when neither or both are)."""
    a, b = node.input[0], node.input[1]
    return b if a == name else a if b == name else None


def _near(v, want: float) -> bool:
    return v is not None and abs(v - want) <= 1e-6 * max(1.0, abs(want))


def _gelu_core(g: _Graph, name: str):
    """``x · (1 + erf(x / √2))`` made by ``name``: (x, the inner nodes) or None."""
    mul = g.made_by(name, "Mul")
    if mul is None:
        return None
    for add_out in mul.input:
        add = g.made_by(add_out, "Add")
        if add is None or not g.only_once(add_out):
            continue
        for erf_out in add.input:
            erf = g.made_by(erf_out, "Erf")
            if erf is None or not g.only_once(erf_out) or not _near(g.scalar(_other(
                    add, erf_out) or ""), 1.0):
                continue
            div = g.made_by(erf.input[0], "Div")
            mul_sqrt = g.made_by(erf.input[0], "Mul")
            x = None
            inner = div or mul_sqrt
            if inner is None or not g.only_once(erf.input[0]):
                continue
            if div is not None and _near(g.scalar(div.input[1]), 2 ** 0.5):
                x = div.input[0]
            elif mul_sqrt is not None:
                for k in (0, 1):
                    if _near(g.scalar(mul_sqrt.input[1 - k]), 2 ** -0.5):
                        x = mul_sqrt.input[k]
            if x is not None and _other(mul, add_out) == x:
                return x, [inner, erf, add, mul]
    return None


def gelu(g: _Graph, node):
    """``Mul(x · (1 + erf(x / √2)), ½)`` -> ``Gelu(x)``."""
    if node.op_type != "Mul":
        return None
    for k in (0, 1):
        if _near(g.scalar(node.input[1 - k]), 0.5) and g.only_once(node.input[k]):
            found = _gelu_core(g, node.input[k])
            if found is not None:
                return [found[0]], found[1], {}
    return None


def silu(g: _Graph, node):
    """``Mul(x, Sigmoid(x))`` -> ``Swish(x)``."""
    if node.op_type != "Mul":
        return None
    for k in (0, 1):
        sig = g.made_by(node.input[k], "Sigmoid")
        if sig is not None and g.only_once(node.input[k]) and \
                sig.input[0] == node.input[1 - k]:
            return [sig.input[0]], [sig], {}
    return None


def _mean_last(g: _Graph, name: str):
    """The ReduceMean over the last dim (dims kept) that makes ``name``, else None."""
    n = g.made_by(name, "ReduceMean")
    if n is None or any(a.name == "keepdims" and a.i == 0 for a in n.attribute):
        return None
    axes = next((list(a.ints) for a in n.attribute if a.name == "axes"), None)
    if axes is None and len(n.input) > 1:
        axes = g.ints(n.input[1])
    rank = g.ranks.get(n.input[0])
    if axes is None or len(axes) != 1 or rank is None or axes[0] not in (-1, rank - 1):
        return None
    return n


def _one_of(g: _Graph, node, op: str):
    """(the input of ``node`` made by ``op`` and read only there, the other input)."""
    for k in (0, 1):
        if g.made_by(node.input[k], op) is not None and g.only_once(node.input[k]):
            return g.made_by(node.input[k], op), node.input[1 - k]
    return None, None


def layer_norm(g: _Graph, node):
    """``Add(Mul(Div(d, Sqrt(Add(mean(d²), ε))), γ), β)`` with ``d = x − mean(x)``."""
    if node.op_type != "Add":
        return None
    mul, beta = _one_of(g, node, "Mul")
    if mul is None:
        return None
    div, gamma = _one_of(g, mul, "Div")
    if div is None or not g.only_once(div.input[1]):
        return None
    sqrt = g.made_by(div.input[1], "Sqrt")
    sub = g.made_by(div.input[0], "Sub")
    if sqrt is None or sub is None or g.readers.get(div.input[0]) != 2:
        return None
    add_eps = g.made_by(sqrt.input[0], "Add")
    if add_eps is None or not g.only_once(sqrt.input[0]):
        return None
    for k in (0, 1):
        var = _mean_last(g, add_eps.input[k])
        eps = g.scalar(add_eps.input[1 - k])
        if var is not None and eps is not None and g.only_once(add_eps.input[k]):
            break
    else:
        return None
    sq_name = var.input[0]
    sq = g.made_by(sq_name, "Pow") or g.made_by(sq_name, "Mul")
    if sq is None or not g.only_once(sq_name) or sq.input[0] != div.input[0]:
        return None
    if sq.op_type == "Pow" and not _near(g.scalar(sq.input[1]), 2.0) or \
            sq.op_type == "Mul" and sq.input[1] != div.input[0]:
        return None
    mean = _mean_last(g, sub.input[1])
    if mean is None or mean.input[0] != sub.input[0] or not g.only_once(sub.input[1]):
        return None
    return [sub.input[0], gamma, beta], [mean, sub, sq, var, add_eps, sqrt, div, mul], \
        {"axis": -1, "epsilon": eps}


def _square_of(g: _Graph, name: str):
    """(x, the node) where ``name`` is ``x · x`` or ``x ** 2`` read once, else (None, None)."""
    sq = g.made_by(name, "Pow") or g.made_by(name, "Mul")
    if sq is None or not g.only_once(name):
        return None, None
    if sq.op_type == "Pow" and _near(g.scalar(sq.input[1]), 2.0) or \
            sq.op_type == "Mul" and sq.input[0] == sq.input[1]:
        return sq.input[0], sq
    return None, None


def rms_norm(g: _Graph, node):
    """``Mul(Mul(x, Reciprocal(Sqrt(Add(mean(x²), ε)))), γ)`` or ``Mul(Div(x, Sqrt(...)), γ)``."""
    if node.op_type != "Mul":
        return None
    for k in (0, 1):
        inner, gamma = node.input[k], node.input[1 - k]
        if not g.only_once(inner):
            continue
        scaled = g.made_by(inner, "Mul") or g.made_by(inner, "Div")
        if scaled is None:
            continue
        if scaled.op_type == "Div":
            x, root_name, recip = scaled.input[0], scaled.input[1], None
        else:
            recip, x = _one_of(g, scaled, "Reciprocal")
            if recip is None:       # torch writes rsqrt as Div(1, Sqrt(...))
                recip, x = _one_of(g, scaled, "Div")
                if recip is None or not _near(g.scalar(recip.input[0]), 1.0):
                    continue
                root_name = recip.input[1]
            else:
                root_name = recip.input[0]
        root = g.made_by(root_name, "Sqrt")
        if root is None or not g.only_once(root_name):
            continue
        add = g.made_by(root.input[0], "Add")
        if add is None or not g.only_once(root.input[0]):
            continue
        for j in (0, 1):
            mean = _mean_last(g, add.input[j])
            eps = g.scalar(add.input[1 - j])
            if mean is None or eps is None or not g.only_once(add.input[j]):
                continue
            base, sq = _square_of(g, mean.input[0])
            centred = g.made_by(x, "Sub")
            if centred is not None and _mean_last(g, centred.input[1]) is not None:
                return None         # x − mean(x) normalized: a layer norm, its own rule's
            if base == x:
                found = [sq, mean, add, root] + ([recip] if recip is not None else []) + \
                    [scaled]
                return [x, gamma], found, {"axis": -1, "epsilon": eps}
    return None


def _scaled(g: _Graph, name: str):
    """``x · c`` or ``x / c``, c one element (a constant, or a value computed from the shapes,
    as torch's SDPA export computes its scale), made by ``name`` and read once:
    (x, c's name, whether it divides, the node), else (name, "", False, None)."""
    n = g.made_by(name, "Mul") or g.made_by(name, "Div")
    if n is not None and g.only_once(name):
        for k in ((0, 1) if n.op_type == "Mul" else (0,)):
            if g.one_element(n.input[1 - k]) and not g.one_element(n.input[k]):
                return n.input[k], n.input[1 - k], n.op_type == "Div", n
    return name, "", False, None


def attention(g: _Graph, node):
    """``MatMul(Softmax(mask(MatMul(q · a, kᵀ · b) · c)), v)`` -> one attention node: the
    scores' scale factors (torch's SDPA export splits √scale over q and kᵀ; a written-out one
    scales or divides the product), the mask added (``+ mask``) or filled in
    (``Where(cond, -inf, s)``, as ``masked_fill`` exports), over the last dim."""
    if node.op_type != "MatMul" or len(node.input) != 2:
        return None
    sm = g.made_by(node.input[0], "Softmax")
    if sm is None or not g.only_once(node.input[0]):
        return None
    axis = next((a.i for a in sm.attribute if a.name == "axis"), -1)
    rank = g.ranks.get(sm.input[0])
    if rank is None or rank < 2 or axis % rank != rank - 1:
        return None
    inner, s, mask, kind = [sm], sm.input[0], "", "none"
    add = g.made_by(s, "Add")
    where = g.made_by(s, "Where")
    if (add or where) is not None and not g.only_once(s):
        return None
    if add is not None:
        for k in (0, 1):
            x = _scaled(g, add.input[k])[0]
            if g.made_by(x, "MatMul") is not None:
                s, mask, kind = add.input[k], add.input[1 - k], "add"
                inner.append(add)
                break
        else:
            return None
    elif where is not None:
        for k, fill_kind in ((2, "fill_true"), (1, "fill_false")):
            fill = g.scalar(where.input[3 - k])
            if fill is not None and fill == float("-inf"):
                s, mask, kind = where.input[k], where.input[0], fill_kind
                inner.append(where)
                break
        else:
            return None
    m_name, c, c_div, scale_node = _scaled(g, s)
    mm = g.made_by(m_name, "MatMul")
    if mm is None or not g.only_once(m_name):
        return None
    q, a, _, qn = _scaled(g, mm.input[0])
    kt, b, _, kn = _scaled(g, mm.input[1])
    if qn is not None and qn.op_type == "Div" or kn is not None and kn.op_type == "Div":
        return None
    if g.ranks.get(q) is None or g.ranks.get(q) != g.ranks.get(kt) or g.ranks.get(q) < 2:
        return None
    found = [n for n in (qn, kn, scale_node) if n is not None] + [mm] + inner[::-1]
    return [q, kt, node.input[1], mask, a, b, c], found + [node], {
        "mask": kind, "divide": int(c_div)}


RULES = (("Gelu", gelu), ("Swish", silu), ("LayerNormalization", layer_norm),
         ("RMSNormalization", rms_norm), ("nndsl.Attention", attention))


def recover(graph) -> list:
    """The graph's nodes with the rules' patterns replaced by one node each."""
    from onnx import helper
    g = _Graph(graph)
    dropped: set = set()
    replaced: dict = {}
    for node in graph.node:
        for op, rule in RULES:
            found = rule(g, node)
            if found is None:
                continue
            inputs, inner, attrs = found
            if any(id(n) in dropped or id(n) in replaced for n in inner if n is not node):
                continue
            dropped.update(id(n) for n in inner if n is not node)
            replaced[id(node)] = helper.make_node(op, inputs, [node.output[0]],
                                                  name=node.name or inner[0].name, **attrs)
            break
    return [replaced.get(id(n), n) for n in graph.node if id(n) not in dropped]

