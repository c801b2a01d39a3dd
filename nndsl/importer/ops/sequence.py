"""Recurrent layers (LSTM, GRU, RNN) and Attention."""

from __future__ import annotations

import math

import numpy as np

from nndsl.importer.values import Sym, Unsupported
from nndsl.importer.ops import OPS, op
from nndsl.importer.ops.common import _x
from nndsl.importer.ops.layers import _layer_name
from nndsl.importer.ops.shapes import permute
from nndsl.importer.program import dims_text, number
from nndsl.ir.types import SymDim


# ONNX packs the gates (i, o, f, c) for LSTM and (z, r, h) for GRU; torch, whose layout the
# spec's lstm and gru take, (i, f, g, o) and (r, z, n): torch's block k is ONNX's TORCH_GATES[k]
TORCH_GATES = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}
RECURRENT = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn"}


def _gates(a: np.ndarray, op: str) -> np.ndarray:
    blocks = np.split(a, len(TORCH_GATES[op]), axis=0)
    return np.ascontiguousarray(np.concatenate([blocks[k] for k in TORCH_GATES[op]], axis=0))


def _recurrent(op: str):
    """One ONNX LSTM/GRU/RNN (time-major ``X [T, N, F]``) as the spec's layer (batch-first):
    ``Y [T, dirs, N, H]`` is the layer's ``[N, T, dirs·H]`` output rearranged, ``Y_h`` (and
    ``Y_c``) its final state ``[dirs, N, H]``."""
    def handler(cx, node, ins, a):
        x = _x(cx, ins)
        if a.get("layout", 0):
            raise Unsupported(f"{op} with layout=1")
        hidden = int(a["hidden_size"])
        direction = a.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        if direction not in ("forward", "bidirectional"):
            raise Unsupported(f"{op} in {direction} direction")
        if "clip" in a or a.get("input_forget", 0):
            raise Unsupported(f"{op} with clip or input_forget")
        if op == "GRU" and not a.get("linear_before_reset", 0):
            raise Unsupported("GRU with linear_before_reset=0 (torch's GRU resets after)")
        acts = [s.decode() if isinstance(s, bytes) else s for s in a.get("activations", [])]
        default = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"],
                   "RNN": ["Tanh"]}[op]
        dirs = 2 if direction == "bidirectional" else 1
        nonlinearity = "tanh"
        if op == "RNN" and acts and acts[0] == "Relu" and len(set(acts)) == 1:
            nonlinearity, acts = "relu", []
        if acts and acts != default * dirs:
            raise Unsupported(f"{op} with activations {acts}")
        w, r = cx.const(ins[1]), cx.const(ins[2])
        b = cx.const(ins[3]) if len(ins) > 3 and ins[3] is not None else None
        if w is None or r is None or len(ins) > 3 and ins[3] is not None and b is None:
            raise Unsupported(f"{op} whose weights are computed at run time")
        if len(ins) > 7 and ins[7] is not None and (cx.const(ins[7]) is None or
                                                     np.any(cx.const(ins[7]))):
            raise Unsupported("LSTM with peepholes")
        if len(ins) > 4 and ins[4] is not None:
            lens = cx.const(ins[4])
            if lens is None or not np.all(lens == x.shape[0]):
                raise Unsupported(f"{op} with sequence lengths")
        states = []
        for i in (5, 6) if op == "LSTM" else (5,):
            s = ins[i] if len(ins) > i else None
            c = cx.const(s) if s is not None else None
            states.append(None if s is None or c is not None and not np.any(c) else s)
        if any(s is not None and not isinstance(s, Sym) for s in states):
            raise Unsupported(f"{op} with a constant non-zero initial state")
        name = _layer_name(cx, node)
        for d in range(dirs):
            sfx = "_l0" + ("_reverse" if d else "")
            cx.prog.weights[f"{name}.weight_ih{sfx}"] = _gates(w[d], op).astype(np.float32)
            cx.prog.weights[f"{name}.weight_hh{sfx}"] = _gates(r[d], op).astype(np.float32)
            if b is not None:
                wb, rb = np.split(b[d], 2)
                cx.prog.weights[f"{name}.bias_ih{sfx}"] = _gates(wb, op).astype(np.float32)
                cx.prog.weights[f"{name}.bias_hh{sfx}"] = _gates(rb, op).astype(np.float32)
        t, n = x.shape[0], x.shape[1]
        xb = permute(cx, x, [1, 0, 2], node.input[0])
        args = [str(hidden)]
        if dirs == 2:
            args.append("bidirectional=true")
        if b is None:
            args.append("bias=false")
        if op == "RNN" and nonlinearity != "tanh":
            args.append(f"nonlinearity=\"{nonlinearity}\"")
        reads = []
        for key, s in zip(("h0", "c0"), states):
            if s is not None:
                args.append(f"{key}={s.var}")
                reads.append(s)
        n_state = 2 if op == "LSTM" else 1
        want_state = any(o and cx.uses[o] for o in node.output[1:])
        call = f"{RECURRENT[op]}({', '.join(args)}{', state=true' if want_state else ''})" \
               f" as {name}"
        seq = (n, t, dirs * hidden)
        state_shape = (dirs, n, hidden)
        if want_state:
            outs = cx.emit(call, [x.dtype] * (1 + n_state), [seq] + [state_shape] * n_state,
                           head=xb, reads=reads, targets=1 + n_state)
            y, rest = outs[0], outs[1:]
        else:
            y, rest = cx.emit(call, x.dtype, seq, head=xb, reads=reads), [None] * n_state
        out = [None] * (1 + n_state)
        if node.output[0] and _sequence_read(cx, node.output[0], y, dirs, hidden):
            pass
        elif node.output[0] and cx.uses[node.output[0]]:
            y4 = cx.emit(f"reshape({dims_text([n, t, dirs, hidden])})", x.dtype,
                         (n, t, dirs, hidden), head=y)
            out[0] = cx.emit("permute([1, 2, 0, 3])", x.dtype, (t, dirs, n, hidden), head=y4)
        return out[:1] + list(rest)
    return handler


