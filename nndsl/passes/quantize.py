"""Quantization passes: weights (and, for dynamic int8, activations) in fewer bits.

Each scheme is a pass factory ``scheme(options) -> fn(graph) -> (graph, changed)`` over the
optimized graph. The new weights are *derived* parameters (:mod:`nndsl.ir.derive`): the spec's
weights go in by their names and are quantized as they load, so every backend stores and runs
the same integers.

- ``int8-dynamic``: ``linear(x, W, b) ⇒ linear_int8(x, q, s, b)`` with ``q = round(W / s)``,
  ``s = max|W_row| / 127`` per output feature; ``x`` is quantized to 8 bits on every call.
  Embeddings (a lookup has no activation to quantize) store int8 rows, as ``int8-weight``.
- ``int8-weight`` / ``int4-weight``: ``linear(x, W, b) ⇒ linear(x, dequantize(q, s), b)`` and
  ``embedding(i, W) ⇒ embedding(i, dequantize(q, s))``: weights stored in 8 or 4 bits (one scale
  per row, or per row and group of ``group`` columns), computed in float.
- LSTM, GRU and RNN layers (int8-dynamic, int8-weight): their weight matrices stored in int8 and
  read through ``dequantize``; the recurrence runs in float (no int8 recurrent kernel is
  portable to ONNX's standard operators).
- ``f16`` / ``bf16``: every op in half precision except those that lose accuracy there (norms,
  softmax, reductions, recurrences), which read f32 operands and hand back half; inputs and
  outputs keep their declared f32 type.

A layer is left in float when its scope is listed in ``keep`` or its weight is not a parameter
(a weight computed at run time); :func:`skipped` says which and why, for ``inspect``.
"""

from __future__ import annotations

from dataclasses import dataclass

from nndsl.errors import ArgumentError
from nndsl.ir.derive import expression
from nndsl.ir.graph import Graph, Node, Value
from nndsl.ir.types import FLOAT_DTYPES
from nndsl.passes.rewrite import Rewriter, derived_param, sweep_dead

# Ops computed in f32 under f16/bf16: their accuracy suffers most in half precision.
KEEP_F32 = frozenset({"batch_norm", "layer_norm", "group_norm", "softmax", "log_softmax",
                      "sum", "mean", "prod", "cumsum", "cumprod", "logsumexp", "var", "std",
                      "rms_norm", "segment_sum", "segment_mean",
                      "segment_softmax", "lstm", "gru", "rnn", "scan"})


@dataclass(frozen=True)
class QuantOptions:
    scheme: str
    group: int | None = None           # columns per scale (weight-only schemes)
    keep: tuple = ()                   # scopes left in float


def kept(node: Node, keep: tuple) -> bool:
    """Whether ``node`` is in one of the scopes left in float."""
    return any(node.under(k) for k in keep)


def weight_param(graph: Graph, v: Value | None) -> Node | None:
    """The ``param`` node an operand reads, if it is one."""
    if v is None:
        return None
    p = graph.node(v.node)
    return p if p.op == "param" else None


def quantizable(graph: Graph, node: Node, scheme: str) -> str | None:
    """``None`` when ``scheme`` can take ``node``'s weight; otherwise why not."""
    weight_slot = {"linear": 1, "embedding": 1}.get(node.op)
    if weight_slot is None:
        return None if node.op != "param" else "not a layer"
    w = weight_param(graph, node.inputs[weight_slot])
    if w is None:
        return "its weight is computed, not a parameter"
    if w.type.dtype != "f32":
        return f"its weight is {w.type.dtype}"
    if scheme == "int8-dynamic" and node.op == "linear" and \
            graph.type_of(node.inputs[0]).dtype != "f32":
        return "its input is not f32"
    if scheme == "int4-weight" and w.type.shape[-1] % 2:
        return f"an odd width ({w.type.shape[-1]}) cannot pack two 4-bit values a byte"
    return None


def layer_group(cols: int, options: QuantOptions) -> int | None:
    """The group size for a weight of ``cols`` columns: the one asked for (it must divide), or
    for int4 the default 32 where it divides and one scale per row elsewhere."""
    if options.group is not None:
        return options.group
    if options.scheme == "int4-weight" and cols % 32 == 0 and cols > 32:
        return 32
    return None


