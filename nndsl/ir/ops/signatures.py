"""Op records: the operands each IR op reads, its attributes with their defaults, its kind and
its traits.

Operand names ending in ``?`` are optional (absent operands are ``None`` on the node); a name
starting with ``*`` takes any number of values. This table is the authority on what an op *is*;
the shape, FLOP and lowering tables are keyed by the same names and a test keeps them in step.

Every list of ops that a pass, a backend or the drawing needs ("the activations a layer can run
as its epilogue", "the ops that only move elements") is derived from the records with
:func:`ops_with` and :func:`ops_of_kind`, never written out again; a backend's own table for a
trait (how torch or ONNX runs each epilogue activation) is checked against it by a test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable


@dataclass(frozen=True)
class OpSignature:
    operands: tuple
    attrs: dict = field(default_factory=dict)
    doc: str = ""
    kind: str = "other"                 # one of KINDS: what the op is, for people and pictures
    traits: frozenset = frozenset()     # of TRAITS: what passes and backends may rely on
    scalar: Callable | None = None      # the op on Python numbers (constant folding, and
                                        # elaboration of a function applied to a number)
    reference: Callable | None = None   # the op in NumPy (nndsl.ir.ops.reference): what tests
                                        # compare every backend with
    exact: bool = False                 # the reference is the backends' arithmetic bit for bit
                                        # (constant folding may replay it)


def _s(operands: str, doc: str = "", **attrs) -> OpSignature:
    return OpSignature(tuple(operands.split()) if operands else (), attrs, doc)


UNARY = {
    "relu": "max(x, 0)", "sigmoid": "1 / (1 + e^-x)", "tanh": "tanh(x)", "silu": "x * sigmoid(x)",
    "selu": "scale * elu(x, alpha) (fixed constants)", "exp": "e^x", "log": "ln x",
    "sqrt": "√x", "rsqrt": "1/√x", "abs": "|x|", "neg": "-x", "erf": "erf(x)", "sin": "sin x",
    "cos": "cos x", "logical_not": "not x",
    "hardswish": "x * relu6(x + 3) / 6", "hardsigmoid": "relu6(x + 3) / 6", "mish": "x * tanh(softplus(x))",
}
BINARY = {
    "add": "a + b", "sub": "a - b", "mul": "a * b", "div": "a / b", "pow": "a ^ b",
    "maximum": "max(a, b)", "minimum": "min(a, b)", "floor_div": "floor(a / b)", "mod": "a mod b",
}
COMPARE = {"eq": "a == b", "ne": "a != b", "lt": "a < b", "le": "a <= b", "gt": "a > b",
           "ge": "a >= b", "logical_and": "a and b", "logical_or": "a or b"}
REDUCE = {"sum": "Σ", "mean": "mean", "max": "max", "min": "min", "prod": "Π"}
SEGMENT = {"segment_sum": "Σ", "segment_mean": "mean", "segment_max": "max"}

SIGNATURES: dict[str, OpSignature] = {
    # sources
    "input": _s("", "a graph input", name=None, dtype=None, shape=None),
    "param": _s("", "a trainable parameter or a buffer", name=None, dtype="f32", shape=None,
                init=None, trainable=True, derive=None),
    "scalar": _s("", "a scalar constant", value=0.0, dtype="f32"),
    "full": _s("", "a tensor filled with one value", shape=None, value=0.0, dtype="f32"),
    "arange": _s("", "0, 1, ..., n-1", n=None, dtype="i64"),
    # elementwise
    **{op: _s("x", doc) for op, doc in UNARY.items()},
    "leaky_relu": _s("x", "max(x, slope*x)", slope=0.01),
    "gelu": _s("x", "x * Φ(x)", approximate="none"),
    "elu": _s("x", "x if x > 0 else alpha*(e^x - 1)", alpha=1.0),
    "softplus": _s("x", "log(1 + e^(beta*x)) / beta", beta=1.0, threshold=20.0),
    "dropout": _s("x", "zero elements with probability p during training", p=0.5),
    "drop_path": _s("x", "stochastic depth: zero whole samples (dim 0) with probability p "
                         "during training, the others scaled by 1 / (1 - p)", p=0.0),
    "clamp": _s("x", "min(max(x, min), max); a bound of None is left open", min=None, max=None),
    "cast": _s("x", "convert dtype", dtype=None),
    **{op: _s("a b", doc) for op, doc in BINARY.items()},
    **{op: _s("a b", doc) for op, doc in COMPARE.items()},
    "where": _s("cond a b", "a where cond else b"),
    "masked_fill": _s("x mask", "value where mask else x", value=0.0),
    "tril": _s("x", "lower triangle (k-th diagonal and below)", k=0),
    "triu": _s("x", "upper triangle (k-th diagonal and above)", k=0),
    # linear algebra and layers
    "matmul": _s("a b", "batched matrix product with broadcasting"),
    "linear": _s("x weight bias?", "act(x Wᵀ + b)", act=None),
    **{f"conv{d}d": _s("x weight bias?", f"{d}-d cross-correlation", stride=1, padding=0,
                       dilation=1, groups=1, act=None) for d in (1, 2, 3)},
    "conv_transpose2d": _s("x weight bias?", "2-d transposed convolution", stride=1, padding=0,
                           output_padding=0, dilation=1, groups=1, act=None),
    **{f"max_pool{d}d": _s("x", f"{d}-d max pooling", kernel=None, stride=None, padding=0,
                           dilation=1, ceil_mode=False) for d in (1, 2)},
    **{f"avg_pool{d}d": _s("x", f"{d}-d average pooling", kernel=None, stride=None, padding=0,
                           ceil_mode=False, count_include_pad=True) for d in (1, 2)},
    **{f"adaptive_avg_pool{d}d": _s("x", f"{d}-d adaptive average pooling", output_size=None)
       for d in (1, 2)},
    "batch_norm": _s("x weight? bias? running_mean running_var num_batches_tracked",
                     "(x - μ) / √(σ² + eps) · γ + β over channel dim 1", eps=1e-5, momentum=0.1),
    "layer_norm": _s("x weight? bias?", "(x - μ) / √(σ² + eps) · γ + β over the last dims",
                     normalized_shape=None, eps=1e-5),
    "group_norm": _s("x weight? bias?", "normalize over groups of channels", groups=None, eps=1e-5),
    "rms_norm": _s("x weight?", "x / √(mean(x²) + eps) · γ over the last dims (eps None: the "
                                "dtype's machine epsilon)", normalized_shape=None, eps=None),
    "embedding": _s("indices weight", "rows of weight", padding_idx=None),
    "one_hot": _s("indices", "1 at each index's position in a new last dim of size n",
                  n=None, dtype="i64"),
    "einsum": _s("*xs", "Σ over the indices not in the output of the product of the operands "
                        "(Einstein summation)", equation=None),
    "lstm": _s("x h0? c0? *weights", "long short-term memory (PyTorch gate order i, f, g, o)",
               hidden=None, layers=1, bidirectional=False, batch_first=True, dropout=0.0,
               bias=True),
    "gru": _s("x h0? *weights", "gated recurrent unit (PyTorch gate order r, z, n)",
              hidden=None, layers=1, bidirectional=False, batch_first=True, dropout=0.0, bias=True),
    "rnn": _s("x h0? *weights", "Elman RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh)",
              hidden=None, layers=1, bidirectional=False, batch_first=True, dropout=0.0, bias=True,
              nonlinearity="tanh"),
    "attention": _s("q k v mask?", "softmax(q kᵀ · scale + mask) v (fused)", scale=None,
                    causal=False, dropout=0.0),
    "memory_format": _s("x", "the same tensor in another memory layout", format="contiguous"),
    # quantized weights and kernels (the compression passes emit them)
    "dequantize": _s("q scale", "q · s: integer weights (i8, i4) back to float, with one scale "
                                "per row, or per row and group of `group` columns", group=None),
    # static int8: activations are u8 with a scale and zero point fixed by calibration
    "quantize": _s("x", "u8 activations: clamp(round(x / scale) + zero_point, 0, qmax)",
                   scale=None, zero_point=0, qmax=255),
    "dequantize_act": _s("q", "(q - zero_point) · scale: u8 activations back to f32", scale=None,
                         zero_point=0),
    "qconv2d": _s("x weight scale bias?", "2-d convolution of u8 activations (scale x_scale, "
                                          "zero point x_zp) with int8 weights (one scale per "
                                          "filter) and an int32 bias, requantized to u8",
                  stride=1, padding=0, dilation=1, groups=1, act=None, x_scale=None, x_zp=0,
                  out_scale=None, out_zp=0, qmax=255),
    "qlinear": _s("x weight scale bias?", "linear layer of u8 activations with int8 weights and "
                                          "an int32 bias, requantized to u8", act=None,
                  x_scale=None, x_zp=0, out_scale=None, out_zp=0, qmax=255),
    "qclamp": _s("q", "min(max(x, min), max) of u8 activations on their own grid (the bounds "
                      "rounded to it); a bound of None is left open", min=None, max=None,
                 scale=None, zero_point=0),
    "qadd": _s("a b", "a + b of u8 activations, requantized to u8", act=None, a_scale=None,
               a_zp=0, b_scale=None, b_zp=0, out_scale=None, out_zp=0, qmax=255),
    "fake_quantize": _s("x", "quantization noise for training (QAT): x rounded to `bits`-bit "
                             "multiples of max|row| / (2^(bits-1) - 1), per row or group of "
                             "columns; the gradient passes straight through", bits=8,
                        group=None),
    "linear_int8": _s("x weight scale bias?", "act(x Wᵀ + b) with int8 W (one scale per output "
                                              "feature) and x quantized to 8 bits per call "
                                              "(dynamic quantization)", act=None),
    # shape manipulation
    "flatten": _s("x", "merge dims start..end", start=1, end=-1),
    "reshape": _s("x", "same elements, new shape", shape=None),
    "transpose": _s("x", "swap two dims", dim0=None, dim1=None),
    "permute": _s("x", "reorder dims", dims=None),
    "squeeze": _s("x", "drop size-1 dims", dims=None),
    "unsqueeze": _s("x", "insert a size-1 dim", dim=None),
    "expand": _s("x", "broadcast to a larger shape", shape=None),
    "concat": _s("*xs", "join along a dim", dim=0),
    "split": _s("x", "cut into pieces along a dim", dim=0, sizes=None),
    "slice": _s("x", "x[start:end:step] on some axes", axes=None, starts=None, ends=None,
                steps=None),
    "stack": _s("*xs", "join along a new dim", dim=0),
    "flip": _s("x", "reverse the order along dims", dims=None),
    "roll": _s("x", "shift elements cyclically along dims", shifts=None, dims=None),
    "repeat_interleave": _s("x", "each element repeated `repeats` times along dim (None: of "
                                 "the flattened tensor)", repeats=None, dim=None),
    "pad": _s("x", "widths (before, after) per dim, last dim first (as torch.nn.functional.pad); "
                   "mode constant, reflect, replicate or circular", widths=None,
              mode="constant", value=0.0),
    "upsample": _s("x", "resize the spatial dims by integer factors (nearest or linear "
                        "interpolation)", scale=None, mode="nearest", align_corners=False),
    "pixel_shuffle": _s("x", "[N, C·r², H, W] → [N, C, H·r, W·r]", r=None),
    # reductions and normalizers
    **{op: _s("x", f"{doc} over dims", dims=None, keepdim=False) for op, doc in REDUCE.items()},
    "softmax": _s("x", "e^x / Σ e^x along dim", dim=-1),
    "log_softmax": _s("x", "x - log Σ e^x along dim", dim=-1),
    "argmax": _s("x", "index of the largest value along dim (the first one on ties)", dim=-1,
                 keepdim=False),
    "argsort": _s("x", "the indices that sort x along dim (stable: equal values keep their "
                       "order, the lower index first)", dim=-1, descending=False),
    "cumsum": _s("x", "running sum along dim: y[i] = Σ_{j<=i} x[j]", dim=-1),
    "cumprod": _s("x", "running product along dim: y[i] = Π_{j<=i} x[j]", dim=-1),
    "logsumexp": _s("x", "log Σ e^x over dims (stable)", dims=None, keepdim=False),
    **{op: _s("x", f"{what} over dims with Bessel's correction (divide by n - correction)",
              dims=None, correction=1, keepdim=False)
       for op, what in (("var", "variance"), ("std", "standard deviation"))},
    "topk": _s("x", "the k largest (or smallest) values along dim, in order (largest first, "
                    "or smallest first), and their i64 indices", k=None, dim=-1, largest=True),
    # indexing, scattering and segments (message passing on graphs)
    "gather": _s("x index", "y[i][j] = x[index[i][j]][j] along dim (torch.gather)", dim=0),
    "index_select": _s("x index", "the slices x[index[k]] along dim, for a 1-d index", dim=0),
    "scatter_add": _s("x index src", "x with src[i][j] added at x[index[i][j]][j] along dim "
                                     "(torch.scatter_add)", dim=0),
    **{op: _s("data segment_ids", f"{doc} of the rows of data with the same segment id, into "
                                  f"num_segments rows (empty segments: 0)", num_segments=None)
       for op, doc in SEGMENT.items()},
    "segment_softmax": _s("scores segment_ids", "softmax of the rows of scores within each "
                                                "segment (per column)", num_segments=None),
    # control flow
    "scan": _s("*xs", "run the body once per step, carrying state: operands are the sequences "
                      "(sliced along dim), the initial state, then the outer values the body "
                      "reads; results are the final state, then the per-step outputs stacked "
                      "along dim", body=None, n_over=0, n_state=0, dim=1, steps=None),
}


# ---- kinds and traits ----

KINDS = {
    "source": "a graph input, parameter or constant",
    "layer": "a computation with weights, a contraction (matmul, einsum) or a recurrence "
             "(recurrent layers, scan)",
    "norm": "a normalization",
    "activation": "a nonlinearity: elementwise (dropout included), or softmax over a dim",
    "pool": "a pooling",
    "movement": "moves, selects or converts elements and computes nothing (zero FLOPs)",
    "elementwise": "arithmetic and comparisons per element",
    "reduction": "reduces, sorts or accumulates along dims",
    "quantized": "quantized weights, activations and kernels",
    "other": "the rest (attention, upsampling, scattering)",
}

TRAITS = {
    "epilogue": "an activation a linear or conv can apply to its own result (the `act` "
                "attribute that fuse_epilogue sets)",
    "takes_act": "a layer that runs an epilogue activation inside it (`act`)",
    "affine": "y = W·x + b along the channel dim: a batch norm or a scale after it folds "
              "into W and b",
    "view": "passes its first operand's elements through, rearranged, selected or converted: "
            "where a value comes from is traced through it",
    "type_determined": "its result is fixed by its first operand and its output type: when "
                       "the two types are equal it is the identity",
    "type_attrs": "its shape or dtype attribute is its argument (reshape's target, cast's "
                  "dtype), which the IR printer shows; on other ops they restate the output "
                  "type and are left out",
    "random": "draws random numbers in training: two of them on one tensor are different "
              "draws, never merged",
}

_ACTIVATION_UNARY = ("relu", "sigmoid", "tanh", "silu", "selu", "hardswish", "hardsigmoid",
                     "mish")
_KIND_OF = {
    "source": "input param scalar full arange",
    "layer": "matmul linear conv1d conv2d conv3d conv_transpose2d embedding einsum lstm gru rnn "
             "scan",
    "norm": "batch_norm layer_norm group_norm rms_norm",
    "activation": " ".join(_ACTIVATION_UNARY) + " gelu elu leaky_relu softplus clamp dropout "
                                                 "drop_path softmax log_softmax",
    "pool": "max_pool1d max_pool2d avg_pool1d avg_pool2d adaptive_avg_pool1d "
            "adaptive_avg_pool2d",
    "movement": "cast flatten reshape transpose permute squeeze unsqueeze expand concat split "
                "slice stack flip roll repeat_interleave pad pixel_shuffle gather index_select "
                "memory_format one_hot",
    "elementwise": " ".join([*(op for op in UNARY if op not in _ACTIVATION_UNARY), *BINARY,
                             *COMPARE, "where", "masked_fill", "tril", "triu"]),
    "reduction": " ".join([*REDUCE, *SEGMENT, "argmax", "argsort",
                           "cumsum", "cumprod", "logsumexp", "var", "std", "topk",
                           "segment_softmax"]),
    "quantized": "dequantize quantize dequantize_act qconv2d qlinear qclamp qadd fake_quantize "
                 "linear_int8",
}

_TRAIT_OPS = {
    "epilogue": "relu sigmoid tanh silu gelu",
    "takes_act": "linear conv1d conv2d conv3d conv_transpose2d",
    "affine": "linear conv1d conv2d conv3d",
    "view": "reshape flatten slice squeeze unsqueeze transpose permute expand cast",
    "type_determined": "reshape flatten expand cast squeeze",
    "type_attrs": "reshape expand full cast",
    "random": "dropout drop_path",
}


# Elementwise ops on Python numbers. A domain error (log of a negative) raises ValueError.
SCALAR = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "pow": lambda a, b: a ** b, "maximum": max, "minimum": min,
    "neg": lambda a: -a, "sqrt": math.sqrt, "rsqrt": lambda a: 1 / math.sqrt(a),
    "exp": math.exp, "log": math.log, "abs": abs, "tanh": math.tanh, "erf": math.erf,
    "sin": math.sin, "cos": math.cos, "relu": lambda a: max(a, 0),
    "sigmoid": lambda a: 1 / (1 + math.exp(-a)),
}


def _with_traits(table: dict) -> dict:
    kind = {op: k for k, ops in _KIND_OF.items() for op in ops.split()}
    traits: dict = {}
    for t, ops in _TRAIT_OPS.items():
        for op in ops.split():
            traits.setdefault(op, set()).add(t)
    unknown = (set(kind) | set(traits) | set(SCALAR)) - set(table)
    if unknown:
        raise AssertionError(f"kinds or traits name ops that do not exist: {sorted(unknown)}")
    return {op: replace(sig, kind=kind.get(op, "other"), traits=frozenset(traits.get(op, ())),
                        scalar=SCALAR.get(op))
            for op, sig in table.items()}


SIGNATURES = _with_traits(SIGNATURES)


def ops_with(trait: str) -> tuple:
    """The ops with ``trait``, in the table's order."""
    if trait not in TRAITS:
        raise KeyError(trait)
    return tuple(op for op, sig in SIGNATURES.items() if trait in sig.traits)


def ops_of_kind(kind: str) -> tuple:
    """The ops of ``kind``, in the table's order."""
    if kind not in KINDS:
        raise KeyError(kind)
    return tuple(op for op, sig in SIGNATURES.items() if sig.kind == kind)