def _sequence_read(cx, name: str, y: Sym, dirs: int, hidden: int) -> bool:
    """Where ``Y [T, dirs, N, H]`` is only turned back into the sequence ``[T, N, dirs·H]``
    (torch's export: ``Squeeze(1)`` of one direction, ``Transpose(0, 2, 1, 3)`` and
    ``Reshape`` of two), that sequence is the layer's output with time first: the nodes
    between are done here, and a ``Transpose`` back to batch-first cancels it."""
    readers = cx.readers.get(name, [])
    if len(readers) != 1 or cx.uses[name] != 1:
        return False
    r = readers[0]
    from nndsl.importer.values import _attrs
    if dirs == 1 and r.op_type == "Squeeze":
        axes = _attrs(r).get("axes")
        if axes is None and len(r.input) > 1 and r.input[1]:
            c = cx.values.get(r.input[1])
            axes = [int(v) for v in np.asarray(c).reshape(-1)] if isinstance(c, np.ndarray) \
                else None
        if axes not in ([1], [-3]):
            return False
        chain, last = [r], r
    elif r.op_type == "Transpose" and list(_attrs(r).get("perm", [])) == [0, 2, 1, 3]:
        nxt = cx.readers.get(r.output[0], [])
        if len(nxt) != 1 or nxt[0].op_type != "Reshape" or cx.uses[r.output[0]] != 1:
            return False
        t = cx.types.get(nxt[0].output[0])     # its target may be computed after the layer
        dims = list(t.tensor_type.shape.dim) if t is not None and t.HasField("tensor_type") \
            else []
        if len(dims) != 3 or dims[2].dim_value != dirs * hidden:
            return False
        chain, last = [r, nxt[0]], nxt[0]
    else:
        return False
    saved = cx.node
    cx.node = last
    cx.values[last.output[0]] = permute(cx, y, [1, 0, 2])
    cx.node = saved
    cx.done.update(id(n) for n in chain)
    return True


for _op in RECURRENT:
    OPS[_op] = _recurrent(_op)


# ---- attention ----

