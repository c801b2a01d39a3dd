"""Torch lowering table: one function per IR op, ``fn(rt, attrs, inputs) -> tensor(s)``.

``rt`` is the running module: ``rt.training``, ``rt.dim(d)`` (a symbolic dim evaluated against
this call's input shapes) and ``rt.device``. Every op of ``nndsl.ir.ops.SIGNATURES`` is here
(the op-table test checks it), except the graph's sources ``input`` and ``param``, which the
module binds itself.
"""

from __future__ import annotations

import operator
import warnings
import weakref

import torch
import torch.nn.functional as F

from nndsl.backends.torch.calls import EPILOGUE, PLAIN, function
from nndsl.ir.ops import SIGNATURES

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16,
          "f64": torch.float64, "i64": torch.int64, "i32": torch.int32, "i8": torch.int8,
          "u8": torch.uint8, "i4": torch.uint8, "bool": torch.bool}   # i4: packed, 2 a byte


def _u(fn):
    return lambda rt, a, ins: fn(ins[0])


def _b(fn):
    return lambda rt, a, ins: fn(ins[0], ins[1])


def _div(rt, a, ins):
    """``a / b``; of two integers an integer, rounded toward zero as the IR types it (and as
    ONNX's Div and the NumPy reference compute it), not torch's true division."""
    x, y = ins
    if any(isinstance(v, float) or isinstance(v, torch.Tensor) and v.is_floating_point()
           for v in (x, y)):
        return x / y
    return torch.div(x, y, rounding_mode="trunc")


def _maximum(rt, a, ins):
    x, y = ins
    if not isinstance(y, torch.Tensor):
        return torch.clamp(x, min=y)
    if not isinstance(x, torch.Tensor):
        return torch.clamp(y, min=x)
    return torch.maximum(x, y)


def _minimum(rt, a, ins):
    x, y = ins
    if not isinstance(y, torch.Tensor):
        return torch.clamp(x, max=y)
    if not isinstance(x, torch.Tensor):
        return torch.clamp(y, max=x)
    return torch.minimum(x, y)


def _logical(fn):
    def low(rt, a, ins):
        x, y = (v if isinstance(v, torch.Tensor) else torch.tensor(v) for v in ins)
        return fn(x, y)
    return low


def _full(rt, a, ins):
    shape = [rt.dim(d) for d in a["shape"]]
    return torch.full(shape, a["value"], dtype=DTYPES[a["dtype"]], device=rt.device)


def _arange(rt, a, ins):
    return torch.arange(rt.dim(a["n"]), dtype=DTYPES[a["dtype"]], device=rt.device)


# The epilogue activations (ops_with("epilogue")) a linear or conv runs on its own result (its
# ``act`` attribute); a test keeps this table equal to the trait. ReLU runs in place:
# the layer's output is a fresh tensor and their backward needs only their own result.
ACTIVATIONS = {**{op: function(name) for op, name in EPILOGUE.items()},
               "relu": lambda y: torch.relu_(y)}    # in place: the layer's own fresh result


def _act(low):
    def fused(rt, a, ins):
        y = low(rt, a, ins)
        act = a.get("act")
        return y if act is None else ACTIVATIONS[act](y)
    return fused


def _conv(fn):
    def low(rt, a, ins):
        x, w, b = ins
        pad = a["padding"]
        return fn(x, w, b, a["stride"], pad if pad == "same" else list(pad), a["dilation"],
                  a["groups"])
    return _act(low)


@_act
def _conv_t(rt, a, ins):
    x, w, b = ins
    return F.conv_transpose2d(x, w, b, a["stride"], a["padding"], a["output_padding"],
                              a["groups"], a["dilation"])


def _attention(rt, a, ins):
    q, k, v, mask = ins
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                          dropout_p=a["dropout"] if rt.training else 0.0,
                                          is_causal=a["causal"], scale=a["scale"])


def unpack_int4(p: torch.Tensor) -> torch.Tensor:
    """Signed 4-bit values packed two a byte (the even element in the low nibble) as int8."""
    lo = (p & 0xF).to(torch.int8)
    hi = (p >> 4).to(torch.int8)
    q = torch.stack([lo, hi], dim=-1).reshape(*p.shape[:-1], -1)
    return torch.where(q > 7, q - 16, q)


