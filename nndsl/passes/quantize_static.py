"""Static int8 quantization (``int8-static``): activations in u8, scales fixed by calibration.

A calibrated value ``x`` with observed range ``[lo, hi]`` (widened to hold 0) is stored as
``q = clamp(round(x / s) + z, 0, 255)``, ``s = (hi − lo) / 127``, ``z = round(−lo / s)``: 7 bits
of range, as PyTorch's x86 engine uses, so the u8·s8 products of CPUs without VNNI cannot
saturate. Weights are int8 with one scale per filter (:mod:`nndsl.ir.derive`), biases int32 at
scale ``s_x · s_w``.

The rewrite, in graph order:

- ``conv2d(x, W, b) ⇒ qconv2d(quantize(x), q_W, s_W, q_b)`` and ``linear`` likewise
  (``qlinear``), with a fused ReLU kept fused; the result stays u8;
- ``relu(add(a, b)) ⇒ qadd(a, b) {act=relu}`` when both operands are u8 (residual adds);
- ``max_pool2d``, ``flatten``, ``reshape`` and memory-layout changes pass u8 through (they are
  exact on integers);
- clamps with constant bounds — ``maximum(x, c)``, ``minimum(x, c)``, ``clamp``, an unfused
  ``relu``; ReLU6 is ``minimum(maximum(x, 0), 6)`` — become ``qclamp`` on the u8 grid, and the
  layer before such a chain takes its output scale from the chain's end (``[0, 6]`` for a
  ReLU6, not the wider range before it), so no precision goes to values the clamp cuts;
- everything else — softmax, norms, average pooling, activations other than ReLU — reads f32:
  ``dequantize_act`` is inserted where a u8 value meets such a reader, and graph outputs are
  f32. ``inspect`` lists these ops as kept in float.
"""

from __future__ import annotations

import math

from nndsl.errors import ArgumentError
from nndsl.ir.derive import expression
from nndsl.ir.graph import Graph, Node, Value
from nndsl.passes.quantize import check_scopes, has_weight, kept, nothing_to_do, weight_param
from nndsl.passes.rewrite import Rewriter, derived_param, sweep_dead

QMAX = 127
INTEGER_EXACT = frozenset({"max_pool2d", "flatten", "reshape", "memory_format"})


def clamp_of(graph: Graph, node: Node) -> tuple | None:
    """``(x, lo, hi)`` when ``node`` clamps the value ``x`` between constant bounds (either may
    be ``None``): ``maximum``/``minimum`` with a scalar, ``clamp``, ``relu``."""
    if node.op == "relu":
        return node.inputs[0], 0.0, None
    if node.op == "clamp":
        lo, hi = node.attr["min"], node.attr["max"]
        if all(v is None or math.isfinite(v) for v in (lo, hi)):
            return node.inputs[0], lo, hi
    if node.op in ("maximum", "minimum") and len(node.inputs) == 2:
        for x, c in (node.inputs, node.inputs[::-1]):
            k = graph.node(c.node)
            if k.op == "scalar" and graph.type_of(x) == node.type and \
                    math.isfinite(float(k.attr["value"])):
                v = float(k.attr["value"])
                return (x, v, None) if node.op == "maximum" else (x, None, v)
    return None