@op("Attention")
def attention(cx, node, ins, a):
    """ONNX's Attention (opset 23) written out: ``softmax(softcap(Q Kᵀ · scale) + mask) V``,
    with a key/value cache in front of the keys and values (``present_*`` are those), the
    key/value heads repeated for grouped queries, a causal mask aligned to the end of the
    cache, and 3-d inputs split into heads and joined back. External caches
    (``nonpad_kv_seqlen``) and sliding windows are refused."""
    q, k, v = (_x(cx, ins, i) for i in range(3))
    if len(ins) > 6 and ins[6] is not None:
        raise Unsupported("Attention with an external key/value cache (nonpad_kv_seqlen)")
    if a.get("left_window_size", -1) != -1 or a.get("right_window_size", -1) != -1:
        raise Unsupported("Attention with a sliding window")
    three = q.rank == 3
    if three:
        qh, kvh = a.get("q_num_heads"), a.get("kv_num_heads")
        if not qh or not kvh:
            raise Unsupported("3-d Attention without q_num_heads and kv_num_heads")
        q, k, v = (_heads(cx, t, h) for t, h in ((q, qh), (k, kvh), (v, kvh)))
    elif q.rank != 4:
        raise Unsupported(f"Attention of rank {q.rank}")
    past = [ins[i] if len(ins) > i else None for i in (4, 5)]
    if (past[0] is None) != (past[1] is None):
        raise Unsupported("Attention with a key cache and no value cache")
    cached = 0
    if past[0] is not None:
        pk, pv = cx.tensor(past[0]), cx.tensor(past[1])
        cached = pk.shape[2]
        k = _cat(cx, pk, k, "present_key")
        v = _cat(cx, pv, v, "present_value")
    present = [k, v]
    qh, kvh = q.shape[1], k.shape[1]
    hd, s_len, l_len = q.shape[3], q.shape[2], k.shape[2]
    if not all(isinstance(d, int) for d in (qh, kvh, hd)) or qh % kvh:
        raise Unsupported("Attention with heads that do not group")
    if qh != kvh:
        k = cx.emit(f"repeat_interleave({qh // kvh}, dim=1)", k.dtype,
                    (k.shape[0], qh) + tuple(k.shape[2:]), head=k)
        v = cx.emit(f"repeat_interleave({qh // kvh}, dim=1)", v.dtype,
                    (v.shape[0], qh) + tuple(v.shape[2:]), head=v)
    scale = a.get("scale", 1.0 / math.sqrt(hd))
    shape = (q.shape[0], qh, s_len, l_len)
    kt = cx.emit("transpose", k.dtype, k.shape[:2] + (k.shape[3], l_len), head=k, hint="kt")
    s = cx.emit(f"{q.var} @ {kt.var} * {number(scale)}", q.dtype, shape, reads=[q, kt],
                hint="scores")
    softcap = float(a.get("softcap", 0.0))
    if softcap > 0:
        s = cx.emit(f"{number(softcap)} * tanh({s.var} / {number(softcap)})", q.dtype, shape,
                    reads=[s], hint="scores")
    qk = {0: s, 1: s}           # the QK output: scaled (and soft-capped, as onnx computes it)
    mask = ins[3] if len(ins) > 3 else None
    causal = bool(a.get("is_causal", 0))
    if q.dtype != "f32" and (mask is not None or causal):
        raise Unsupported(f"a masked {q.dtype} Attention (its -inf fill is an f32 literal)")
    if mask is not None:
        m = cx.tensor(mask)
        short = l_len - m.shape[-1]
        if short and (m.dtype == "bool" or not isinstance(short, int) or short < 0):
            raise Unsupported("an Attention mask of another length than the keys")
        if short:
            m = cx.emit(f"pad([0, {short}], value=-inf)", m.dtype,
                        tuple(m.shape[:-1]) + (l_len,), head=m)
        if m.dtype == "bool":
            s = cx.emit(f"where({m.var}, {s.var}, -inf)", q.dtype, shape, reads=[m, s],
                        hint="scores")
        else:
            s = cx.emit(f"{s.var} + {m.var}", q.dtype, shape, reads=[s, m], hint="scores")
    if causal:
        if not isinstance(s_len, int) or not isinstance(l_len, int) or \
                not isinstance(cached, int):
            raise Unsupported("a causal Attention over symbolic lengths")
        k_arg = f", {cached}" if cached else ""
        s = cx.emit(f"where(tril(ones([{s_len}, {l_len}]){k_arg}) > 0.5, {s.var}, -inf)",
                    q.dtype, shape, reads=[s], hint="scores")
    qk[2] = s                   # ... with the mask added
    p = cx.emit("softmax", q.dtype, shape, head=s, hint="probs")
    if mask is not None:        # a row the mask hides entirely attends to nothing: 0, not NaN
        top = cx.emit("max(dim=-1, keepdim=true)", q.dtype, shape[:3] + (1,), head=s,
                      hint="top")
        p = cx.emit(f"where({top.var} > -inf, {p.var}, 0.0)", q.dtype, shape,
                    reads=[top, p], hint="probs")
    qk[3] = p
    y = cx.emit(f"{p.var} @ {v.var}", q.dtype, shape[:3] + (v.shape[3],), reads=[p, v])
    if three:
        y = permute(cx, y, [0, 2, 1, 3])
        y = cx.emit(f"reshape({dims_text([y.shape[0], y.shape[1], qh * v.shape[3]])})",
                    y.dtype, (y.shape[0], y.shape[1], qh * v.shape[3]), head=y)
    mode = int(a.get("qk_matmul_output_mode", 0))
    if len(node.output) > 3 and node.output[3] and cx.uses[node.output[3]] and mode not in qk:
        raise Unsupported(f"Attention's qk_matmul_output_mode {mode}")
    return [y] + present + [qk.get(mode)]