def _dequantize(rt, a, ins):
    q, s = ins
    if q.dtype == torch.uint8:
        q = unpack_int4(q)
    if a["group"] is None:
        return q.to(s.dtype) * s.reshape(-1, *([1] * (q.dim() - 1)))
    rows, cols = q.shape
    w = q.to(s.dtype).reshape(rows, cols // a["group"], a["group"]) * s.unsqueeze(-1)
    return w.reshape(rows, cols)


def fake_quantize(w: torch.Tensor, bits: int, group: int | None) -> torch.Tensor:
    """``w`` rounded to ``bits``-bit multiples of its per-row (or per-group) scale, with the
    straight-through gradient: the forward sees the quantized weight, the backward the
    identity. The scale is the one the int8/int4 weight quantization uses."""
    qmax = 2 ** (bits - 1) - 1
    rows = w.reshape(w.shape[0], -1, w[0].numel() if group is None else group)
    amax = rows.detach().abs().amax(dim=-1, keepdim=True)
    s = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    q = torch.clamp(torch.round(rows / s), -qmax, qmax) * s
    return (rows + (q - rows).detach()).reshape(w.shape)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: in training each sample (dim 0) is zeroed with probability ``p`` and
    the others scaled by ``1 / (1 - p)``, so the expectation is ``x``; the identity at eval."""
    if not training or p == 0.0:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
    return x * keep.bernoulli_(1.0 - p) / (1.0 - p)


def _clamp(rt, a, ins):
    x = ins[0]
    lo, hi = a["min"], a["max"]
    if not x.is_floating_point():          # integer bounds keep an integer tensor's dtype
        lo, hi = (None if v is None else int(v) for v in (lo, hi))
    return torch.clamp(x, lo, hi)


def _upsample(rt, a, ins):
    x = ins[0]
    scale = a["scale"]
    scale = tuple(scale) if isinstance(scale, (tuple, list)) else (scale,) * (x.dim() - 2)
    linear = a["mode"] != "nearest"
    return F.interpolate(x, scale_factor=tuple(float(f) for f in scale), mode=a["mode"],
                         align_corners=a["align_corners"] if linear else None)


def _all_dims(x: torch.Tensor, dims):
    return tuple(range(x.dim())) if dims is None else tuple(dims)


# Packed int8 weights for the quantized engine, made once per weight (and again if its value,
# its scales or the bias change): packing costs more than the product itself. Keyed by the
# weight's id while the weight lives (tensors compare elementwise, so they cannot be keys).
_PACKED: dict = {}


def _cached(w: torch.Tensor, key):
    hit = _PACKED.get(id(w))
    return hit[2] if hit is not None and hit[0]() is w and hit[1] == key else None


def _cache(w: torch.Tensor, key, packed) -> None:
    if id(w) not in _PACKED:
        weakref.finalize(w, _PACKED.pop, id(w), None)
    _PACKED[id(w)] = (weakref.ref(w), key, packed)


def packed_int8(w: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
    """``w`` (int8 ``[out, in]``) with its per-row scales, prepacked for ``linear_dynamic``."""
    key = (w._version, scale._version, id(bias), None if bias is None else bias._version)
    hit = _cached(w, key)
    if hit is not None:
        return hit
    with warnings.catch_warnings():   # torch marks its quantized tensors as deprecated
        warnings.simplefilter("ignore", UserWarning)
        qw = torch._make_per_channel_quantized_tensor(
            w.detach(), scale.detach().double(), torch.zeros(w.shape[0], dtype=torch.long), 0)
    packed = torch.ops.quantized.linear_prepack(
        qw, None if bias is None else bias.detach().float())
    _cache(w, key, packed)
    return packed


def linear_int8(x, w, scale, bias):
    """Dynamic int8 linear: ``x`` quantized per call (per tensor, 8 bits), ``w`` per row."""
    if x.device.type != "cpu":
        from nndsl.errors import InputError
        raise InputError("int8 kernels run on the CPU only; move the model with .to('cpu') "
                         "or compile without --quantize int8-dynamic", code="E1109")
    y = torch.ops.quantized.linear_dynamic(x.float(), packed_int8(w, scale, bias), True)
    return y.to(x.dtype)


# ---- static int8: u8 activations are torch's quint8 tensors (scale and zero point attached) ----

def quantize_act(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.quantize_per_tensor(x.float(), scale, zero_point, torch.quint8)


def _per_channel(w: torch.Tensor, scale: torch.Tensor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch._make_per_channel_quantized_tensor(
            w.detach(), scale.detach().double(), torch.zeros(w.shape[0], dtype=torch.long), 0)


def _float_bias(bias, x_scale: float, scale: torch.Tensor):
    """The int32 bias as the float the quantized engine takes (it requantizes it exactly)."""
    return None if bias is None else bias.double().mul(scale.double() * x_scale).float()


def _packed(kind: str, w, scale, bias, x_scale, conv=None):
    key = (kind, w._version, scale._version, id(bias), None if bias is None else bias._version,
           x_scale, conv)
    hit = _cached(w, key)
    if hit is not None:
        return hit
    qw, b = _per_channel(w, scale), _float_bias(bias, x_scale, scale)
    if kind == "conv":
        stride, padding, dilation, groups = conv
        packed = torch.ops.quantized.conv2d_prepack(qw, b, stride, padding, dilation, groups)
    else:
        packed = torch.ops.quantized.linear_prepack(qw, b)
    _cache(w, key, packed)
    return packed


def _cpu_only(x):
    if x.device.type != "cpu":
        from nndsl.errors import InputError
        raise InputError("int8 kernels run on the CPU only; move the model with .to('cpu') "
                         "or compile without --quantize int8-static", code="E1109")


def _qconv2d(rt, a, ins):
    x, w, s, b = ins
    _cpu_only(x)
    conv = tuple(tuple(_pair(a[k])) for k in ("stride", "padding", "dilation")) + (a["groups"],)
    packed = _packed("conv", w, s, b, a["x_scale"], conv)
    op = torch.ops.quantized.conv2d_relu if a["act"] == "relu" else torch.ops.quantized.conv2d
    return op(x, packed, a["out_scale"], a["out_zp"])


def _qlinear(rt, a, ins):
    x, w, s, b = ins
    _cpu_only(x)
    packed = _packed("linear", w, s, b, a["x_scale"])
    op = torch.ops.quantized.linear_relu if a["act"] == "relu" else torch.ops.quantized.linear
    return op(x, packed, a["out_scale"], a["out_zp"])


def _qclamp(rt, a, ins):
    """The quantized engine clamps a quint8 tensor on its own grid (float bounds, rounded to it)."""
    return torch.clamp(ins[0], a["min"], a["max"])


def _qadd(rt, a, ins):
    op = torch.ops.quantized.add_relu if a["act"] == "relu" else torch.ops.quantized.add
    return op(ins[0], ins[1], a["out_scale"], a["out_zp"])


def _pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


_CONV2D = _conv(F.conv2d)


def _memory_format(rt, a, ins):
    fmt = torch.channels_last if a["format"] == "channels_last" else torch.contiguous_format
    return ins[0].contiguous(memory_format=fmt)


# ---- oneDNN convolutions for inference (the O2 channels-last mode) ----
# At O2 a 2-d convolution that autograd does not follow runs as oneDNN's fused convolution:
# its weight reordered once into oneDNN's blocked layout (kept per weight, and made again when
# the weight's value changes: its version counter or its storage), its epilogue (the `act`
# activation, a relu6 clamp, a residual add and the relu after it) run as post-ops inside the
# convolution instead of as passes over the output. Anything else (gradients wanted, another
# device or dtype, torch.compile tracing) takes the plain lowering, op by op.

ONEDNN_UNARY = {None: ("none", [], ""), "relu": ("relu", [], ""), "sigmoid": ("sigmoid", [], ""),
                "tanh": ("tanh", [], ""), "silu": ("swish", [], ""), "gelu": ("gelu", [], "none")}
_ONEDNN_WEIGHTS: dict = {}
_ONEDNN_SHAPES = 8          # packed forms kept per weight (one per input shape and conv geometry)
_HAS_ONEDNN = torch.backends.mkldnn.is_available() and \
    hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def onednn_weight(w: torch.Tensor, conv: tuple, shape: tuple):
    """``w`` in oneDNN's layout for a convolution of geometry ``conv`` (padding, stride,
    dilation, groups) on inputs of ``shape``, made once and again when ``w`` changes: its
    version counter (optimizer steps, ``copy_``, ``load_state_dict``) or its storage
    (``.data =``). A change behind both (through ``.data``) is seen after ``.eval()``."""
    ent = _ONEDNN_WEIGHTS.get(id(w))
    stamp = (w._version, w.data_ptr())
    if ent is None or ent[0]() is not w:
        weakref.finalize(w, _ONEDNN_WEIGHTS.pop, id(w), None)
        ent = _ONEDNN_WEIGHTS[id(w)] = (weakref.ref(w), stamp, {})
    elif ent[1] != stamp:
        ent = _ONEDNN_WEIGHTS[id(w)] = (ent[0], stamp, {})
    packed = ent[2].get((conv, shape))
    if packed is None:
        if len(ent[2]) >= _ONEDNN_SHAPES:
            ent[2].clear()
        padding, stride, dilation, groups = conv
        with torch.no_grad():
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                w.detach().contiguous().to_mkldnn(), list(padding), list(stride),
                list(dilation), groups, list(shape))
        ent[2][(conv, shape)] = packed
    return packed


def forget_onednn_weights(tensors) -> None:
    """Drop the packed forms of these weights (the next call packs them again)."""
    for t in tensors:
        ent = _ONEDNN_WEIGHTS.get(id(t))
        if ent is not None and ent[0]() is t:
            ent[2].clear()


def _plain(t) -> bool:
    return type(t) is torch.Tensor or type(t) is torch.nn.Parameter


def _onednn_geometry(a, w):
    """(padding, stride, dilation, groups) as oneDNN takes them, or None (asymmetric `same`)."""
    pad = a["padding"]
    dil = tuple(_pair(a["dilation"]))
    if pad == "same":
        total = [d * (k - 1) for d, k in zip(dil, w.shape[2:])]
        if any(t % 2 for t in total):
            return None
        pad = [t // 2 for t in total]
    return tuple(_pair(pad)), tuple(_pair(a["stride"])), dil, a["groups"]


def onednn_usable(x, w, b, *more) -> bool:
    """Whether this convolution can run in oneDNN's inference form: float32 CPU tensors of
    plain type, nothing autograd needs to follow, not being traced by torch.compile."""
    if torch.compiler.is_compiling():     # traced: the plain ops, which dynamo knows
        return False
    f32 = torch.float32
    if not (_HAS_ONEDNN and type(x) is torch.Tensor and x.is_cpu and x.dtype == f32 and
            _plain(w) and w.is_cpu and w.dtype == f32 and x.numel() > 0 and
            torch._C._get_mkldnn_enabled()):
        return False
    if b is not None and not (_plain(b) and b.is_cpu and b.dtype == f32):
        return False
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or
                                    (b is not None and b.requires_grad) or
                                    any(isinstance(t, torch.Tensor) and t.requires_grad
                                        for t in more)):
        return False
    return True


def _conv2d_onednn(rt, a, ins):
    """conv2d (with its `act`) in oneDNN's inference form where it can run so, else plain.
    The plan gives it 4-d convolutions only."""
    x, w, b = ins
    act = a.get("act")
    if act in ONEDNN_UNARY and onednn_usable(x, w, b):
        conv = _onednn_geometry(a, w)
        if conv is not None:
            attr, scalars, alg = ONEDNN_UNARY[act]
            return torch.ops.mkldnn._convolution_pointwise(
                x, onednn_weight(w, conv, tuple(x.shape)), b, list(conv[0]), list(conv[1]),
                list(conv[2]), conv[3], attr, scalars, alg)
    return _CONV2D(rt, a, ins)


def global_avg_pool_nhwc(rt, a, ins):
    """adaptive_avg_pool2d to 1×1 in the O2 mode: a channels-last input is averaged by
    avg_pool2d over its whole plane (vectorized over the channels; adaptive pooling's
    channels-last reduction is slower); anything else as before."""
    x = ins[0]
    if not torch.compiler.is_compiling() and x.dim() == 4 and x.shape[2] * x.shape[3] > 0 \
            and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return F.avg_pool2d(x, (x.shape[2], x.shape[3]))
    return F.adaptive_avg_pool2d(x, a["output_size"])


def conv2d_chain(rt, a, ins):
    """A conv2d and the elementwise ops that only it feeds, as one plan step (the O2 torch
    plan fuses them): ``a["conv"]`` the conv's attributes, ``a["post"]`` the ops after it, each
    ``(lowering, attrs, operand count, position of the chained value)``, their other operands
    following the conv's three in ``ins``; ``a["onednn"]`` the fused form,
    ``("unary", attr, scalars)`` or ``("add", unary attr)``, or None."""
    x, w, b = ins[:3]
    rest = ins[3:]
    fused = a["onednn"]
    if fused is not None and onednn_usable(x, w, b, *rest):
        conv = _onednn_geometry(a["conv"], w)
        if conv is not None:
            packed = onednn_weight(w, conv, tuple(x.shape))
            pad, stride, dil, groups = (list(conv[0]), list(conv[1]), list(conv[2]), conv[3])
            if fused[0] == "unary":
                return torch.ops.mkldnn._convolution_pointwise(
                    x, packed, b, pad, stride, dil, groups, fused[1], fused[2], "")
            other = rest[0]     # oneDNN reads either dense layout (and writes NHWC)
            if _plain(other) and other.dtype == torch.float32 and other.is_cpu \
                    and (other.is_contiguous() or
                         other.is_contiguous(memory_format=torch.channels_last)):
                return torch.ops.mkldnn._convolution_pointwise.binary(
                    x, other, packed, b, pad, stride, dil, groups, "add", None, fused[1], [],
                    None)
    y = _conv2d_onednn(rt, a["conv"], [x, w, b])
    k = 0
    for low, attrs, n, pos in a["post"]:
        operands = list(rest[k:k + n - 1])
        k += n - 1
        operands.insert(pos, y)
        y = low(rt, attrs, operands)
    return y


def _max_pool(fn):
    return lambda rt, a, ins: fn(ins[0], a["kernel"], a["stride"], a["padding"], a["dilation"],
                                 ceil_mode=a["ceil_mode"])


def _avg_pool(fn):
    return lambda rt, a, ins: fn(ins[0], a["kernel"], a["stride"], a["padding"],
                                 ceil_mode=a["ceil_mode"],
                                 count_include_pad=a["count_include_pad"])


def _batch_norm(rt, a, ins):
    x, w, b, rm, rv, nbt = ins
    if rt.training and rt.recompute:   # checkpointed block re-run: same op, stats untouched
        return F.batch_norm(x, rm.clone(), rv.clone(), w, b, True, a["momentum"], a["eps"])
    if rt.training:
        nbt.add_(1)
    return F.batch_norm(x, rm, rv, w, b, rt.training, a["momentum"], a["eps"])


def _rnn(fn, has_c: bool):
    def low(rt, a, ins):
        x = ins[0]
        h0 = ins[1]
        c0 = ins[2] if has_c else None
        weights = list(ins[3 if has_c else 2:])
        dirs = 2 if a["bidirectional"] else 1
        n = x.shape[0] if a["batch_first"] else x.shape[1]
        if h0 is None:
            h0 = torch.zeros(a["layers"] * dirs, n, a["hidden"], dtype=x.dtype, device=x.device)
        if has_c:
            if c0 is None:
                c0 = torch.zeros_like(h0)
            out, h, c = fn(x, (h0, c0), weights, a["bias"], a["layers"], a["dropout"],
                           rt.training, a["bidirectional"], a["batch_first"])
            return out, h, c
        out, h = fn(x, h0, weights, a["bias"], a["layers"], a["dropout"], rt.training,
                    a["bidirectional"], a["batch_first"])
        return out, h
    return low


def _rnn_plain(rt, a, ins):
    fn = torch.rnn_tanh if a["nonlinearity"] == "tanh" else torch.rnn_relu
    return _rnn(fn, False)(rt, a, ins)


def _slice(rt, a, ins):
    x = ins[0]
    idx = [slice(None)] * x.dim()
    for ax, st, en, sp in zip(a["axes"], a["starts"], a["ends"], a["steps"]):
        idx[ax] = slice(None if st is None else rt.dim(st), None if en is None else rt.dim(en), sp)
    return x[tuple(idx)]


def _reduce(fn):
    def low(rt, a, ins):
        x = ins[0]
        dims = a["dims"]
        if dims is None:
            dims = tuple(range(x.dim()))
        return fn(x, dim=tuple(dims), keepdim=a["keepdim"])
    return low


def _one_or_tuple(parts: tuple):
    """Multi-output ops give a tuple, single-output ones a tensor (as the plan expects)."""
    return parts if len(parts) > 1 else parts[0]


def _prod(x, dim, keepdim):
    for d in sorted((d % x.dim() for d in dim), reverse=True):
        x = torch.prod(x, dim=d, keepdim=keepdim)
    return x


def _segment_index(ids, data):
    """Segment ids ``[E]`` broadcast to the data ``[E, ...]``: scatter_reduce wants an index of
    its source's shape."""
    return ids.view((-1,) + (1,) * (data.dim() - 1)).expand_as(data)