def qparams(lo: float, hi: float) -> tuple[float, int]:
    """``(scale, zero_point)`` for the range ``[lo, hi]`` (widened to hold 0)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / QMAX if hi > lo else 1.0
    zp = int(min(QMAX, max(0, round(-lo / scale))))
    return float(scale), zp


def why_float(graph: Graph, node: Node, keep: tuple) -> str | None:
    """Why int8-static leaves a layer with weights in float (``None``: it does not)."""
    if node.op not in ("conv2d", "linear"):
        return f"int8-static does not quantize {node.op}"
    if kept(node, keep):
        return "kept in float (keep)"
    if weight_param(graph, node.inputs[1]) is None:
        return "its weight is computed, not a parameter"
    if graph.type_of(node.inputs[0]).dtype != "f32":
        return "its input is not f32"
    if node.attr.get("act") not in (None, "relu"):
        return f"its fused {node.attr['act']} has no int8 kernel"
    if node.attr.get("padding") == "same":
        return "padding=\"same\" has no int8 kernel"
    return None


def skipped(graph: Graph, keep: tuple = ()) -> list[tuple[Node, str]]:
    """What int8-static leaves in float, each with the reason: the layers with weights it does
    not take, and the ops that read dequantized values."""
    out = []
    for n in graph:
        if any(v is not None and graph.node(v.node).op == "dequantize_act" for v in n.inputs):
            out.append((n, "reads f32 (dequantized)"))
        elif has_weight(graph, n) and n.op not in ("qconv2d", "qlinear"):
            out.append((n, why_float(graph, n, keep) or "left in float"))
    return out


def static_quantize(stats: dict, keep: tuple = ()):
    """The ``int8-static`` pass; ``stats`` maps ``(node, output index)`` of the float graph to
    its calibrated ``(lo, hi)``."""
    def run(graph: Graph) -> tuple[Graph, bool]:
        if any(n.op in ("qconv2d", "qlinear", "quantize") for n in graph):
            return graph, False
        check_scopes(graph, keep, "--keep")
        readers = graph.reader_map()
        outputs = {v for _, v in graph.outputs}
        rw = Rewriter(graph)
        quant: dict[Value, tuple] = {}     # old value -> (new u8 value, scale, zero point)
        floats: dict[Value, Value] = {}    # old value -> its dequantized new value
        weights: dict[str, tuple] = {}
        fused_relu: dict[str, Value] = {}  # relu node -> the qadd that absorbed it

        def rng(v: Value):
            key = (v.node, v.index)
            if key not in stats:
                raise ArgumentError(f"no calibration range for `{v.node}`", code="E0236",
                                    hint="calibrate on the graph that is quantized")
            return qparams(*stats[key])

        made_float: set = set()            # values computed in f32 (their u8 is a copy)

        def chain_end(v: Value) -> Value:
            """The last value of the clamps that alone read ``v`` (``v`` itself when none):
            the range the layer making ``v`` is quantized to."""
            while v not in outputs:
                users = readers.get(v.node, [])
                c = clamp_of(graph, users[0]) if len(users) == 1 else None
                if c is None or c[0] != v:
                    return v
                v = users[0].out()
            return v

        def as_u8(v: Value, like: Node) -> tuple:
            if v in quant:
                return quant[v]
            s, z = rng(v)
            q = rw.emit("quantize", [rw.value(v)], {"scale": s, "zero_point": z},
                        like=like, name=f"{v.node}.q")
            quant[v] = (q.out(), s, z)
            made_float.add(v)
            return quant[v]

        def as_f32(v: Value | None, like: Node):
            if v is None or v not in quant or v in made_float:
                return rw.value(v)
            if v not in floats:
                q, s, z = quant[v]
                floats[v] = rw.emit("dequantize_act", [q], {"scale": s, "zero_point": z},
                                    like=rw.producer(q), name=f"{v.node}.dq").out()
            return floats[v]

        def qweight(w: Node, like: Node):
            if w.name not in weights:
                src = expression(w)
                q = derived_param(rw, f"{w.name}_q", like, w.type.shape, "quantize_weight",
                                  [src], dtype="i8", trainable=False, to="i8", group=None)
                s = derived_param(rw, f"{w.name}_scale", like, (w.type.shape[0],),
                                  "quant_scale", [src], trainable=False, to="i8", group=None)
                weights[w.name] = (q, s, src)
            return weights[w.name]

        for node in graph:
            if node.name in fused_relu:
                continue
            if node.op in ("input", "param", "scalar", "full", "arange"):
                rw.keep(node)
                continue
            w = weight_param(graph, node.inputs[1]) if node.op in ("conv2d", "linear") else None
            layer_ok = w is not None and why_float(graph, node, keep) is None
            if layer_ok:
                x, xs, xz = as_u8(node.inputs[0], node)
                q, s, src = qweight(w, node)
                bias = None
                if node.inputs[2] is not None:
                    b = graph.node(node.inputs[2].node)
                    if b.op != "param":
                        layer_ok = False
                    else:
                        bias = derived_param(rw, f"{node.name}.bias_q", node, b.type.shape,
                                             "quantize_bias", [expression(b), src],
                                             dtype="i32", trainable=False, x_scale=xs).out()
            if layer_ok:
                os_, oz = rng(chain_end(node.out()))
                attrs = {k: v for k, v in node.attr.items()}
                attrs.update(x_scale=xs, x_zp=xz, out_scale=os_, out_zp=oz)
                op = "qconv2d" if node.op == "conv2d" else "qlinear"
                new = rw.emit(op, [x, q.out(), s.out(), bias], attrs, like=node,
                              name=node.name + ".int8")
                quant[node.out()] = (new.out(), os_, oz)
                rw.changed = True
                continue
            if node.op == "add" and all(v in quant for v in node.inputs) and \
                    graph.type_of(node.inputs[0]) == graph.type_of(node.inputs[1]) == node.type:
                users = readers.get(node.name, [])
                relu = users[0] if len(users) == 1 and users[0].op == "relu" and \
                    node.out() not in outputs else None
                last = relu.out() if relu is not None else node.out()
                (a, as_, az), (b, bs, bz) = quant[node.inputs[0]], quant[node.inputs[1]]
                os_, oz = rng(chain_end(last))
                new = rw.emit("qadd", [a, b], {"act": "relu" if relu else None, "a_scale": as_,
                                               "a_zp": az, "b_scale": bs, "b_zp": bz,
                                               "out_scale": os_, "out_zp": oz},
                              like=node, name=node.name + ".int8")
                quant[last] = (new.out(), os_, oz)
                if relu is not None:
                    fused_relu[relu.name] = new.out()
                rw.changed = True
                continue
            clamp = clamp_of(graph, node)
            if clamp is not None and clamp[0] in quant:
                q, s, z = quant[clamp[0]]
                new = rw.emit("qclamp", [q], {"min": clamp[1], "max": clamp[2], "scale": s,
                                              "zero_point": z}, like=node, name=node.name)
                quant[node.out()] = (new.out(), s, z)
                rw.changed = True
                continue
            if node.op in INTEGER_EXACT and node.inputs[0] in quant:
                q, s, z = quant[node.inputs[0]]
                new = rw.emit(node.op, [q], node.attr, like=node, name=node.name)
                quant[node.out()] = (new.out(), s, z)
                continue
            ins = [as_f32(v, node) for v in node.inputs]
            rw.add(node.with_(inputs=tuple(ins)))
        outs = []
        for name, v in graph.outputs:
            outs.append((name, as_f32(v, graph.node(v.node))))
        for old, (new, _, _) in quant.items():
            if old not in made_float:
                rw.map.setdefault(old, new)
        if not any(n.op in ("qconv2d", "qlinear") for n in rw.out):
            nothing_to_do("int8-static", skipped(graph, keep))     # says why, layer by layer
        out = rw.finish(sweep=False)
        out.outputs = outs
        return sweep_dead(out, keep_params=False), True
    return run