def _cat(cx, cache: Sym, new: Sym, hint: str) -> Sym:
    """The cache and the new keys (or values) along the sequence."""
    total = cache.shape[2] + new.shape[2]
    if isinstance(total, SymDim):
        total = total.simplify()
    shape = tuple(new.shape[:2]) + (total,) + tuple(new.shape[3:])
    return cx.emit(f"concat([{cache.var}, {new.var}], dim=2)", new.dtype, shape,
                   reads=[cache, new], hint=hint)


def _heads(cx, t: Sym, heads: int) -> Sym:
    """``[B, S, heads · d]`` as ``[B, heads, S, d]``."""
    b, s, width = t.shape
    if not isinstance(width, int) or width % heads:
        raise Unsupported("an Attention input whose width does not split into its heads")
    split = (b, s, heads, width // heads)
    y = cx.emit(f"reshape({dims_text(split)})", t.dtype, split, head=t)
    return permute(cx, y, [0, 2, 1, 3])


def sdpa(cx, node, ins, a):
    """``nndsl.Attention(q, Kᵀ, V, mask, a, b, c)``, what
    :func:`nndsl.importer.patterns.attention` makes of an attention written out in
    MatMul/Softmax (``softmax((q·a) @ (Kᵀ·b) · c + mask) V``, c a divisor with ``divide``):
    ``softmax(q @ k.T · scale + mask) @ v``, the three factors one number where they are
    known, the keys untransposed (the permutation before them absorbs it), a filled mask as
    ``masked_fill``: the form nndsl's fusion pass reads as its ``attention`` op (O2)."""
    q, kt, v = (_x(cx, ins, i) for i in range(3))
    if kt.shape is None or q.shape is None or v.shape is None or kt.rank < 2:
        raise Unsupported("an attention of unknown shapes")
    scale = 1.0
    for i in (4, 5, 6):
        f = ins[i] if len(ins) > i else None
        if f is None:
            continue
        c = cx.const(f)
        if c is None or np.asarray(c).size != 1:
            raise Unsupported("an attention scaled by a value computed at run time")
        c = float(np.asarray(c).reshape(-1)[0])
        if i == 6 and a.get("divide", 0):
            if c == 0:
                raise Unsupported("an attention whose scores are divided by 0")
            c = 1.0 / c
        scale *= c
    r = kt.rank
    swap = list(range(r - 2)) + [r - 1, r - 2]
    made = next((st for st in reversed(cx.prog.stmts) if st.targets == [kt.var]), None)
    if made is not None and made.kind == "permute":
        src, perm = made.info["src"], made.info["perm"]
        k = permute(cx, src, [perm[p] for p in swap])
    else:
        k = permute(cx, kt, swap)
    shape = cx.out_shape()
    scores_shape = tuple(q.shape[:-1]) + (k.shape[-2],)
    scaled = "" if scale == 1.0 else f" * {number(np.float32(scale))}"
    s = cx.emit(f"{q.var} @ {k.var}.T{scaled}", q.dtype, scores_shape, reads=[q, k],
                hint="scores")
    kind = a.get("mask", "none")
    if isinstance(kind, bytes):
        kind = kind.decode()
    mask = ins[3] if len(ins) > 3 else None
    if kind == "add":
        m = cx.tensor(mask)
        s = cx.emit(f"{s.var} + {m.var}", q.dtype, scores_shape, reads=[s, m], hint="scores")
    elif kind in ("fill_true", "fill_false"):
        m = cx.tensor(mask)
        if m.dtype != "bool":
            raise Unsupported("a Where mask that is not boolean")
        cond = m.var if kind == "fill_true" else f"not {m.var}"
        s = cx.emit(f"masked_fill({cond}, -inf)", q.dtype, scores_shape, head=s, reads=[m],
                    hint="scores")
    p = cx.emit("softmax", q.dtype, scores_shape, head=s, hint="att")
    return [cx.emit(f"{p.var} @ {v.var}", q.dtype, shape or tuple(scores_shape[:-1]) +
                    (v.shape[-1],), reads=[p, v])]