def _segment_zeros(rt, a, data):
    return data.new_zeros((rt.dim(a["num_segments"]),) + tuple(data.shape[1:]))


def _segment_sum(rt, a, ins):
    data, ids = ins
    return _segment_zeros(rt, a, data).index_add(0, ids, data)


def _segment_mean(rt, a, ins):
    data, ids = ins
    counts = data.new_zeros(rt.dim(a["num_segments"])).index_add(0, ids, data.new_ones(ids.shape))
    counts = counts.clamp(min=1).view((-1,) + (1,) * (data.dim() - 1))
    return _segment_zeros(rt, a, data).index_add(0, ids, data) / counts


def _segment_max(rt, a, ins):
    data, ids = ins   # include_self=False: an empty segment keeps its initial 0
    return _segment_zeros(rt, a, data).scatter_reduce(0, _segment_index(ids, data), data, "amax",
                                                      include_self=False)


def _segment_softmax(rt, a, ins):
    """exp(s - max) / Σ exp(s - max) per segment; the max (a constant shift) is not
    differentiated through."""
    s, ids = ins
    m = _segment_zeros(rt, a, s).scatter_reduce(0, _segment_index(ids, s), s.detach(), "amax",
                                                include_self=False)
    e = torch.exp(s - m.index_select(0, ids))
    return e / _segment_zeros(rt, a, e).index_add(0, ids, e).index_select(0, ids)