def _quantized_weight(rw: Rewriter, w: Node, like: Node, dtype: str, group: int | None):
    """The derived integer weight and its scales for parameter ``w``."""
    src = expression(w)
    rows = w.type.shape[0]
    cols = w.type.shape[-1]
    q = derived_param(rw, f"{w.name}_q", like, w.type.shape, "quantize_weight", [src],
                      dtype=dtype, trainable=False, to=dtype, group=group)
    s_shape = (rows,) if group is None else (rows, cols // group)
    s = derived_param(rw, f"{w.name}_scale", like, s_shape, "quant_scale", [src],
                      trainable=False, to=dtype, group=group)
    return q, s


def weight_quantize(options: QuantOptions):
    """int8-weight / int4-weight / int8-dynamic as a pass."""
    dtype = "i4" if options.scheme == "int4-weight" else "i8"

    def run(graph: Graph) -> tuple[Graph, bool]:
        check_scopes(graph, options.keep, "--keep")
        if any(n.op in ("linear_int8", "dequantize") for n in graph):
            return graph, False          # quantized already
        _check_groups(graph, options)
        rw = Rewriter(graph)
        done: dict[str, tuple] = {}   # weight name -> (q, s) (a tied weight is quantized once)
        for node in graph:
            n = rw.remapped(node)
            if node.op in RECURRENT and options.scheme != "int4-weight" and \
                    not kept(node, options.keep):
                new = _recurrent_weights(rw, graph, node, n, done)
                if new is not None:
                    rw.replace(node, [new.out(i) for i in range(len(node.types))])
                    continue
            if node.op not in ("linear", "embedding") or kept(node, options.keep) or \
                    quantizable(graph, node, options.scheme) is not None:
                rw.add(n)
                continue
            w = graph.node(node.inputs[1].node)
            group = layer_group(w.type.shape[-1], options)
            if w.name not in done:
                done[w.name] = _quantized_weight(rw, w, node, dtype, group)
            q, s = done[w.name][:2]
            if options.scheme == "int8-dynamic" and node.op == "linear":
                new = rw.emit("linear_int8", [n.inputs[0], q.out(), s.out(), n.inputs[2]],
                              {"act": node.attr.get("act")}, like=node, name=node.name + ".int8")
            else:
                if len(done[w.name]) == 2:      # a tied weight is dequantized once
                    done[w.name] += (rw.emit("dequantize", [q.out(), s.out()], {"group": group},
                                             like=node, name=f"{w.name}_dq"),)
                dq = done[w.name][2]
                ins = list(n.inputs)
                ins[1] = dq.out()
                new = rw.emit(node.op, ins, node.attr, like=node, name=node.name + ".wq")
            rw.replace(node, [new.out()])
        if not done:
            nothing_to_do(options.scheme, skipped(graph, options.scheme, options.keep))
        return rw.finish(keep_params=False), True
    return run


RECURRENT = ("lstm", "gru", "rnn")


def _recurrent_weights(rw: Rewriter, graph: Graph, node: Node, n: Node, done: dict):
    """A recurrent layer's weight matrices stored in int8 (one scale per gate row), read through
    ``dequantize``; its biases and its arithmetic stay float. ``None`` when a weight is not a
    parameter."""
    first = 3 if node.op == "lstm" else 2
    ins = list(n.inputs)
    for i in range(first, len(node.inputs)):
        w = weight_param(graph, node.inputs[i])
        if w is None:
            return None
        if w.type.rank != 2 or w.type.dtype != "f32":
            continue                                   # a bias
        if w.name not in done:
            q, s = _quantized_weight(rw, w, node, "i8", None)
            dq = rw.emit("dequantize", [q.out(), s.out()], {"group": None}, like=node,
                         name=f"{w.name}_dq")
            done[w.name] = (q, s, dq)
        ins[i] = done[w.name][2].out()
    return rw.emit(node.op, ins, node.attr, like=node, name=node.name + ".wq")


def nothing_to_do(scheme: str, left: list) -> None:
    """A scheme that finds no layer it can take is a mistake, not a no-op: say why, for every
    layer with weights (``left``: what :func:`skipped` says), in one error."""
    why = "; ".join(f"{n.scope or n.name} ({n.op}): {r}" for n, r in left[:8])
    more = f"; and {len(left) - 8} more" if len(left) > 8 else ""
    raise ArgumentError(f"{scheme} finds nothing to quantize in this model" +
                        (f": {why}{more}" if left else " (it has no layers with weights)"),
                        code="E0238", hint="int8-dynamic takes linear layers, int8-static "
                        "conv2d and linear, int8-weight and int4-weight linear and embedding")


def check_scopes(graph: Graph, scopes, what: str) -> None:
    """Every scope named in an option must exist: all unknown ones in one error."""
    names = {n.scope for n in graph} | {n.name for n in graph}
    prefixes = {p for s in names for p in _prefixes(s)}
    unknown = [k for k in scopes if k not in prefixes]
    if unknown:
        raise ArgumentError(f"{what}: no scope " + ", ".join(f"`{k}`" for k in unknown) +
                            " in the model", code="E0256",
                            hint="scopes are the names `nndsl inspect` shows (e.g. "
                                 "`layers.0.fc`)")


def _prefixes(scope: str):
    parts = scope.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def fake_quantize_weights(bits: int, group: int | None, keep: tuple = ()):
    """QAT as a pass: ``layer(x, W) ⇒ layer(x, fake_quantize(W))`` for linear, conv and
    embedding weights. Training-safe: the parameters stay the spec's, the forward sees the
    quantized weights and the gradient passes straight through to the float ones. Linears and
    embeddings take the groups the weight-only scheme of the same bits would (``group``, else
    for 4 bits 32 columns where that divides), so the trained weights convert exactly."""
    scheme = "int4-weight" if bits == 4 else "int8-weight"
    options = QuantOptions(scheme, group, keep)

    def run(graph: Graph) -> tuple[Graph, bool]:
        check_scopes(graph, keep, "--keep")
        if any(n.op == "fake_quantize" for n in graph):
            return graph, False
        _check_groups(graph, options)
        rw = Rewriter(graph)
        noisy: dict[str, Value] = {}
        for node in graph:
            n = rw.remapped(node)
            w = weight_param(graph, node.inputs[1]) if node.op in ("linear", "embedding") or \
                node.op.startswith("conv") else None
            if w is None or kept(node, keep) or w.type.dtype not in FLOAT_DTYPES:
                rw.add(n)
                continue
            g = layer_group(w.type.shape[-1], options) if node.op in ("linear", "embedding") \
                else None
            if w.name not in noisy:
                noisy[w.name] = rw.emit("fake_quantize", [n.inputs[1]], {"bits": bits,
                                                                         "group": g},
                                        like=node, name=f"{w.name}.qat").out()
            ins = list(n.inputs)
            ins[1] = noisy[w.name]
            rw.add(n.with_(inputs=tuple(ins)))
        return rw.finish(), bool(noisy)
    return run


def _check_groups(graph: Graph, options: QuantOptions) -> None:
    """A group asked for must divide the width of every weight it applies to: all offenders in
    one error."""
    if options.group is None:
        return
    bad = []
    for node in graph:
        if node.op in ("linear", "embedding") and not kept(node, options.keep) and \
                quantizable(graph, node, options.scheme) is None:
            cols = graph.type_of(node.inputs[1]).shape[-1]
            if cols % options.group:
                bad.append(f"{node.scope or node.name} ({node.op}, {cols} columns)")
    if bad:
        raise ArgumentError(f"--group {options.group} does not divide the width of "
                            f"{len(bad)} layer(s): " + ", ".join(bad), code="E0251",
                            hint="pick a group that divides every width (e.g. a power of two "
                                 "that divides them), or keep those layers in float")


def half_precision(options: QuantOptions):
    """f16 / bf16 as a pass: see the module docstring."""
    half = options.scheme

    def run(graph: Graph) -> tuple[Graph, bool]:
        if graph.meta.get("half") == half:
            return graph, False
        check_scopes(graph, options.keep, "--keep")
        readers = graph.reader_map()
        rw = Rewriter(graph)
        casts: dict = {}     # (value, dtype) -> the value in that dtype, made once

        def cast(v: Value, dtype: str, like: Node) -> Value:
            t = rw.type_of(v)
            if t.dtype == dtype or t.dtype not in FLOAT_DTYPES:
                return v
            if (v, dtype) not in casts:
                p = rw.producer(v)
                if p.op == "scalar":     # a number: the same number in the reader's dtype
                    new = rw.emit("scalar", [], {**p.attr, "dtype": dtype}, like=p,
                                  name=f"{v.node}.{dtype}")
                else:
                    new = rw.emit("cast", [v], {"dtype": dtype}, like=like,
                                  name=f"{v.node}.{dtype}")
                casts[(v, dtype)] = new.out()
            return casts[(v, dtype)]

        for node in graph:
            n = rw.remapped(node)
            if node.op == "input":
                rw.add(n)
                if n.type.dtype == "f32":
                    rw.map[node.out()] = cast(n.out(), half, n)
                continue
            if node.op == "param":
                users = readers.get(node.name, [])
                if n.type.dtype == "f32" and any(u.op not in KEEP_F32 and not
                                                 kept(u, options.keep) for u in users):
                    p = derived_param(rw, node.name, node, n.type.shape, "cast",
                                      [expression(node)], dtype=half,
                                      trainable=node.attr["trainable"], to=half)
                    rw.map[node.out()] = p.out()
                    rw.changed = True
                else:
                    rw.add(n)
                continue
            keep32 = node.op in KEEP_F32 or kept(node, options.keep)
            want = "f32" if keep32 else half
            ins = [None if v is None else cast(v, want, node) for v in n.inputs]
            if node.op in ("full", "arange", "scalar"):
                new = rw.add(n)
            elif ins == list(n.inputs) and all(
                    t.dtype not in FLOAT_DTYPES or t.dtype == want for t in n.types):
                new = rw.add(n)
            else:
                new = rw.emit(node.op, ins, node.attr, like=node, name=node.name)
                rw.changed = True
            for i in range(len(node.types)):
                rw.map[node.out(i)] = new.out(i)
        outs = []
        for name, v in graph.outputs:
            v2 = rw.value(v)
            want = graph.type_of(v).dtype
            outs.append((name, cast(v2, want, rw.producer(v2)) if want in FLOAT_DTYPES else v2))
        out = rw.finish(sweep=False)
        out.outputs = outs
        out = sweep_dead(out, keep_params=False)
        out.meta["half"] = half
        return out, True
    return run


SCHEMES = {
    "int8-dynamic": weight_quantize,
    "int8-weight": weight_quantize,
    "int4-weight": weight_quantize,
    "f16": half_precision,
    "bf16": half_precision,
    "int8-static": None,      # needs calibration first: see nndsl.passes.quantize_static
}


def skipped(graph: Graph, scheme: str, keep: tuple = ()) -> list[tuple[Node, str]]:
    """What ``scheme`` leaves in float, each with the reason: the layers with weights it does
    not take (f16/bf16: the ops it computes in f32). int8-static:
    :func:`nndsl.passes.quantize_static.skipped`."""
    if scheme in ("f16", "bf16"):
        return [(n, f"{n.op} runs in f32") for n in graph if n.op in KEEP_F32]
    out = []
    for node in graph:
        if node.op in ("input", "param", "scalar", "linear_int8", "dequantize"):
            continue
        if not has_weight(graph, node):
            continue
        if kept(node, keep):
            out.append((node, "kept in float (keep)"))
            continue
        why = quantizable(graph, node, scheme) if node.op in ("linear", "embedding") else \
            ("int4 packs no recurrent weights" if scheme == "int4-weight" else None) \
            if node.op in RECURRENT else f"{scheme} does not quantize {node.op}"
        if why is not None:
            out.append((node, why))
    return out


def has_weight(graph: Graph, node: Node) -> bool:
    """Whether ``node`` reads a float parameter of rank >= 2 (a layer's weight)."""
    return node.op not in ("input", "param") and any(
        v is not None and graph.node(v.node).op == "param" and
        graph.node(v.node).type.dtype in FLOAT_DTYPES and graph.node(v.node).type.rank >= 2
        for v in node.inputs)


def check_options(scheme: str, group) -> None:
    if scheme not in SCHEMES:
        import difflib
        close = difflib.get_close_matches(str(scheme), SCHEMES, n=1)
        raise ArgumentError(f"unknown quantization scheme `{scheme}`", code="E0254",
                            hint=(f"did you mean `{close[0]}`? " if close else "") +
                            "schemes: " + ", ".join(SCHEMES))
    if group is not None:
        if scheme not in ("int8-weight", "int4-weight"):
            raise ArgumentError(f"--group applies to int8-weight and int4-weight, not {scheme}",
                                code="E0254")
        if not isinstance(group, int) or isinstance(group, bool) or group < 2 or group % 2:
            raise ArgumentError(f"--group must be an even int of at least 2, got {group!r}",
                                code="E0254", hint="for example --group 64")