class BodyPlan:
    """A scan body made ready to run: one step per op node, as the module's own plan, with each
    intermediate value dropped after its last reader."""

    def __init__(self, graph):
        multi = {n.name for n in graph if len(n.types) > 1}
        self.inputs = list(graph.inputs)

        def read(v):
            return None if v is None else (v.node, v.index if v.node in multi else None)
        steps = []
        for node in graph:
            if node.op == "input":
                continue
            steps.append((node.name, TORCH_LOWERINGS[node.op],
                          {**SIGNATURES[node.op].attrs, **node.attr},
                          tuple(read(v) for v in node.inputs)))
        self.outputs = [read(v) for _, v in graph.outputs]
        keep = {o[0] for o in self.outputs}
        last: dict = {}
        for i, (_, _, _, reads) in enumerate(steps):
            for r in reads:
                if r is not None:
                    last[r[0]] = i
        free: list = [[] for _ in steps]
        for name, i in last.items():
            if name not in keep:
                free[i].append(name)
        self.steps = [(name, low, attrs, reads, tuple(free[i]))
                      for i, (name, low, attrs, reads) in enumerate(steps)]

    def __call__(self, rt, args: list) -> list:
        vals = dict(zip(self.inputs, args))

        def get(r):
            return vals[r[0]] if r[1] is None else vals[r[0]][r[1]]
        for name, low, attrs, reads, free in self.steps:
            vals[name] = low(rt, attrs, [None if r is None else get(r) for r in reads])
            for dead in free:
                del vals[dead]
        return [get(r) for r in self.outputs]


def body_plan(body) -> BodyPlan:
    """The plan of a scan body, built once per body."""
    plan = body.cache.get("torch")
    if plan is None:
        plan = body.cache["torch"] = BodyPlan(body.graph)
    return plan


def _scan(rt, a, ins):
    """A Python loop over the steps: slice the sequences, run the body, carry the state."""
    body = a["body"]
    run = body_plan(body)
    n_over, n_state, dim = a["n_over"], a["n_state"], a["dim"]
    over = ins[:n_over]
    state = list(ins[n_over:n_over + n_state])
    rest = list(ins[n_over + n_state:])
    length = over[0].shape[dim % over[0].dim()] if over else rt.dim(a["steps"])
    dims = [dim % x.dim() for x in over]
    outs = [[] for _ in range(len(body.graph.outputs) - n_state)]
    for t in range(length):
        res = run(rt, [x.select(d, t) for x, d in zip(over, dims)] + state + rest)
        state = res[:n_state]
        for acc, y in zip(outs, res[n_state:]):
            acc.append(y)
    stacked = []
    for (_, v), acc in zip(body.graph.outputs[n_state:], outs):
        t = body.graph.type_of(v)
        d = dim % (t.rank + 1)
        if acc:
            stacked.append(torch.stack(acc, d))
        else:      # no steps: an empty sequence of outputs
            shape = [rt.dim(s) for s in t.shape]
            stacked.append(torch.empty(shape[:d] + [0] + shape[d:], dtype=DTYPES[t.dtype],
                                       device=rt.device))
    return _one_or_tuple(tuple(state) + tuple(stacked))


TORCH_LOWERINGS = {
    "scalar": lambda rt, a, ins: a["value"],
    "full": _full,
    "arange": _arange,
    **{op: _u(function(name)) for op, name in PLAIN.items()},
    "neg": _u(torch.neg),
    "leaky_relu": lambda rt, a, ins: F.leaky_relu(ins[0], a["slope"]),
    "gelu": lambda rt, a, ins: F.gelu(ins[0], approximate=a["approximate"]),
    "elu": lambda rt, a, ins: F.elu(ins[0], a["alpha"]),
    "softplus": lambda rt, a, ins: F.softplus(ins[0], a["beta"], a["threshold"]),
    "dropout": lambda rt, a, ins: F.dropout(ins[0], a["p"], rt.training),
    "drop_path": lambda rt, a, ins: drop_path(ins[0], a["p"], rt.training),
    "clamp": _clamp,
    "cast": lambda rt, a, ins: ins[0].to(DTYPES[a["dtype"]]),
    "add": _b(operator.add), "sub": _b(operator.sub), "mul": _b(operator.mul),
    "div": _div, "pow": _b(operator.pow), "floor_div": _b(operator.floordiv),
    "mod": _b(operator.mod), "maximum": _maximum, "minimum": _minimum,
    "eq": _b(operator.eq), "ne": _b(operator.ne), "lt": _b(operator.lt), "le": _b(operator.le),
    "gt": _b(operator.gt), "ge": _b(operator.ge),
    "logical_and": _logical(torch.logical_and), "logical_or": _logical(torch.logical_or),
    "where": lambda rt, a, ins: torch.where(*ins),
    "masked_fill": lambda rt, a, ins: ins[0].masked_fill(ins[1], a["value"]),
    "tril": lambda rt, a, ins: torch.tril(ins[0], a["k"]),
    "triu": lambda rt, a, ins: torch.triu(ins[0], a["k"]),
    "matmul": _b(torch.matmul),
    "linear": _act(lambda rt, a, ins: F.linear(*ins)),
    "linear_int8": _act(lambda rt, a, ins: linear_int8(*ins)),
    "dequantize": _dequantize,
    "quantize": lambda rt, a, ins: quantize_act(ins[0], a["scale"], a["zero_point"]),
    "dequantize_act": lambda rt, a, ins: ins[0].dequantize(),
    "qconv2d": _qconv2d, "qlinear": _qlinear, "qadd": _qadd, "qclamp": _qclamp,
    "fake_quantize": lambda rt, a, ins: fake_quantize(ins[0], a["bits"], a["group"]),
    "attention": _attention, "memory_format": _memory_format,
    "conv1d": _conv(F.conv1d), "conv2d": _CONV2D, "conv3d": _conv(F.conv3d),
    "conv_transpose2d": _conv_t,
    "max_pool1d": _max_pool(F.max_pool1d), "max_pool2d": _max_pool(F.max_pool2d),
    "avg_pool1d": _avg_pool(F.avg_pool1d), "avg_pool2d": _avg_pool(F.avg_pool2d),
    "adaptive_avg_pool1d": lambda rt, a, ins: F.adaptive_avg_pool1d(ins[0], a["output_size"]),
    "adaptive_avg_pool2d": lambda rt, a, ins: F.adaptive_avg_pool2d(ins[0], a["output_size"]),
    "batch_norm": _batch_norm,
    "layer_norm": lambda rt, a, ins: F.layer_norm(ins[0], a["normalized_shape"], ins[1], ins[2],
                                                  a["eps"]),
    "group_norm": lambda rt, a, ins: F.group_norm(ins[0], a["groups"], ins[1], ins[2], a["eps"]),
    "embedding": lambda rt, a, ins: F.embedding(ins[0], ins[1], a["padding_idx"]),
    "rms_norm": lambda rt, a, ins: F.rms_norm(ins[0], a["normalized_shape"], ins[1], a["eps"]),
    "one_hot": lambda rt, a, ins: F.one_hot(ins[0].long(), a["n"]).to(DTYPES[a["dtype"]]),
    "einsum": lambda rt, a, ins: torch.einsum(a["equation"], *ins),
    "lstm": _rnn(torch.lstm, True), "gru": _rnn(torch.gru, False), "rnn": _rnn_plain,
    "flatten": lambda rt, a, ins: torch.flatten(ins[0], a["start"], a["end"]),
    "reshape": lambda rt, a, ins: ins[0].reshape([rt.dim(d) for d in a["shape"]]),
    "transpose": lambda rt, a, ins: ins[0].transpose(a["dim0"], a["dim1"]),
    "permute": lambda rt, a, ins: ins[0].permute(a["dims"]),
    "squeeze": lambda rt, a, ins: ins[0].squeeze(a["dims"]) if a["dims"] is not None
    else ins[0].squeeze(),
    "unsqueeze": lambda rt, a, ins: ins[0].unsqueeze(a["dim"]),
    "expand": lambda rt, a, ins: ins[0].expand([rt.dim(d) for d in a["shape"]]),
    "concat": lambda rt, a, ins: torch.cat(ins, a["dim"]),
    "split": lambda rt, a, ins: _one_or_tuple(torch.split(ins[0], [rt.dim(d) for d in a["sizes"]],
                                                         a["dim"])),
    "slice": _slice,
    "stack": lambda rt, a, ins: torch.stack(ins, a["dim"]),
    "flip": lambda rt, a, ins: torch.flip(ins[0], a["dims"]),
    "roll": lambda rt, a, ins: torch.roll(ins[0], a["shifts"], a["dims"]),
    "repeat_interleave": lambda rt, a, ins: torch.repeat_interleave(ins[0], a["repeats"],
                                                                    a["dim"]),
    "pad": lambda rt, a, ins: F.pad(ins[0], a["widths"], a["mode"],
                                    a["value"] if a["mode"] == "constant" else None),
    "upsample": _upsample,
    "pixel_shuffle": lambda rt, a, ins: F.pixel_shuffle(ins[0], a["r"]),
    "sum": _reduce(torch.sum), "mean": _reduce(torch.mean), "max": _reduce(torch.amax),
    "min": _reduce(torch.amin), "prod": _reduce(_prod),
    "softmax": lambda rt, a, ins: F.softmax(ins[0], a["dim"]),
    "log_softmax": lambda rt, a, ins: F.log_softmax(ins[0], a["dim"]),
    "argmax": lambda rt, a, ins: torch.argmax(ins[0], a["dim"], a["keepdim"]),
    "argsort": lambda rt, a, ins: torch.argsort(ins[0], dim=a["dim"], descending=a["descending"],
                                                stable=True),
    "cumsum": lambda rt, a, ins: torch.cumsum(ins[0], a["dim"]),
    "cumprod": lambda rt, a, ins: torch.cumprod(ins[0], a["dim"]),
    "logsumexp": lambda rt, a, ins: torch.logsumexp(ins[0], _all_dims(ins[0], a["dims"]),
                                                    a["keepdim"]),
    "var": lambda rt, a, ins: torch.var(ins[0], _all_dims(ins[0], a["dims"]),
                                        correction=a["correction"], keepdim=a["keepdim"]),
    "std": lambda rt, a, ins: torch.std(ins[0], _all_dims(ins[0], a["dims"]),
                                        correction=a["correction"], keepdim=a["keepdim"]),
    "topk": lambda rt, a, ins: tuple(torch.topk(ins[0], a["k"], a["dim"], a["largest"])),
    "gather": lambda rt, a, ins: torch.gather(ins[0], a["dim"], ins[1]),
    "index_select": lambda rt, a, ins: torch.index_select(ins[0], a["dim"], ins[1]),
    "scatter_add": lambda rt, a, ins: ins[0].scatter_add(a["dim"], ins[1], ins[2]),
    "segment_sum": _segment_sum, "segment_mean": _segment_mean, "segment_max": _segment_max,
    "segment_softmax": _segment_softmax,
    "scan": _scan,
}
